//! SegVol's text prompt against the original code (fixtures and the script that made them in
//! `tests/text_fixtures/`): CLIP's tokenizer as SegVol runs it, the full-size CLIP text tower
//! and `dim_align` with the same deterministic weights as transformers' `CLIPTextModel`, the
//! three official checkpoint layouts and `.bpk`, and SegVol's `forward_decoder` with a text
//! prompt (text only; text + box) on the tiny parity fixture.

// Test code: a panic with the failing value is the right outcome.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use ndarray::ArrayD;
use ndarray_npy::ReadNpyExt;
use safetensors::tensor::{Dtype, TensorView};
use segvol_backends::{Flex, NdArray};
use segvol_core::text::{ClipTokenizer, TextConfig, TextError, prompt};
use segvol_core::weights::{WeightsError, load_segvol, load_text_encoder, save_burnpack};
use segvol_core::{Prompts, SegVol, SegVolConfig};

fn here(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/text_fixtures")
        .join(name)
}

fn shared(name: &str) -> PathBuf {
    std::env::var_os("SEGVOL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
        .join("fixtures/segvol_tiny")
        .join(name)
}

fn npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let a = ArrayD::<f32>::read_npy(std::fs::File::open(path).unwrap()).unwrap();
    (a.shape().to_vec(), a.iter().copied().collect())
}

fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(here(name)).unwrap()).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

/// `(name, ids)` of names.json.
fn names() -> Vec<(String, Vec<u32>)> {
    json("names.json")["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let ids = e["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            (e["name"].as_str().unwrap().to_string(), ids)
        })
        .collect()
}

// ------------------------------------------------- the weights' formula (make_text_fixtures.py)

fn fnv1a32(s: &str) -> u32 {
    s.bytes().fold(0x811C_9DC5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn uniform(key: &str, n: usize) -> Vec<f32> {
    let seed = u64::from(fnv1a32(key)) << 32;
    (1..=n as u64)
        .map(|i| {
            let mut z = seed.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f32 * 2f32.powi(-23) - 1.0
        })
        .collect()
}

fn formula(key: &str, shape: &[usize]) -> Vec<f32> {
    let u = uniform(key, shape.iter().product());
    if key.ends_with("embedding.weight") {
        u.iter().map(|v| 0.5 * v).collect()
    } else if key.contains("layer_norm") && key.ends_with(".weight") {
        u.iter().map(|v| 1.0 + 0.2 * v).collect()
    } else if key.ends_with(".weight") {
        let s = (1.0f64 / (shape[1] as f64).sqrt()) as f32;
        u.iter().map(|v| v * s).collect()
    } else {
        u.iter().map(|v| 0.1 * v).collect()
    }
}

/// Every tensor of SegVol's text encoder of shape `c`, under the official keys (without the
/// `model.` prefix), with formula values.
fn text_tensors(c: &TextConfig) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let (w, m) = (c.width, c.mlp_dim);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        (
            "embeddings.token_embedding.weight".into(),
            vec![c.vocab_size, w],
        ),
        (
            "embeddings.position_embedding.weight".into(),
            vec![c.max_positions, w],
        ),
    ];
    for l in 0..c.layers {
        let p = format!("encoder.layers.{l}.");
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            shapes.push((format!("{p}self_attn.{proj}.weight"), vec![w, w]));
            shapes.push((format!("{p}self_attn.{proj}.bias"), vec![w]));
        }
        for ln in ["layer_norm1", "layer_norm2"] {
            shapes.push((format!("{p}{ln}.weight"), vec![w]));
            shapes.push((format!("{p}{ln}.bias"), vec![w]));
        }
        shapes.push((format!("{p}mlp.fc1.weight"), vec![m, w]));
        shapes.push((format!("{p}mlp.fc1.bias"), vec![m]));
        shapes.push((format!("{p}mlp.fc2.weight"), vec![w, m]));
        shapes.push((format!("{p}mlp.fc2.bias"), vec![w]));
    }
    shapes.push(("final_layer_norm.weight".into(), vec![w]));
    shapes.push(("final_layer_norm.bias".into(), vec![w]));
    let mut out: Vec<(String, Vec<usize>, Vec<f32>)> = shapes
        .into_iter()
        .map(|(k, s)| {
            let key = format!("text_encoder.clip_text_model.text_model.{k}");
            let v = formula(&key, &s);
            (key, s, v)
        })
        .collect();
    for (k, s) in [("weight", vec![c.out_dim, w]), ("bias", vec![c.out_dim])] {
        let key = format!("text_encoder.dim_align.{k}");
        let v = formula(&key, &s);
        out.push((key, s, v));
    }
    out
}

