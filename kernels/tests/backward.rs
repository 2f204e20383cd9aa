//! The backward kernels against central differences of a naive f64 forward pass (independent
//! of the formulas the kernels use).
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_close, erf64, gelu64, rand_vec};
use proptest::prelude::*;
use segvol_kernels::{
    Heads, attention, attention_backward, attention_backward_with_probs, attention_with_probs,
    conv_transpose_k2s2_backward, gelu_backward_in_place,
};

/// Σ attention(q, k, v) ⊙ w in f64, q `[nq, h·d]`, k `[nk, h·d]`, v `[nk, h·dv]` row-major.
#[allow(clippy::too_many_arguments)]
fn weighted_attention(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    w: &[f64],
    [nq, nk, heads, d, dv]: [usize; 5],
    scale: f64,
) -> f64 {
    let p = naive_probs(q, k, [nq, nk, heads, d], scale);
    let mut total = 0.0;
    for h in 0..heads {
        for i in 0..nq {
            let row = &p[(h * nq + i) * nk..][..nk];
            for e in 0..dv {
                let o: f64 = (0..nk)
                    .map(|j| row[j] * v[j * heads * dv + h * dv + e])
                    .sum();
                total += o * w[i * heads * dv + h * dv + e];
            }
        }
    }
    total
}

