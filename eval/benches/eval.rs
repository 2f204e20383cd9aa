//! `cargo bench -p segvol-eval`: the click simulator and NSD on the synthetic 300×512×512 case
//! of `eval/bench/official_speed.py` (ellipsoid vs the same shifted by (2, 3, −2) voxels,
//! spacing (1.0, 0.8, 0.8) mm), for the ratio to the official Python functions.

// Bench code: a panic is the right outcome on failure.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use segvol_eval::{metrics::nsd, simulate_click};

const D: i64 = 300;
const H: i64 = 512;
const W: i64 = 512;

fn ellipsoid(shift: [i64; 3]) -> Vec<bool> {
    let mut v = Vec::with_capacity((D * H * W) as usize);
    let (a, b) = (100i128, 150i128);
    for z in 0..D {
        for y in 0..H {
            for x in 0..W {
                let dz = i128::from(z - (D / 2 + shift[0]));
                let dy = i128::from(y - (H / 2 + shift[1]));
                let dx = i128::from(x - (W / 2 + shift[2]));
                v.push(
                    dz * dz * b * b * b * b + dy * dy * a * a * b * b + dx * dx * a * a * b * b
                        <= (a * b * b) * (a * b * b),
                );
            }
        }
    }
    v
}

fn bench(c: &mut Criterion) {
    let gt = ellipsoid([0, 0, 0]);
    let pred = ellipsoid([2, 3, -2]);
    let dims = [D as usize, H as usize, W as usize];
    println!(
        "click {:?}, NSD@2mm {:.6}",
        simulate_click(&pred, &gt, dims),
        nsd(&pred, &gt, dims, [1.0, 0.8, 0.8], 2.0)
    );
    let mut g = c.benchmark_group("300x512x512");
    g.sample_size(10);
    g.bench_function("next_click", |b| {
        b.iter(|| simulate_click(black_box(&pred), black_box(&gt), dims))
    });
    g.bench_function("nsd", |b| {
        b.iter(|| nsd(black_box(&pred), black_box(&gt), dims, [1.0, 0.8, 0.8], 2.0))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
