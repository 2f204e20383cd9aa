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
use segvol_core::SegVolConfig;
use segvol_core::image_encoder::ImageEncoder;
use segvol_core::weights::{WeightsError, load_image_encoder};

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
