//! Parity with the original PyTorch SegVol on the tiny fixture
//! (`shared/fixtures/segvol_tiny`, made by running BAAI-DCAI/SegVol + MONAI 0.9.0; see its
//! manifest.json): each of the three weight files, image encoder output ≤ 1e-4 max abs diff.

// Test code: a panic with the failing value is the right outcome.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use ndarray::ArrayD;
use ndarray_npy::ReadNpyExt;
use segvol_backends::Flex;
use segvol_core::image_encoder::ImageEncoder;
use segvol_core::weights::{WeightsError, load_image_encoder, load_segvol};
use segvol_core::{Prompts, SegVol, SegVolConfig};

type B = Flex;

fn fixture(name: &str) -> PathBuf {
    std::env::var_os("SEGVOL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
        .join("fixtures/segvol_tiny")
        .join(name)
}

fn npy(name: &str) -> (Vec<usize>, Vec<f32>) {
    let a = ArrayD::<f32>::read_npy(std::fs::File::open(fixture(name)).unwrap()).unwrap();
    (a.shape().to_vec(), a.iter().copied().collect())
}

#[test]
fn image_encoder_matches_pytorch_for_every_weight_format() {
    let device = Default::default();
    let (shape, image) = npy("image.npy");
    assert_eq!(shape, [1, 1, 32, 64, 64]);
    let (eshape, want) = npy("image_embedding.npy");
    for file in ["weights.safetensors", "weights.bin", "weights_v1.pth"] {
        let mut enc = ImageEncoder::<B>::new(&SegVolConfig::tiny(), &device);
        let report = load_image_encoder(&mut enc, fixture(file)).unwrap();
        // 3 patch-embedding tensors + 2 blocks × 11 (norm1 2, qkv 1, out_proj 2, norm2 2,
        // linear1 2, linear2 2) + final norm 2.
        assert_eq!(
            report.applied.len(),
            3 + 2 * 11 + 2,
            "{file}: {:?}",
            report.applied
        );
        assert!(report.missing.is_empty());
        let x =
            Tensor::<B, 5>::from_data(TensorData::new(image.clone(), [1, 1, 32, 64, 64]), &device);
        let out = enc.forward(x);
        assert_eq!(out.dims().to_vec(), eshape);
        let got: Vec<f32> = out.into_data().to_vec().unwrap();
        let max = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!("{file}: image embedding max abs diff {max:e}");
        assert!(max <= 1e-4, "{file}: max abs diff {max}");
    }
}

#[test]
fn wrong_checkpoints_are_clear_errors() {
    let device = Default::default();
    // A wider config cannot take the tiny weights: shapes differ.
    let wide = SegVolConfig::new([32, 64, 64], [4, 16, 16], 128, 384, 2, 4);
    let mut enc = ImageEncoder::<B>::new(&wide, &device);
    let e = load_image_encoder(&mut enc, fixture("weights.safetensors")).unwrap_err();
    assert!(matches!(e, WeightsError::Mismatch { .. }), "{e}");
    let mut enc = ImageEncoder::<B>::new(&SegVolConfig::tiny(), &device);
    // A GRU checkpoint has no encoder tensors.
    let e = load_image_encoder(&mut enc, fixture("gru.safetensors")).unwrap_err();
    assert!(matches!(e, WeightsError::Mismatch { .. }), "{e}");
    // The whole-model loader is strict too.
    let mut model = SegVol::<B>::new(&SegVolConfig::tiny(), &device);
    let e = load_segvol(&mut model, fixture("gru.safetensors")).unwrap_err();
    assert!(matches!(e, WeightsError::Mismatch { .. }), "{e}");
    let e = load_segvol(&mut model, fixture("image.npy")).unwrap_err();
    assert!(matches!(e, WeightsError::UnknownFormat { .. }), "{e}");
    // A truncated file.
    let dir = std::env::temp_dir().join(format!("segvol-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = std::fs::read(fixture("weights.safetensors")).unwrap();
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_image_encoder(&mut enc, &cut).unwrap_err();
    assert!(e.to_string().contains("cut.safetensors"), "{e}");
    let bin = std::fs::read(fixture("weights.bin")).unwrap();
    let cutb = dir.join("cut.bin");
    std::fs::write(&cutb, &bin[..bin.len() / 2]).unwrap();
    let e = load_image_encoder(&mut enc, &cutb).unwrap_err();
    assert!(e.to_string().contains("cut.bin"), "{e}");
    assert!(matches!(
        load_image_encoder(&mut enc, dir.join("nope.safetensors")),
        Err(WeightsError::NotFound { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn max_diff<Bk: burn::tensor::backend::Backend, const D: usize>(
    got: Tensor<Bk, D>,
    name: &str,
) -> f32 {
    let (shape, want) = npy(name);
    assert_eq!(got.dims().to_vec(), shape, "{name}: shape");
    let got: Vec<f32> = got.into_data().to_vec().unwrap();
    got.iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max)
}

fn fixture_prompts() -> (Prompts, Prompts, Prompts) {
    let (_, b) = npy("box.npy");
    let (_, p) = npy("points.npy");
    let labels =
        ndarray::ArrayD::<i64>::read_npy(std::fs::File::open(fixture("labels.npy")).unwrap())
            .unwrap();
    let boxes = Some([b[0], b[1], b[2], b[3], b[4], b[5]]);
    let points: Vec<([f32; 3], i64)> = labels
        .iter()
        .enumerate()
        .map(|(i, &l)| ([p[3 * i], p[3 * i + 1], p[3 * i + 2]], l))
        .collect();
    (
        Prompts {
            boxes,
            points: vec![],
            text: None,
            mask: None,
            image: None,
        },
        Prompts {
            boxes: None,
            points: points.clone(),
            text: None,
            mask: None,
            image: None,
        },
        Prompts {
            boxes,
            points,
            text: None,
            mask: None,
            image: None,
        },
    )
}

/// Every stage of the decode against PyTorch, for box, points and box + points, with each of
/// the three weight files: max abs diff ≤ [`TOL`] (the worst seen is printed: 1.67e-6 on flex,
/// 1.79e-6 on ndarray, which the README quotes).
/// On flex (the fast CPU kernels) and on ndarray (burn's generic code).
#[test]
fn whole_model_matches_pytorch_for_every_prompt_and_weight_format() {
    whole_model::<Flex>();
}

#[test]
fn whole_model_matches_pytorch_on_ndarray_too() {
    whole_model::<segvol_backends::NdArray>();
}

/// f32 rounding through the ViT and the decoder stays under 2e-6 here; 5e-6 leaves room for
/// another CPU's summation order and still fails on any real mistake (those are ≥ 1e-3).
const TOL: f32 = 5e-6;

fn whole_model<Bk: burn::tensor::backend::Backend>() {
    let device = Default::default();
    let (_, image) = npy("image.npy");
    let (pbox, ppts, pboth) = fixture_prompts();
    for file in ["weights.safetensors", "weights.bin", "weights_v1.pth"] {
        let mut model = SegVol::<Bk>::new(&SegVolConfig::tiny(), &device);
        let report = load_segvol(&mut model, fixture(file)).unwrap();
        // 166 tensors in the fixture: 10 mask_downscaling ignored on purpose, the rest applied.
        assert_eq!(report.applied.len(), 156, "{file}");
        assert_eq!(report.ignored.len(), 10, "{file}: {:?}", report.ignored);
        let emb = model.embed(Tensor::from_data(
            TensorData::new(image.clone(), [1, 1, 32, 64, 64]),
            &device,
        ));
        let mut worst = max_diff(emb.clone(), "image_embedding.npy");
        worst = worst.max(max_diff(model.image_pe(&device), "image_pe.npy"));
        for (name, prompts) in [("box", &pbox), ("points", &ppts), ("box_points", &pboth)] {
            let out = model.decode(emb.clone(), prompts);
            for (stage, d) in [
                (
                    "sparse",
                    max_diff(out.sparse.clone(), &format!("{name}_sparse.npy")),
                ),
                (
                    "dense",
                    max_diff(out.dense.clone(), &format!("{name}_dense.npy")),
                ),
                (
                    "low_res_logits",
                    max_diff(
                        out.low_res_logits.clone(),
                        &format!("{name}_low_res_logits.npy"),
                    ),
                ),
                (
                    "logits",
                    max_diff(out.logits.clone(), &format!("{name}_logits.npy")),
                ),
            ] {
                eprintln!("{file} {name} {stage}: max abs diff {d:e}");
                assert!(d <= TOL, "{file} {name} {stage}: {d}");
                worst = worst.max(d);
            }
            if name == "box" {
                // `decode` on the fast path never makes E; this one keeps it (the fused path's
                // logits were checked above, the unfused ones here).
                let kept = model.decode_with_upscaled(emb.clone(), prompts);
                let d = max_diff(kept.upscaled.expect("E kept"), "upscaled.npy");
                assert!(d <= TOL, "{file} upscaled: {d}");
                let d = max_diff(kept.low_res_logits, "box_low_res_logits.npy");
                assert!(d <= TOL, "{file} low_res_logits with E kept: {d}");
            }
        }
        eprintln!("{} {file}: worst {worst:e}", std::any::type_name::<Bk>());
    }
}

/// Our fast format: the tiny safetensors converted to burnpack loads strictly, gives bit-identical
/// logits to the source, and is refused by a model of another config.
#[test]
fn burnpack_conversion_is_lossless_and_strict() {
    use segvol_core::weights::save_burnpack;
    let device = Default::default();
    let (_, image) = npy("image.npy");
    let (_, _, pboth) = fixture_prompts();
    let cfg = SegVolConfig::tiny();
    let mut src = SegVol::<B>::new(&cfg, &device);
    load_segvol(&mut src, fixture("weights.safetensors")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bpk = dir.path().join("tiny.bpk");
    save_burnpack(&src, &cfg, "weights.safetensors", &bpk).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1); // no temporary left
    let mut fast = SegVol::<B>::new(&cfg, &device);
    let report = load_segvol(&mut fast, &bpk).unwrap();
    assert!(report.unused.is_empty() && report.ignored.is_empty());
    assert!(report.applied.len() >= 156, "{}", report.applied.len());
    let run = |m: &SegVol<B>| -> Vec<f32> {
        let emb = m.embed(Tensor::from_data(
            TensorData::new(image.clone(), [1, 1, 32, 64, 64]),
            &device,
        ));
        m.decode(emb, &pboth).logits.into_data().to_vec().unwrap()
    };
    let a = run(&src);
    assert_eq!(a, run(&fast));
    let (_, want) = npy("box_points_logits.npy");
    let d = a
        .iter()
        .zip(&want)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(d <= 1e-4, "{d}");
    // A tiny file into the base model: a mismatch naming the file.
    let mut base = SegVol::<B>::new(&SegVolConfig::base(), &device);
    let e = load_segvol(&mut base, &bpk).unwrap_err();
    assert!(matches!(e, WeightsError::Mismatch { .. }), "{e}");
    assert!(e.to_string().contains("tiny.bpk"), "{e}");
    // The same shapes under another config flag (what the weights mean differs): refused by
    // the config stored in the file, naming the flag; tensor shapes alone would let it load.
    let other = cfg.clone().with_aligned_prompt_coords(true);
    let mut m = SegVol::<B>::new(&other, &device);
    let e = load_segvol(&mut m, &bpk).unwrap_err();
    assert!(
        matches!(e, WeightsError::Mismatch { .. })
            && e.to_string()
                .contains("aligned_prompt_coords false in the file, true in the model"),
        "{e}"
    );
    assert_eq!(
        segvol_core::weights::stored_config(&bpk).unwrap(),
        Some(cfg.clone())
    );
    // `box_mask_prompt` has no weights: a file saved without it loads into a model with it
    // (the CLI's `--box-start`, a run that turns it on); the model keeps its own setting.
    let box_start = cfg.clone().with_box_mask_prompt(true);
    let mut m = SegVol::<B>::new(&box_start, &device);
    load_segvol(&mut m, &bpk).unwrap();
    assert!(m.config().box_mask_prompt);
    // A truncated file: a read error naming it.
    let cut = dir.path().join("cut.bpk");
    let bytes = std::fs::read(&bpk).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let e = load_segvol(&mut fast, &cut).unwrap_err();
    assert!(e.to_string().contains("cut.bpk"), "{e}");
}

/// The text path (SEGVOL.md §5.4, §6.6), hand-derived: the embedding is appended as the last
/// sparse token, and with `txt_align` set to weight 0 and bias = the unit vector e_k the
/// similarity map is exactly channel k of the upscaled embedding, so two decodes that differ only
/// in k differ by `E[k] − E[j]`.
#[test]
fn text_prompt_adds_its_token_and_the_similarity_map() {
    use burn::module::Param;
    let device = Default::default();
    let cfg = SegVolConfig::tiny();
    let (c, ce) = (cfg.hidden_size, cfg.hidden_size / 8);
    let (_, image) = npy("image.npy");
    let (pbox, _, _) = fixture_prompts();
    let text: Vec<f32> = (0..c)
        .map(|i| ((i * 37) % 11) as f32 / 11.0 - 0.5)
        .collect();
    let prompts = Prompts {
        text: Some(text.clone()),
        ..pbox.clone()
    };
    let run = |k: usize| {
        let mut model = SegVol::<B>::new(&cfg, &device);
        load_segvol(&mut model, fixture("weights.safetensors")).unwrap();
        let mut bias = vec![0.0f32; ce];
        bias[k] = 1.0;
        model.set_text_align(
            Param::from_tensor(Tensor::zeros([c, ce], &device)),
            Param::from_tensor(Tensor::from_data(TensorData::new(bias, [ce]), &device)),
        );
        let emb = model.embed(Tensor::from_data(
            TensorData::new(image.clone(), [1, 1, 32, 64, 64]),
            &device,
        ));
        (
            model.decode_with_upscaled(emb.clone(), &prompts),
            model.decode(emb, &prompts),
        )
    };
    let ((a, fa), (b, _)) = (run(2), run(5));
    // `decode` without E (on this backend: the upscaling fused with (h0 + txt_align(t))·E)
    // gives the same logits.
    assert!(fa.upscaled.is_none(), "decode on flex took the fused path");
    let fused: Vec<f32> = fa.low_res_logits.into_data().to_vec().unwrap();
    let kept: Vec<f32> = a.low_res_logits.clone().into_data().to_vec().unwrap();
    let d = fused
        .iter()
        .zip(&kept)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(d <= 1e-5, "text prompt, fused against E kept: {d}");
    // Box: 2 tokens, then the text token, equal to the embedding.
    assert_eq!(a.sparse.dims(), [1, 3, c]);
    let tok: Vec<f32> = a
        .sparse
        .clone()
        .narrow(1, 2, 1)
        .into_data()
        .to_vec()
        .unwrap();
    assert_eq!(tok, text);
    let e: Vec<f32> = a.upscaled.clone().unwrap().into_data().to_vec().unwrap();
    assert_eq!(e, b.upscaled.unwrap().into_data().to_vec::<f32>().unwrap());
    let la: Vec<f32> = a.low_res_logits.into_data().to_vec().unwrap();
    let lb: Vec<f32> = b.low_res_logits.into_data().to_vec().unwrap();
    let n = la.len();
    assert_eq!(e.len(), ce * n);
    let worst = (0..n)
        .map(|i| ((la[i] - lb[i]) - (e[2 * n + i] - e[5 * n + i])).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-5, "{worst}");
}

/// `F.interpolate` fixtures (PyTorch): a 5×7×9 volume up to 10×13×20 and down to 3×4×5 in
/// each mode.
#[test]
fn resize_matches_torch_interpolate() {
    use segvol_core::resize::{ResizeMode, resize};
    let (_, input) = npy("interp_input.npy");
    for (mode, name) in [
        (ResizeMode::Nearest, "nearest"),
        (ResizeMode::NearestExact, "nearest_exact"),
        (ResizeMode::Trilinear, "trilinear"),
    ] {
        for dir in ["up", "down"] {
            let (shape, want) = npy(&format!("interp_{name}_{dir}.npy"));
            let got = resize(&input, [5, 7, 9], [shape[2], shape[3], shape[4]], mode);
            let max = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            eprintln!("interp {name} {dir}: max abs diff {max:e}");
            assert!(max <= 1e-6, "{name} {dir}: {max}");
        }
    }
}

/// The tensor upsample (the model's final step) on the same fixtures, including the D axis.
#[test]
fn upsample_trilinear_matches_torch_along_every_axis() {
    let device = Default::default();
    let (_, input) = npy("interp_input.npy");
    let x = Tensor::<B, 5>::from_data(TensorData::new(input, [1, 1, 5, 7, 9]), &device);
    for dir in ["up", "down"] {
        let (shape, want) = npy(&format!("interp_trilinear_{dir}.npy"));
        let got: Vec<f32> =
            segvol_core::model::upsample_trilinear(x.clone(), [shape[2], shape[3], shape[4]])
                .into_data()
                .to_vec()
                .unwrap();
        let max = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!("upsample_trilinear {dir}: max abs diff {max:e}");
        assert!(max <= 1e-5, "{dir}: {max}");
    }
}

/// The session encodes once; each predict equals the one-shot call with the same crop.
#[test]
fn session_predictions_equal_one_shot_segmentation() {
    use segvol_core::pipeline::{Session, VoxelClick, segment_zoom_out};
    let device = Default::default();
    let mut model = SegVol::<B>::new(&SegVolConfig::tiny(), &device);
    load_segvol(&mut model, fixture("weights.safetensors")).unwrap();
    let dims = [20, 30, 40];
    let image: Vec<f32> = (0..20 * 30 * 40)
        .map(|i| ((i * 7919) % 1000) as f32)
        .collect();
    let b = ([2, 3, 4], [15, 25, 30]);
    let click = [VoxelClick {
        zyx: [8, 12, 20],
        foreground: true,
    }];
    let (one_shot, zoom) =
        segment_zoom_out(&model, &image, dims, Some(b), &click, &device).unwrap();
    let session = Session::new(&model, &image, dims, &[b.0, b.1, click[0].zyx], &device).unwrap();
    assert_eq!(session.zoom(), zoom);
    assert_eq!(session.predict(Some(b), &click).unwrap(), one_shot);
    let box_only = session.predict(Some(b), &[]).unwrap();
    assert_eq!(box_only.len(), one_shot.len());
    assert_ne!(box_only, one_shot, "the click must change the logits");
    assert!(session.predict(None, &[]).is_err());
    assert!(session.predict(Some(([0, 0, 0], [20, 0, 0])), &[]).is_err());
}
