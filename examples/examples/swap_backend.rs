//! The same computation on whichever burn backend `--backend` names: SegVol's patchify step
//! (a 32×64×64 volume cut into 4×16×16 patches, as the image encoder does) followed by one
//! weight-free self-attention over the patch tokens. Generic code is written once
//! (`impl BackendTask`) and `dispatch` calls it with the concrete backend type; every backend
//! prints the same numbers (to float rounding).
//!
//! ```text
//! cargo run -p segvol-examples --example swap_backend -- --backend ndarray
//! cargo run -p segvol-examples --example swap_backend --features wgpu -- --backend wgpu
//! ```

use std::time::Instant;

use anyhow::Result;
use burn::tensor::activation::softmax;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use clap::Parser;
use segvol_backends::{Backend, BackendKind, BackendTask, dispatch};

#[derive(Parser)]
struct Args {
    /// ndarray, flex, wgpu[:N] or cuda[:N] (whatever this build has); default: every one.
    #[arg(long)]
    backend: Option<String>,
}

/// Backend-generic work: patchify a deterministic volume and attend over the patches.
struct PatchAttention;

impl BackendTask for PatchAttention {
    type Output = (Vec<usize>, f32);
    fn run<B: Backend>(self, device: &B::Device) -> Self::Output {
        let (d, h, w) = (32, 64, 64);
        let voxels: Vec<f32> = (0..d * h * w).map(|i| ((i % 97) as f32) / 97.0).collect();
        let image = Tensor::<B, 5>::from_data(TensorData::new(voxels, [1, 1, d, h, w]), device);
        // [1,1,32,64,64] → 128 tokens of 1024 voxels (8×4×4 grid of 4×16×16 patches).
        let tokens = image
            .reshape([8, 4, 4, 16, 4, 16])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([1, 128, 1024]);
        let scores = tokens
            .clone()
            .matmul(tokens.clone().swap_dims(1, 2))
            .div_scalar(32.0);
        let out = softmax(scores, 2).matmul(tokens); // [1, 128, 1024]
        let dims = out.dims().to_vec();
        (dims, out.mean().into_scalar().elem::<f32>())
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let kinds = match &args.backend {
        Some(name) => vec![name.parse::<BackendKind>()?],
        None => BackendKind::compiled(),
    };
    for kind in kinds {
        let t = Instant::now();
        let (dims, mean) = dispatch(kind, PatchAttention);
        println!(
            "{kind:>8}: attended tokens {dims:?}, mean {mean:.6}, {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(())
}