/// Writes `tensors` (f32) and `extra` (raw views of another file) as one safetensors file.
fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    extra: Option<&safetensors::SafeTensors<'_>>,
) {
    let mut views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(k, s, v)| {
            (
                k.clone(),
                TensorView::new(Dtype::F32, s.clone(), bytemuck::cast_slice(v)).unwrap(),
            )
        })
        .collect();
    if let Some(st) = extra {
        for (k, v) in st.tensors() {
            views.push((k, v));
        }
    }
    safetensors::serialize_to_file(views, None, path).unwrap();
}

// ------------------------------------------------------------------------------- tests

#[test]
fn token_ids_equal_segvols_tokenizer_on_every_name() {
    let t = ClipTokenizer::new();
    let names = names();
    assert!(names.len() >= 50, "{} names", names.len());
    let mut wrong = Vec::new();
    for (name, want) in &names {
        let got = t.encode(&prompt(name));
        if &got != want {
            wrong.push(format!("{name:?}: got {got:?}, want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The example, written out by hand.
    assert_eq!(
        t.encode("A computerized tomography of a liver."),
        [
            49406, 320, 11639, 704, 7690, 999, 22399, 539, 320, 12639, 269, 49407
        ]
    );
}

/// The full-size tower (63 M values, written to a temporary safetensors file with the official
/// key names and loaded through the loader) on every name, against transformers.
#[test]
fn full_size_tower_matches_transformers_clip_on_every_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = TextConfig::clip_b32(768);
    let tensors: Vec<_> = text_tensors(&config)
        .into_iter()
        .map(|(k, s, v)| (format!("model.{k}"), s, v))
        .collect();
    let path = dir.path().join("text.safetensors");
    write_safetensors(&path, &tensors, None);
    drop(tensors);

    let device = Default::default();
    let (tower, report) = load_text_encoder::<Flex>(&path, &config, &device).unwrap();
    // Per layer: 4 projections × 2 + 2 LayerNorms × 2 + 2 MLP linears × 2 = 16; plus 2
    // embeddings, the final LayerNorm (2) and dim_align (2).
    assert_eq!(report.applied.len(), 12 * 16 + 2 + 2 + 2);
    let (pshape, pooled) = npy(&here("tower_pooled.npy"));
    let (ashape, aligned) = npy(&here("tower_aligned.npy"));
    let names = names();
    assert_eq!(pshape, [names.len(), 512]);
    assert_eq!(ashape, [names.len(), 768]);
    let (mut worst_p, mut worst_a) = (0.0f32, 0.0f32);
    for (i, (name, ids)) in names.iter().enumerate() {
        let (p, a) = tower.forward_ids(ids).unwrap();
        let p: Vec<f32> = p.into_data().to_vec().unwrap();
        let a: Vec<f32> = a.into_data().to_vec().unwrap();
        let dp = max_diff(&p, &pooled[i * 512..(i + 1) * 512]);
        let da = max_diff(&a, &aligned[i * 768..(i + 1) * 768]);
        assert!(
            dp <= 1e-5 && da <= 1e-5,
            "{name:?}: pooled {dp:e}, aligned {da:e}"
        );
        worst_p = worst_p.max(dp);
        worst_a = worst_a.max(da);
    }
    // The reference is not trivially small: the test would notice a zeroed tower.
    assert!(pooled.iter().map(|v| v.abs()).fold(0.0f32, f32::max) > 0.5);
    eprintln!("max abs diff: pooled {worst_p:e}, aligned {worst_a:e}");
}

/// The tiny CLIP saved by the script in the three official layouts (HF `.bin` with `model.`,
/// `SegVol_v1.pth` with `{'model': {'module.…'}}`, `.safetensors` with transformers 5.x names)
/// loads to the same tower, on flex and ndarray.
#[test]
fn every_official_layout_loads_the_tower() {
    let m = json("micro.json");
    let c = &m["config"];
    let u = |k: &str| c[k].as_u64().unwrap() as usize;
    let config = TextConfig {
        vocab_size: u("vocab_size"),
        width: u("width"),
        mlp_dim: u("mlp_dim"),
        layers: u("layers"),
        heads: u("heads"),
        max_positions: u("max_positions"),
        eos_token_id: u("eos_token_id") as u32,
        layer_norm_eps: 1e-5,
        out_dim: u("out_dim"),
    };
    let floats = |k: &str| -> Vec<f32> {
        m[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    };
    let ids: Vec<u32> = m["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let (want_p, want_a) = (floats("pooled"), floats("aligned"));
    for file in ["micro.bin", "micro.pth", "micro.safetensors"] {
        let (t, r) = load_text_encoder::<Flex>(here(file), &config, &Default::default()).unwrap();
        assert_eq!(r.applied.len(), 16 + 2 + 2 + 2, "{file}");
        let (p, a) = t.forward_ids(&ids).unwrap();
        let dp = max_diff(&p.into_data().to_vec::<f32>().unwrap(), &want_p);
        let da = max_diff(&a.into_data().to_vec::<f32>().unwrap(), &want_a);
        assert!(dp <= 1e-5 && da <= 1e-5, "{file}: {dp:e} {da:e}");
        let (t, _) =
            load_text_encoder::<NdArray>(here(file), &config, &Default::default()).unwrap();
        let a = t.forward_ids(&ids).unwrap().1;
        let da = max_diff(&a.into_data().to_vec::<f32>().unwrap(), &want_a);
        assert!(da <= 1e-5, "{file} on ndarray: {da:e}");
    }
    // Ids the tower cannot take.
    let (t, _) =
        load_text_encoder::<Flex>(here("micro.bin"), &config, &Default::default()).unwrap();
    assert!(matches!(
        t.forward_ids(&[62, 64, 63]),
        Err(TextError::BadIds { .. })
    ));
    assert!(matches!(
        t.forward_ids(&[62, 5]),
        Err(TextError::BadIds { .. })
    ));
    let long: Vec<u32> = std::iter::repeat_n(5, 77).chain([63]).collect();
    assert!(matches!(
        t.forward_ids(&long),
        Err(TextError::TooLong {
            tokens: 78,
            max: 77,
            ..
        })
    ));
}

/// A checkpoint without the tower: the image model loads, the text loader names what is
/// missing, and a text prompt gets an error naming the file.
#[test]
fn weights_without_the_tower_load_and_a_text_prompt_is_refused() {
    let device = Default::default();
    let mut model = SegVol::<Flex>::new(&SegVolConfig::tiny(), &device);
    load_segvol(&mut model, shared("weights.safetensors")).unwrap();
    assert!(!model.has_text());
    let err = model.embed_text("liver").unwrap_err();
    assert!(matches!(err, TextError::NotLoaded { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("weights.safetensors") && msg.contains("text_encoder.clip_text_model"),
        "{msg}"
    );
    let err = load_text_encoder::<Flex>(
        shared("weights.safetensors"),
        &TextConfig::clip_b32(96),
        &device,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, WeightsError::Mismatch { .. })
            && msg.contains("tensors missing")
            && msg.contains("text_encoder."),
        "{msg}"
    );
}

/// The tiny SegVol with a full-size tower (dim_align 512 → 96) in one checkpoint: SegVol's own
/// `forward_decoder` with text only and with text + box; then the same after a `.bpk` round trip.
#[test]
fn segvol_with_text_matches_the_original_forward_decoder() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(shared("weights.safetensors")).unwrap();
    let tiny = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let text: Vec<_> = text_tensors(&TextConfig::clip_b32(96))
        .into_iter()
        .map(|(k, s, v)| (format!("model.{k}"), s, v))
        .collect();
    let path = dir.path().join("tiny_text.safetensors");
    write_safetensors(&path, &text, Some(&tiny));
    // Part of a tower (no `dim_align`): refused, naming what is missing, not dropped silently.
    let part = dir.path().join("tiny_part.safetensors");
    let without: Vec<_> = text
        .iter()
        .filter(|t| !t.0.contains("dim_align"))
        .cloned()
        .collect();
    write_safetensors(&part, &without, Some(&tiny));
    drop((text, without));
    let mut m = SegVol::<Flex>::new(&SegVolConfig::tiny(), &Default::default());
    let e = load_segvol(&mut m, &part).unwrap_err().to_string();
    assert!(
        e.contains("2 tensors missing") && e.contains("text_encoder.dim_align"),
        "{e}"
    );

    let device = Default::default();
    let mut model = SegVol::<Flex>::new(&SegVolConfig::tiny(), &device);
    let report = load_segvol(&mut model, &path).unwrap();
    assert!(model.has_text());
    assert!(
        report
            .ignored
            .iter()
            .all(|k| !k.contains("text_encoder.") || k.contains("position_ids")),
        "{:?}",
        report.ignored
    );
    let bpk = dir.path().join("tiny_text.bpk");
    save_burnpack(&model, &SegVolConfig::tiny(), "test", &bpk).unwrap();
    let mut from_bpk = SegVol::<Flex>::new(&SegVolConfig::tiny(), &device);
    load_segvol(&mut from_bpk, &bpk).unwrap();
    assert!(from_bpk.has_text());

    let (_, want_t) = npy(&here("tiny_text_embedding.npy"));
    let (eshape, emb) = npy(&shared("image_embedding.npy"));
    let (_, b) = npy(&shared("box.npy"));
    let boxes = Some([b[0], b[1], b[2], b[3], b[4], b[5]]);
    for (tag, m) in [("checkpoint", &model), ("bpk", &from_bpk)] {
        let t = m.embed_text("liver").unwrap();
        let d = max_diff(&t, &want_t);
        assert!(d <= 1e-5, "{tag}: text embedding {d:e}");
        // Cached: the same values again.
        assert_eq!(m.embed_text("liver").unwrap(), t);
        for (file, boxes) in [
            ("tiny_text_logits.npy", None),
            ("tiny_text_box_logits.npy", boxes),
        ] {
            let e = Tensor::<Flex, 5>::from_data(
                TensorData::new(emb.clone(), [1, 96, 8, 4, 4]),
                &device,
            );
            assert_eq!(eshape, [1, 96, 8, 4, 4]);
            let out = m.decode(
                e,
                &Prompts {
                    boxes,
                    points: Vec::new(),
                    text: Some(t.clone()),
                    mask: None,
                    image: None,
                },
            );
            let got: Vec<f32> = out.logits.into_data().to_vec().unwrap();
            let (shape, want) = npy(&here(file));
            assert_eq!(shape, [1, 1, 32, 64, 64]);
            let d = max_diff(&got, &want);
            assert!(d <= 1e-4, "{tag} {file}: {d:e}");
            // Not a constant: the text changes the logits (compared with the box alone).
            if boxes.is_some() {
                let e = Tensor::<Flex, 5>::from_data(
                    TensorData::new(emb.clone(), [1, 96, 8, 4, 4]),
                    &device,
                );
                let plain = m.decode(
                    e,
                    &Prompts {
                        boxes,
                        ..Default::default()
                    },
                );
                let plain: Vec<f32> = plain.logits.into_data().to_vec().unwrap();
                assert!(max_diff(&plain, &want) > 1e-2);
            }
        }
    }
    // A name whose prompt exceeds 77 tokens.
    let long = vec!["liver"; 80].join(" ");
    assert!(matches!(
        model.embed_text(&long),
        Err(TextError::TooLong { tokens, max: 77, .. }) if tokens > 77
    ));
}
