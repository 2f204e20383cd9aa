//! `cargo bench -p segvol-gru`: the per-round overhead of the corrector (issue 6: sampler, GRU
//! and write-back on a 32×256×256 grid, CPU, goal < 20 ms) with the default config (K = 200,
//! H = 256, coordinate head), on the flex backend, split into its three parts.

// Bench code: a panic with the failing value is the right outcome.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use burn::tensor::{Tensor, TensorData};
use criterion::{Criterion, criterion_group, criterion_main};
use segvol_backends::Flex;
use segvol_gru::writeback::{Corrections, write_back};
use segvol_gru::{CorrectionSession, GruCorrectorConfig};
use segvol_sampler::{Click, MapKind, SamplerConfig, sample};

/// Logits of a sphere of radius 0.5 in [-1, 1]³ with a soft edge: an uncertain shell.
fn sphere_logits(dims: [usize; 3]) -> Vec<f32> {
    let lin = |i: usize, n: usize| -1.0f32 + 2.0 * i as f32 / (n - 1) as f32;
    let mut out = Vec::with_capacity(dims.iter().product());
    for z in 0..dims[0] {
        for y in 0..dims[1] {
            for x in 0..dims[2] {
                let r =
                    (lin(z, dims[0]).powi(2) + lin(y, dims[1]).powi(2) + lin(x, dims[2]).powi(2))
                        .sqrt();
                out.push((0.5 - r) * 40.0);
            }
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let device = Default::default();
    let dims = [32, 256, 256];
    let corrector = GruCorrectorConfig::default().init::<Flex>(&device);
    let mut logits = sphere_logits(dims);
    // One fg click just outside the sphere (missed), one bg click inside.
    let clicks = [Click::fg([16, 128, 196]), Click::bg([16, 128, 128])];
    let cfg = SamplerConfig {
        map: MapKind::Logits,
        ..SamplerConfig::default()
    };
    let state = sample(dims, &logits, &clicks, &cfg).unwrap();
    eprintln!("state: {}", state.summary());
    let mut group = c.benchmark_group("corrector_round_32x256x256");
    group.sample_size(20);
    group.bench_function("sampler", |b| {
        b.iter(|| black_box(sample(dims, &logits, &clicks, &cfg).unwrap()))
    });
    let tokens = state.gru_input();
    let coords = state.coords_normalized();
    group.bench_function("gru_and_heads", |b| {
        b.iter(|| {
            let t = Tensor::<Flex, 3>::from_data(
                TensorData::new(tokens.clone(), [1, 2, 1600]),
                &device,
            );
            let c =
                Tensor::<Flex, 2>::from_data(TensorData::new(coords.clone(), [1, 1200]), &device);
            let out = corrector.forward(t, c, None);
            black_box(out.delta.into_data())
        })
    });
    let raw = state.raw_coords();
    let valid = state.valid();
    let delta = vec![0.0f32; 400];
    group.bench_function("write_back", |b| {
        b.iter(|| {
            let corr = Corrections {
                coords: &raw,
                valid: &valid,
                delta: &delta,
                shift: None,
            };
            black_box(write_back(&mut logits, dims, &corr, 0))
        })
    });
    let mut session = CorrectionSession::new(&corrector, &device);
    let mut work = sphere_logits(dims);
    group.bench_function("session_step", |b| {
        b.iter(|| black_box(session.step(dims, &mut work, &clicks).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
