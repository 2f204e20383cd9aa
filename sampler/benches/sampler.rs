//! `cargo bench -p segvol-sampler`: one sampling round on 32×256×256 and 128×512×512 maps
//! (a sphere with an uncertain shell plus deterministic noise, two clicks), reported as bytes
//! of probabilities read per second. `sampler/bench/numpy_reference.py bench` times the numpy
//! implementation of the same rule on the same kind of map.

// Test code: a panic with the failing value is the right outcome.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use segvol_sampler::{Click, SamplerConfig, sample};

/// A sphere of radius 0.5 in [-1, 1]³ with a soft edge (an uncertain shell) plus a hashed
/// ±0.02 noise; `sampler/bench/numpy_reference.py` builds the same map.
fn sphere_map(dims: [usize; 3]) -> Vec<f32> {
    let lin = |i: usize, n: usize| -1.0f32 + 2.0 * i as f32 / (n - 1) as f32;
    let mut out = Vec::with_capacity(dims.iter().product());
    for z in 0..dims[0] {
        for y in 0..dims[1] {
            for x in 0..dims[2] {
                let i = ((z * dims[1] + y) * dims[2] + x) as u64;
                let noise = ((i * 2_654_435_761) % (1 << 32)) as f32 / 4_294_967_296.0;
                let r =
                    (lin(z, dims[0]).powi(2) + lin(y, dims[1]).powi(2) + lin(x, dims[2]).powi(2))
                        .sqrt();
                let p = 1.0 / (1.0 + ((r - 0.5) * 40.0).exp()) + (noise * 0.04 - 0.02);
                out.push(p.clamp(0.0, 1.0));
            }
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("sample");
    group.sample_size(10);
    for dims in [[32, 256, 256], [128, 512, 512]] {
        let map = sphere_map(dims);
        let mid = dims.map(|d| d / 2);
        let clicks = [
            Click::fg([mid[0], mid[1], mid[2] + dims[2] / 4]),
            Click::bg([mid[0], mid[1] + dims[1] / 4, mid[2]]),
        ];
        let cfg = SamplerConfig::default();
        group.throughput(Throughput::Bytes((map.len() * 4) as u64));
        group.bench_function(format!("{}x{}x{}", dims[0], dims[1], dims[2]), |b| {
            b.iter(|| sample(black_box(dims), black_box(&map), &clicks, &cfg).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
