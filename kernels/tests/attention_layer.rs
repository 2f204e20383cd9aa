//! `attention_layer` in each of its three plans against SAM's `Attention` written out naively in
//! f64 (project, split heads, softmax(q·kᵀ/√d)·v, project out).

#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_close, rand_vec};
use segvol_kernels::{
    AttentionPlan, AttentionWeights, MatRef, RowNorm, attention_layer, attention_layer_residual,
    attention_layer_residual_factored, image_to_token_norm, plan_attention_layer,
};

/// Row-major `[rows, in] · [in, out] + bias` in f64.
fn project(x: &[f64], rows: usize, w: &[f64], din: usize, dout: usize, b: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; rows * dout];
    for r in 0..rows {
        for o in 0..dout {
            y[r * dout + o] = b[o]
                + (0..din)
                    .map(|i| x[r * din + i] * w[i * dout + o])
                    .sum::<f64>();
        }
    }
    y
}

struct Case {
    nq: usize,
    nk: usize,
    c: usize,
    inner: usize,
    c_out: usize,
    heads: usize,
}

/// Weights `[in, out]` and biases for q, k, v, out, reproducible from `seed`.
fn weights(case: &Case, seed: u64) -> Vec<(Vec<f32>, Vec<f32>)> {
    let dims = [
        (case.c, case.inner),
        (case.c, case.inner),
        (case.c, case.inner),
        (case.inner, case.c_out),
    ];
    dims.iter()
        .enumerate()
        .map(|(i, &(din, dout))| {
            let s = (din as f32).sqrt().recip();
            let w = rand_vec(din * dout, seed + 10 * i as u64)
                .into_iter()
                .map(|v| v * s)
                .collect();
            (w, rand_vec(dout, seed + 10 * i as u64 + 5))
        })
        .collect()
}