/// The gradient of `f` at `x` by central differences.
fn numeric_grad(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let h = 1e-6;
    let mut y = x.to_vec();
    (0..x.len())
        .map(|i| {
            y[i] = x[i] + h;
            let up = f(&y);
            y[i] = x[i] - h;
            let down = f(&y);
            y[i] = x[i];
            (up - down) / (2.0 * h)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// q, k and v as three dense buffers, or (`fused`, nq = nk) as the ViT's one `[n, 3c]`
    /// buffer `[q | k | v]`.
    #[test]
    fn attention_gradients_match_central_differences(
        nq in 1usize..7, nk in 1usize..9, heads in 1usize..4, d in 1usize..5, dv in 1usize..4,
        fused in any::<bool>(), seed in 0u64..1000,
    ) {
        let (nk, dv) = if fused { (nq, d) } else { (nk, dv) };
        let (c, cv) = (heads * d, heads * dv);
        let q: Vec<f32> = rand_vec(nq * c, seed).iter().map(|x| 2.0 * x).collect();
        let k: Vec<f32> = rand_vec(nk * c, seed + 1).iter().map(|x| 2.0 * x).collect();
        let v = rand_vec(nk * cv, seed + 2);
        let w = rand_vec(nq * cv, seed + 3);
        let scale = 1.0 / (d as f32).sqrt();
        let packed: Vec<f32> = if fused {
            (0..nq).flat_map(|i| {
                q[i * c..(i + 1) * c].iter()
                    .chain(&k[i * c..(i + 1) * c])
                    .chain(&v[i * c..(i + 1) * c])
                    .copied()
                    .collect::<Vec<_>>()
            }).collect()
        } else {
            Vec::new()
        };
        let (hq, hk, hv) = if fused {
            let h = |offset| Heads { data: &packed, rows: nq, row_stride: 3 * c, offset, heads, dim: d };
            (h(0), h(c), h(2 * c))
        } else {
            (
                Heads { data: &q, rows: nq, row_stride: c, offset: 0, heads, dim: d },
                Heads { data: &k, rows: nk, row_stride: c, offset: 0, heads, dim: d },
                Heads { data: &v, rows: nk, row_stride: cv, offset: 0, heads, dim: dv },
            )
        };
        let (gq, gk, gv) = attention_backward(hq, hk, hv, &w, scale).unwrap();
        let f64s = |x: &[f32]| x.iter().map(|&v| v as f64).collect::<Vec<f64>>();
        let (q64, k64, v64, w64) = (f64s(&q), f64s(&k), f64s(&v), f64s(&w));
        let dims = [nq, nk, heads, d, dv];
        let s = scale as f64;
        let want_q = numeric_grad(&q64, |x| weighted_attention(x, &k64, &v64, &w64, dims, s));
        let want_k = numeric_grad(&k64, |x| weighted_attention(&q64, x, &v64, &w64, dims, s));
        let want_v = numeric_grad(&v64, |x| weighted_attention(&q64, &k64, x, &w64, dims, s));
        assert_close(&gq, &want_q, 2e-5, "dq");
        assert_close(&gk, &want_k, 2e-5, "dk");
        assert_close(&gv, &want_v, 2e-5, "dv");
        // P kept by the forward pass instead of recomputed: the same output, the same gradients.
        let (out, probs) = attention_with_probs(hq, hk, hv, scale).unwrap();
        prop_assert_eq!(&out, &attention(hq, hk, hv, scale).unwrap());
        let (pq, pk, pv) = attention_backward_with_probs(hq, hk, hv, &probs, &w, scale).unwrap();
        assert_close(&pq, &want_q, 2e-5, "dq with P kept");
        assert_close(&pk, &want_k, 2e-5, "dk with P kept");
        assert_close(&pv, &want_v, 2e-5, "dv with P kept");
    }
}

/// softmax(q·kᵀ·scale) per head in f64: `[heads, nq, nk]`.
fn naive_probs(q: &[f64], k: &[f64], [nq, nk, heads, d]: [usize; 4], scale: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(heads * nq * nk);
    for h in 0..heads {
        for i in 0..nq {
            let s: Vec<f64> = (0..nk)
                .map(|j| {
                    (0..d)
                        .map(|e| q[i * heads * d + h * d + e] * k[j * heads * d + h * d + e])
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let mx = s.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = s.iter().map(|x| (x - mx).exp()).sum();
            out.extend(s.iter().map(|x| (x - mx).exp() / z));
        }
    }
    out
}

/// The kept probabilities where the forward pass splits the queries into several blocks per
/// head (nk = 1100 gives blocks of 238 rows, so 300 queries are two blocks of different
/// sizes): each block's rows at their place, against softmax in f64.
#[test]
fn kept_probabilities_match_softmax_across_query_blocks() {
    let (nq, nk, heads, d) = (300, 1100, 2, 3);
    let q = rand_vec(nq * heads * d, 7);
    let k = rand_vec(nk * heads * d, 8);
    let v = rand_vec(nk * heads * d, 9);
    let h = |data: &'static [f32], rows| Heads {
        data,
        rows,
        row_stride: heads * d,
        offset: 0,
        heads,
        dim: d,
    };
    let (q, k, v): (&'static [f32], &'static [f32], &'static [f32]) =
        (q.leak(), k.leak(), v.leak());
    let scale = 0.7;
    let (out, probs) = attention_with_probs(h(q, nq), h(k, nk), h(v, nk), scale).unwrap();
    assert_eq!(out, attention(h(q, nq), h(k, nk), h(v, nk), scale).unwrap());
    let f64s = |x: &[f32]| x.iter().map(|&v| v as f64).collect::<Vec<f64>>();
    let want = naive_probs(&f64s(q), &f64s(k), [nq, nk, heads, d], scale as f64);
    assert_close(&probs, &want, 1e-6, "probabilities");
    // The output at those sizes too: P·v per head, in f64.
    let v64 = f64s(v);
    let mut want_out = vec![0.0f64; nq * heads * d];
    for hh in 0..heads {
        for i in 0..nq {
            for j in 0..nk {
                let p = want[(hh * nq + i) * nk + j];
                for e in 0..d {
                    want_out[i * heads * d + hh * d + e] += p * v64[j * heads * d + hh * d + e];
                }
            }
        }
    }
    assert_close(&out, &want_out, 1e-5, "output");
    assert!(
        attention_backward_with_probs(
            h(q, nq),
            h(k, nk),
            h(v, nk),
            &probs[1..],
            &vec![0.0; nq * heads * d],
            scale
        )
        .is_err()
    );
}

#[test]
fn attention_backward_refuses_what_does_not_agree() {
    let x = rand_vec(24, 1);
    let h = |rows, dim| Heads {
        data: &x,
        rows,
        row_stride: 4,
        offset: 0,
        heads: 1,
        dim,
    };
    assert!(attention_backward(h(3, 4), h(3, 4), h(3, 4), &[0.0; 11], 0.5).is_err());
    assert!(attention_backward(h(3, 4), h(3, 3), h(3, 4), &[0.0; 12], 0.5).is_err());
    assert!(attention_backward(h(3, 4), h(3, 4), h(2, 4), &[0.0; 12], 0.5).is_err());
    assert!(attention_backward(h(3, 4), h(3, 4), h(3, 4), &[0.0; 12], 0.5).is_ok());
}

/// Within |x| ≤ 4 (where the series above is accurate to 1e-12, so that differences of it are
/// meaningful): against central differences of GELU itself; over |x| ≤ 9: against
/// Φ(x) + x·φ(x) in f64.
#[test]
fn gelu_gradient_matches_central_differences() {
    let x: Vec<f32> = (0..18_001).map(|i| (i as f32 - 9_000.0) * 1e-3).collect();
    let upstream = rand_vec(x.len(), 7);
    let mut g = upstream.clone();
    gelu_backward_in_place(&x, &mut g).unwrap();
    let mut differenced = 0;
    for ((&xi, &u), &gi) in x.iter().zip(&upstream).zip(&g) {
        let x64 = xi as f64;
        let slope = if x64.abs() <= 4.0 {
            differenced += 1;
            let h = 1e-5;
            (gelu64(x64 + h) - gelu64(x64 - h)) / (2.0 * h)
        } else {
            0.5 * (1.0 + erf64(x64 / 2f64.sqrt()))
                + x64 * (-0.5 * x64 * x64).exp() / (2.0 * std::f64::consts::PI).sqrt()
        };
        let want = u as f64 * slope;
        assert!(
            (gi as f64 - want).abs() <= 2e-6 * (1.0 + want.abs()),
            "gelu'({xi}) · {u}: got {gi}, want {want}"
        );
    }
    assert!(differenced > 7_000);
    assert!(gelu_backward_in_place(&x, &mut g[1..]).is_err());
}

/// Σ layer_norm(x) ⊙ w in f64, rows of width `cols`.
fn weighted_layer_norm(x: &[f64], gamma: &[f64], beta: &[f64], w: &[f64], eps: f64) -> f64 {
    let cols = gamma.len();
    let mut total = 0.0;
    for (row, wrow) in x.chunks_exact(cols).zip(w.chunks_exact(cols)) {
        let mean = row.iter().sum::<f64>() / cols as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / cols as f64;
        let inv = 1.0 / (var + eps).sqrt();
        for i in 0..cols {
            total += ((row[i] - mean) * inv * gamma[i] + beta[i]) * wrow[i];
        }
    }
    total
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn layer_norm_gradients_match_central_differences(
        rows in 1usize..6, cols in 2usize..40, seed in 0u64..1000,
    ) {
        let x: Vec<f32> = rand_vec(rows * cols, seed).iter().map(|v| 3.0 * v + 0.5).collect();
        let gamma: Vec<f32> = rand_vec(cols, seed + 1).iter().map(|v| 1.0 + v).collect();
        let beta = rand_vec(cols, seed + 2);
        let w = rand_vec(rows * cols, seed + 3);
        let eps = 1e-5f32;
        let (dx, dg, db) =
            segvol_kernels::layer_norm_backward(&x, cols, &gamma, eps, &w).unwrap();
        let f64s = |x: &[f32]| x.iter().map(|&v| v as f64).collect::<Vec<f64>>();
        let (x64, g64, b64, w64) = (f64s(&x), f64s(&gamma), f64s(&beta), f64s(&w));
        let e = eps as f64;
        let want_x = numeric_grad(&x64, |v| weighted_layer_norm(v, &g64, &b64, &w64, e));
        let want_g = numeric_grad(&g64, |v| weighted_layer_norm(&x64, v, &b64, &w64, e));
        let want_b = numeric_grad(&b64, |v| weighted_layer_norm(&x64, &g64, v, &w64, e));
        assert_close(&dx, &want_x, 2e-5, "dx");
        assert_close(&dg, &want_g, 2e-5, "dgamma");
        assert_close(&db, &want_b, 2e-5, "dbeta");
    }
}

#[test]
fn layer_norm_backward_refuses_what_does_not_agree() {
    let x = rand_vec(12, 1);
    assert!(segvol_kernels::layer_norm_backward(&x, 5, &[1.0; 5], 1e-5, &x).is_err());
    assert!(segvol_kernels::layer_norm_backward(&x, 4, &[1.0; 3], 1e-5, &x).is_err());
    assert!(segvol_kernels::layer_norm_backward(&x, 4, &[1.0; 4], 1e-5, &x[1..]).is_err());
    assert!(segvol_kernels::layer_norm_backward(&x, 4, &[1.0; 4], 1e-5, &x).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// ConvTranspose3d(k = 2, s = 2)'s gradients against the definition, summed voxel by voxel
    /// in f64: out[co, 2z+i, 2y+j, 2x+k] = Σ_ci x[ci, z, y, x]·W[ci, co, i, j, k] + b[co].
    #[test]
    fn conv_transpose_k2s2_gradients_match_the_definition(
        cin in 1usize..5, cout in 1usize..5, d in 1usize..4, h in 1usize..4, w in 1usize..5,
        seed in 0u64..1000,
    ) {
        let n = d * h * w;
        let x = rand_vec(cin * n, seed);
        let wt = rand_vec(cin * cout * 8, seed + 1);
        let g = rand_vec(cout * 8 * n, seed + 2);
        let (dx, dw, db) = conv_transpose_k2s2_backward(&x, [cin, d, h, w], &wt, &g).unwrap();
        let (oh, ow) = (2 * h, 2 * w);
        let mut want_dx = vec![0.0f64; cin * n];
        let mut want_dw = vec![0.0f64; cin * cout * 8];
        let mut want_db = vec![0.0f64; cout];
        for co in 0..cout {
            for oz in 0..2 * d {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let go = g[((co * 2 * d + oz) * oh + oy) * ow + ox] as f64;
                        want_db[co] += go;
                        let (z, y, xx) = (oz / 2, oy / 2, ox / 2);
                        let t = (oz % 2) * 4 + (oy % 2) * 2 + ox % 2;
                        for ci in 0..cin {
                            let v = (z * h + y) * w + xx;
                            let wi = (ci * cout + co) * 8 + t;
                            want_dx[ci * n + v] += wt[wi] as f64 * go;
                            want_dw[wi] += x[ci * n + v] as f64 * go;
                        }
                    }
                }
            }
        }
        assert_close(&dx, &want_dx, 1e-5, "dx");
        assert_close(&dw, &want_dw, 1e-5, "dweight");
        assert_close(&db, &want_db, 1e-5, "dbias");
    }
}

#[test]
fn conv_transpose_k2s2_backward_refuses_what_does_not_agree() {
    let x = rand_vec(2 * 8, 1);
    let wt = rand_vec(2 * 3 * 8, 2);
    assert!(conv_transpose_k2s2_backward(&x, [2, 2, 2, 2], &wt, &[0.0; 3 * 64]).is_ok());
    assert!(conv_transpose_k2s2_backward(&x, [2, 2, 2, 2], &wt, &[0.0; 3 * 64 - 1]).is_err());
    assert!(conv_transpose_k2s2_backward(&x, [3, 2, 2, 2], &wt, &[0.0; 3 * 64]).is_err());
    assert!(conv_transpose_k2s2_backward(&x, [2, 2, 2, 2], &wt[1..], &[0.0; 3 * 64]).is_err());
}

/// AdamW's step on hand-derived values: step 1 (the moments start from the gradient) and
/// step 2, with weight decay.
#[test]
fn adamw_step_by_hand() {
    use segvol_kernels::{AdamWStep, adamw_step};
    let mut s = AdamWStep {
        lr: 0.1,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-5,
        weight_decay: 0.01,
        time: 1,
    };
    // Garbage in the moments: step 1 ignores them.
    let (mut p, mut m, mut v) = (vec![1.0f32, -2.0], vec![7.0f32, 7.0], vec![7.0f32, 7.0]);
    adamw_step(&mut p, &[0.5, 0.0], &mut m, &mut v, &s).unwrap();
    // m = 0.1·g = 0.05, v = 0.001·g² = 0.00025; m̂ = 0.5, v̂ = 0.25, Δ = 0.5 / (0.5 + 1e-5);
    // p = 1·(1 − 0.1·0.01) − 0.1·Δ.
    // (1 − β) in f32 is off by up to 1.3·10⁻⁵ relative (1 − 0.999): the moments are checked to
    // 5·10⁻⁵ relative; the bias correction divides by the same constants, so m̂ and v̂ are exact
    // to f32's precision.
    let rel = |a: f32, b: f64| ((f64::from(a) - b) / b).abs();
    let delta = 0.5 / (0.5 + 1e-5);
    assert!(
        rel(m[0], 0.05) < 5e-5 && rel(v[0], 0.00025) < 5e-5,
        "{m:?} {v:?}"
    );
    assert!(
        (f64::from(p[0]) - (0.999 - 0.1 * delta)).abs() < 1e-6,
        "{p:?}"
    );
    // A zero gradient: only the decay, −2·0.999.
    assert!(
        (p[1] + 1.998).abs() < 1e-6 && m[1] == 0.0 && v[1] == 0.0,
        "{p:?}"
    );
    // Step 2, gradient 0.5 again: m = 0.9·0.05 + 0.05 = 0.095, v = 0.999·0.00025 + 0.00025;
    // m̂ = 0.095 / 0.19 = 0.5, v̂ = 0.00049975 / 0.001999 = 0.25.
    s.time = 2;
    let p1 = f64::from(p[0]);
    adamw_step(&mut p, &[0.5, 0.0], &mut m, &mut v, &s).unwrap();
    assert!(
        rel(m[0], 0.095) < 5e-5 && rel(v[0], 0.000_499_75) < 5e-5,
        "{m:?} {v:?}"
    );
    assert!(
        (f64::from(p[0]) - (p1 * 0.999 - 0.1 * delta)).abs() < 1e-6,
        "{p:?}"
    );
    // Lengths that disagree, and time 0, are errors.
    assert!(adamw_step(&mut p, &[0.5], &mut m, &mut v, &s).is_err());
    s.time = 0;
    assert!(adamw_step(&mut p, &[0.5, 0.0], &mut m, &mut v, &s).is_err());
}
