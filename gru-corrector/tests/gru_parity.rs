//! burn's GRU with PyTorch's packed weights against `nn.GRU(32, 16, batch_first=True)`
//! (shared/fixtures/segvol_tiny: gru.safetensors, gru_input, gru_h0, gru_output, gru_hn).

// Test code: a panic with the failing value is the right outcome.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use ndarray::ArrayD;
use ndarray_npy::ReadNpyExt;
use segvol_backends::Flex;
use segvol_gru::pytorch::read_safetensors;

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
fn packed_pytorch_gru_matches_within_1e_5() {
    let device = Default::default();
    let w = read_safetensors(fixture("gru.safetensors"), "").unwrap();
    assert_eq!((w.d_input, w.d_hidden), (32, 16));
    let gru = w.to_burn::<Flex>(&device);
    let (xs, x) = npy("gru_input.npy");
    let (_, h0) = npy("gru_h0.npy");
    let (os, want) = npy("gru_output.npy");
    let (_, hn) = npy("gru_hn.npy");
    let input = Tensor::<Flex, 3>::from_data(TensorData::new(x, [xs[0], xs[1], xs[2]]), &device);
    let state = Tensor::<Flex, 2>::from_data(TensorData::new(h0, [2, 16]), &device);
    let out = gru.forward(input, Some(state));
    assert_eq!(out.dims().to_vec(), os);
    let got: Vec<f32> = out.clone().into_data().to_vec().unwrap();
    let max = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("GRU output max abs diff {max:e}");
    assert!(max <= 1e-5, "output: {max}");
    // h_n is the last step's state.
    let last: Vec<f32> = out.narrow(1, 2, 1).into_data().to_vec().unwrap();
    let max_h = last
        .iter()
        .zip(&hn)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max_h <= 1e-5, "h_n: {max_h}");
}

#[test]
fn wrong_files_are_errors() {
    let e = read_safetensors(fixture("weights.safetensors"), "").unwrap_err();
    assert!(e.to_string().contains("weight_ih_l0"), "{e}");
    let e = read_safetensors(fixture("image.npy"), "").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("image.npy") && msg.contains("neither a safetensors file"),
        "{e}"
    );
}