fn reference(case: &Case, q: &[f32], k: &[f32], v: &[f32], w: &[(Vec<f32>, Vec<f32>)]) -> Vec<f64> {
    let f = |x: &[f32]| x.iter().map(|&v| v as f64).collect::<Vec<f64>>();
    let (nq, nk, c, inner) = (case.nq, case.nk, case.c, case.inner);
    let qp = project(&f(q), nq, &f(&w[0].0), c, inner, &f(&w[0].1));
    let kp = project(&f(k), nk, &f(&w[1].0), c, inner, &f(&w[1].1));
    let vp = project(&f(v), nk, &f(&w[2].0), c, inner, &f(&w[2].1));
    let d = inner / case.heads;
    let mut o = vec![0.0; nq * inner];
    for h in 0..case.heads {
        for i in 0..nq {
            let s: Vec<f64> = (0..nk)
                .map(|j| {
                    (0..d)
                        .map(|t| qp[i * inner + h * d + t] * kp[j * inner + h * d + t])
                        .sum::<f64>()
                        / (d as f64).sqrt()
                })
                .collect();
            let m = s.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = s.iter().map(|&x| (x - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for t in 0..d {
                o[i * inner + h * d + t] = (0..nk)
                    .map(|j| e[j] / z * vp[j * inner + h * d + t])
                    .sum::<f64>();
            }
        }
    }
    project(&o, nq, &f(&w[3].0), inner, case.c_out, &f(&w[3].1))
}

fn run(case: &Case, seed: u64, transposed_weights: bool, biases: bool) {
    let q = rand_vec(case.nq * case.c, seed + 1);
    let k = rand_vec(case.nk * case.c, seed + 2);
    let v = rand_vec(case.nk * case.c, seed + 3);
    let mut w = weights(case, seed + 100);
    if !biases {
        for (_, b) in &mut w {
            b.iter_mut().for_each(|x| *x = 0.0);
        }
    }
    let want = reference(case, &q, &k, &v, &w);
    // The same weights stored `[out, in]` (as PyTorch keeps them) and viewed transposed.
    let stored: Vec<(Vec<f32>, usize, usize)> = w
        .iter()
        .map(|(m, b)| {
            let (din, dout) = (m.len() / b.len(), b.len());
            if transposed_weights {
                let mut t = vec![0.0; m.len()];
                for i in 0..din {
                    for o in 0..dout {
                        t[o * din + i] = m[i * dout + o];
                    }
                }
                (t, din, dout)
            } else {
                (m.clone(), din, dout)
            }
        })
        .collect();
    let view = |i: usize| {
        let (m, din, dout) = &stored[i];
        let mat = if transposed_weights {
            MatRef::row_major(m, *dout, *din).unwrap().t()
        } else {
            MatRef::row_major(m, *din, *dout).unwrap()
        };
        (mat, biases.then_some(w[i].1.as_slice()))
    };
    let weights = AttentionWeights {
        q: view(0),
        k: view(1),
        v: view(2),
        out: view(3),
        heads: case.heads,
    };
    for plan in [
        AttentionPlan::Direct,
        AttentionPlan::FewQueries,
        AttentionPlan::FewKeys,
    ] {
        let got = attention_layer(
            MatRef::row_major(&q, case.nq, case.c).unwrap(),
            MatRef::row_major(&k, case.nk, case.c).unwrap(),
            MatRef::row_major(&v, case.nk, case.c).unwrap(),
            &weights,
            plan,
        )
        .unwrap();
        assert_close(
            &got,
            &want,
            2e-5,
            &format!(
                "{plan:?} nq {} nk {} transposed {transposed_weights} biases {biases}",
                case.nq, case.nk
            ),
        );
        // With a residual: the naive layer's output plus it.
        let residual: Vec<f32> = (0..want.len()).map(|i| (i % 7) as f32 - 3.0).collect();
        let with = attention_layer_residual(
            MatRef::row_major(&q, case.nq, case.c).unwrap(),
            MatRef::row_major(&k, case.nk, case.c).unwrap(),
            MatRef::row_major(&v, case.nk, case.c).unwrap(),
            &weights,
            plan,
            Some(&residual),
        )
        .unwrap();
        let want_r: Vec<f64> = want
            .iter()
            .zip(&residual)
            .map(|(w, &r)| w + r as f64)
            .collect();
        assert_close(&with, &want_r, 2e-5, &format!("{plan:?} with a residual"));
        assert!(
            attention_layer_residual(
                MatRef::row_major(&q, case.nq, case.c).unwrap(),
                MatRef::row_major(&k, case.nk, case.c).unwrap(),
                MatRef::row_major(&v, case.nk, case.c).unwrap(),
                &weights,
                plan,
                Some(&residual[1..]),
            )
            .is_err(),
            "a residual of the wrong size is refused"
        );
    }
    fused_update(case, seed, &q, &k, &v, &weights, &want);
}

/// `image_to_token_norm` against the naive layer's output plus a residual, normalised per row
/// in f64, with the PE added; its factors and statistics against the unfused kernels' and
/// the f64 rows'.
fn fused_update(
    case: &Case,
    seed: u64,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    weights: &AttentionWeights<'_>,
    want: &[f64],
) {
    let c = case.c_out;
    let residual = rand_vec(want.len(), seed + 7);
    let pe = rand_vec(want.len(), seed + 8);
    let gamma: Vec<f32> = rand_vec(c, seed + 9)
        .iter()
        .map(|g| 1.0 + 0.5 * g)
        .collect();
    let beta = rand_vec(c, seed + 11);
    let eps = 1e-5f32;
    let (qm, km, vm) = (
        MatRef::row_major(q, case.nq, case.c).unwrap(),
        MatRef::row_major(k, case.nk, case.c).unwrap(),
        MatRef::row_major(v, case.nk, case.c).unwrap(),
    );
    let norm = RowNorm {
        gamma: &gamma,
        beta: &beta,
        eps,
    };
    let got = image_to_token_norm(qm, km, vm, weights, &residual, norm, Some(&pe)).unwrap();
    let (mut normed, mut with_pe) = (vec![0.0f64; want.len()], vec![0.0f64; want.len()]);
    let (mut means, mut invs) = (vec![0.0f64; case.nq], vec![0.0f64; case.nq]);
    for r in 0..case.nq {
        let x: Vec<f64> = (0..c)
            .map(|j| want[r * c + j] + residual[r * c + j] as f64)
            .collect();
        let mean = x.iter().sum::<f64>() / c as f64;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / c as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for j in 0..c {
            let y = (x[j] - mean) * inv * gamma[j] as f64 + beta[j] as f64;
            normed[r * c + j] = y;
            with_pe[r * c + j] = y + pe[r * c + j] as f64;
        }
        (means[r], invs[r]) = (mean, inv);
    }
    let what = format!("fused update nq {} nk {}", case.nq, case.nk);
    assert_close(&got.tokens, &normed, 5e-5, &what);
    assert_close(got.with_pe.as_deref().unwrap(), &with_pe, 5e-5, &what);
    assert_close(&got.stats.mean, &means, 2e-5, &what);
    assert_close(&got.stats.inv_std, &invs, 1e-4, &what);
    let (_, factors) =
        attention_layer_residual_factored(qm, km, vm, weights, Some(&residual)).unwrap();
    let f64s = |x: &[f32]| x.iter().map(|&v| v as f64).collect::<Vec<f64>>();
    assert_close(&got.factors.probs, &f64s(&factors.probs), 1e-6, &what);
    assert_close(&got.factors.values, &f64s(&factors.values), 1e-6, &what);
    // Without a PE: the same tokens, nothing added.
    let plain = image_to_token_norm(qm, km, vm, weights, &residual, norm, None).unwrap();
    assert_eq!(
        plain.tokens, got.tokens,
        "{what}: the PE changes nothing else"
    );
    assert!(plain.with_pe.is_none());
    assert!(
        image_to_token_norm(qm, km, vm, weights, &residual, norm, Some(&pe[1..])).is_err(),
        "{what}: a PE of the wrong size is refused"
    );
}

#[test]
fn every_plan_matches_the_naive_layer() {
    let cases = [
        // token → image: few queries, many keys.
        Case {
            nq: 3,
            nk: 300,
            c: 48,
            inner: 32,
            c_out: 48,
            heads: 4,
        },
        // image → token: many queries, few keys.
        Case {
            nq: 300,
            nk: 3,
            c: 48,
            inner: 32,
            c_out: 48,
            heads: 4,
        },
        // self-attention of the tokens; an output width unlike the input's.
        Case {
            nq: 9,
            nk: 9,
            c: 24,
            inner: 24,
            c_out: 40,
            heads: 3,
        },
        // one key: every softmax is 1.
        Case {
            nq: 17,
            nk: 1,
            c: 16,
            inner: 8,
            c_out: 16,
            heads: 2,
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        for (t, b) in [(false, true), (true, true), (false, false)] {
            run(case, 1000 * i as u64, t, b);
        }
    }
}

#[test]
fn the_plan_follows_the_token_counts() {
    // SegVol-base's decoder (width 768, cross-attention inner 384 in 8 heads; self-attention
    // 768 in 8 heads) with a box and a click: 8 tokens, 2048 image tokens.
    let (t, n) = (8, 2048);
    assert_eq!(
        plan_attention_layer(t, n, 768, 768, 384, 768, 8),
        AttentionPlan::FewQueries
    );
    assert_eq!(
        plan_attention_layer(n, t, 768, 768, 384, 768, 8),
        AttentionPlan::FewKeys
    );
    assert_eq!(
        plan_attention_layer(t, t, 768, 768, 768, 768, 8),
        AttentionPlan::Direct
    );
    // A ViT block's self-attention: nothing to fold.
    assert_eq!(
        plan_attention_layer(n, n, 768, 768, 768, 768, 12),
        AttentionPlan::Direct
    );
    // Many prompt tokens against a narrow head: folding costs more than it saves.
    assert_eq!(
        plan_attention_layer(64, n, 192, 192, 96, 192, 8),
        AttentionPlan::Direct
    );
}

#[test]
fn mismatched_shapes_are_errors() {
    let case = Case {
        nq: 2,
        nk: 5,
        c: 8,
        inner: 8,
        c_out: 8,
        heads: 2,
    };
    let w = weights(&case, 7);
    let m = |i: usize, din| MatRef::row_major(&w[i].0, din, w[i].1.len()).unwrap();
    let x = rand_vec(5 * 8, 1);
    let short_bias = [0.0f32; 3];
    let ok = AttentionWeights {
        q: (m(0, 8), None),
        k: (m(1, 8), None),
        v: (m(2, 8), None),
        out: (m(3, 8), None),
        heads: 2,
    };
    let xs = MatRef::row_major(&x, 5, 8).unwrap();
    let bad_heads = AttentionWeights { heads: 3, ..ok };
    let bad_bias = AttentionWeights {
        v: (m(2, 8), Some(&short_bias[..])),
        ..ok
    };
    for w in [bad_heads, bad_bias] {
        for plan in [
            AttentionPlan::Direct,
            AttentionPlan::FewQueries,
            AttentionPlan::FewKeys,
        ] {
            assert!(attention_layer(xs, xs, xs, &w, plan).is_err());
        }
    }
    let short = MatRef::row_major(&x, 4, 8).unwrap();
    assert!(attention_layer(xs, xs, short, &ok, AttentionPlan::FewQueries).is_err());
}
