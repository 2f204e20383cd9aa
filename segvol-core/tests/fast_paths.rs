//! The burn-flex fast paths (`segvol_core::fast`, segvol-kernels) against burn's generic code
//! (the ndarray backend runs none of them) at the base model's widths: 2048 tokens, hidden 768,
//! 12 heads, MLP 3072, the full decoder (two-way transformer, ConvTranspose3d upscaling,
//! hypernetwork, upsample). Two encoder blocks instead of twelve keep the test short; every
//! block is the same code. Same weights in both (one burnpack file), same image and prompts.
#![allow(clippy::unwrap_used)]

use burn::tensor::{Distribution, Tensor, TensorData};
use segvol_backends::{Flex, NdArray};
use segvol_core::weights::{load_segvol, save_burnpack};
use segvol_core::{Prompts, SegVol, SegVolConfig};

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

#[test]
fn fast_paths_equal_burns_generic_code_at_base_size() {
    let cfg = SegVolConfig {
        num_layers: 2,
        ..SegVolConfig::base()
    };
    let dev_f = Default::default();
    let dev_n = Default::default();
    let fast = SegVol::<Flex>::new(&cfg, &dev_f);
    let dir = tempfile::tempdir().unwrap();
    let bpk = dir.path().join("base2.bpk");
    save_burnpack(&fast, &cfg, "random", &bpk).unwrap();
    let mut generic = SegVol::<NdArray>::new(&cfg, &dev_n);
    load_segvol(&mut generic, &bpk).unwrap();

    let [d, h, w] = cfg.image_size;
    let image: Vec<f32> =
        Tensor::<Flex, 1>::random([d * h * w], Distribution::Normal(0.0, 1.0), &dev_f)
            .into_data()
            .to_vec()
            .unwrap();
    let prompts = Prompts {
        boxes: Some([2.0, 20.0, 30.0, 25.0, 150.0, 170.0]),
        points: vec![([10.0, 60.0, 70.0], 1), ([20.0, 140.0, 90.0], 0)],
        text: None,
        mask: None,
        image: None,
    };

    // Every fast path falls back to burn's code on any failure, silently: count what ran.
    let count = |k: segvol_core::fast::Kernel| {
        segvol_core::fast::hits()
            .into_iter()
            .find(|h| h.0 == k)
            .map_or(0, |h| h.1)
    };
    use segvol_core::fast::Kernel;
    let before: Vec<u64> = [Kernel::Linear, Kernel::LayerNorm, Kernel::QkvAttention]
        .map(count)
        .to_vec();
    let emb_f = fast.embed(Tensor::from_data(
        TensorData::new(image.clone(), [1, 1, d, h, w]),
        &dev_f,
    ));
    // Per block: 4 linears, 2 LayerNorms, 1 attention; plus the patch embedding's linear.
    let ran: Vec<u64> = [Kernel::Linear, Kernel::LayerNorm, Kernel::QkvAttention]
        .map(count)
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    assert_eq!(ran, [2 * 4 + 1, 2 * 2, 2], "fast encoder kernels that ran");
    let emb_n = generic.embed(Tensor::from_data(
        TensorData::new(image, [1, 1, d, h, w]),
        &dev_n,
    ));
    let ef: Vec<f32> = emb_f.clone().into_data().to_vec().unwrap();
    let en: Vec<f32> = emb_n.clone().into_data().to_vec().unwrap();
    let scale = en.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let de = max_diff(&ef, &en);
    assert!(
        de <= 1e-4 * scale.max(1.0),
        "embedding: max abs diff {de} (max |x| {scale})"
    );

    // The decoder from the same embedding on both sides (the generic one's, moved over), so
    // its own difference is measured.
    let emb_same = Tensor::<Flex, 5>::from_data(TensorData::new(en.clone(), emb_n.dims()), &dev_f);
    let dec = [
        Kernel::AttentionLayer,
        Kernel::FoldedAttention,
        Kernel::Contiguous,
        Kernel::UpscaleDot,
        Kernel::UpscaleLowRank,
    ];
    let before: Vec<u64> = dec.map(count).to_vec();
    let lf: Vec<f32> = fast
        .decode(emb_same, &prompts)
        .logits
        .into_data()
        .to_vec()
        .unwrap();
    let ran: Vec<u64> = dec
        .map(count)
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    assert!(
        ran.iter().all(|&n| n > 0),
        "fast decoder kernels that ran (attention layers, folded ones, contiguous, the upscaling reduced to the mask, its first product from the image's kept part): {ran:?}"
    );
    // Two two-way layers (self, token → image, image → token) and the final token → image
    // attention: 7 attention layers, the 5 cross-attentions folded (9 tokens against 2048).
    assert_eq!(ran[..2], [7, 5], "attention layers run, folded");
    let ln: Vec<f32> = generic
        .decode(emb_n.clone(), &prompts)
        .logits
        .into_data()
        .to_vec()
        .unwrap();
    let scale = ln.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let dl = max_diff(&lf, &ln);
    assert!(
        dl <= 1e-4 * scale.max(1.0),
        "logits: max abs diff {dl} (max |x| {scale})"
    );

    // The same image again, from a fresh copy of its values (the kept part is found by
    // comparing values), with another click; then another image (nothing of the first may be
    // reused). Each against the generic decoder.
    let mut prompts2 = prompts.clone();
    prompts2.points.push(([25.0, 100.0, 120.0], 1));
    let other: Vec<f32> = en.iter().map(|v| v * 0.5 + 0.1).collect();
    for (values, p) in [(&en, &prompts2), (&other, &prompts)] {
        let before = count(Kernel::UpscaleLowRank);
        let emb =
            Tensor::<Flex, 5>::from_data(TensorData::new(values.clone(), emb_n.dims()), &dev_f);
        let got: Vec<f32> = fast.decode(emb, p).logits.into_data().to_vec().unwrap();
        assert_eq!(
            count(Kernel::UpscaleLowRank) - before,
            1,
            "low-rank upscaling ran"
        );
        let emb =
            Tensor::<NdArray, 5>::from_data(TensorData::new(values.clone(), emb_n.dims()), &dev_n);
        let want: Vec<f32> = generic.decode(emb, p).logits.into_data().to_vec().unwrap();
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let dl = max_diff(&got, &want);
        assert!(
            dl <= 1e-4 * scale.max(1.0),
            "logits, second decode: max abs diff {dl} (max |x| {scale})"
        );
    }
}
