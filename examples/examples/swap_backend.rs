//! The same computation, a tiny SegVol image encoder forward pass, on whichever burn backend
//! `--backend` names. Generic code is written once (`impl BackendTask`) and `dispatch` calls it
//! with the concrete backend type.
//!
//! ```text
//! cargo run -p segvol-examples --example swap_backend -- --backend ndarray
//! cargo run -p segvol-examples --example swap_backend --features wgpu -- --backend wgpu
//! ```

use std::time::Instant;

use anyhow::Result;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use clap::Parser;
use segvol_backends::{Backend, BackendKind, BackendTask, dispatch};
use segvol_core::{SegVolConfig, image_encoder::ImageEncoder};

#[derive(Parser)]
struct Args {
    /// ndarray, flex, wgpu[:N] or cuda[:N] (whatever this build has); default: every one.
    #[arg(long)]
    backend: Option<String>,
}

/// Backend-generic work: embed a deterministic 32×64×64 volume with the tiny encoder.
struct Embed;

impl BackendTask for Embed {
    type Output = (Vec<usize>, f32);
    fn run<B: Backend>(self, device: &B::Device) -> Self::Output {
        let config = SegVolConfig::tiny();
        let [d, h, w] = config.image_size;
        let voxels: Vec<f32> = (0..d * h * w).map(|i| ((i % 97) as f32) / 97.0).collect();
        let image = Tensor::<B, 5>::from_data(TensorData::new(voxels, [1, 1, d, h, w]), device);
        let encoder = ImageEncoder::<B>::new(&config, device);
        let embedding = encoder.forward(image);
        let dims = embedding.dims().to_vec();
        let mean = embedding.abs().mean().into_scalar().elem::<f32>();
        (dims, mean)
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
        let (dims, mean) = dispatch(kind, Embed);
        println!(
            "{kind:>8}: embedding {dims:?}, mean |x| = {mean:.4} (random weights), {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(())
}
