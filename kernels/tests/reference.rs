//! Every kernel against a naive f64 reference written from the formula, on random shapes
//! (proptest) and on the ViT's own shapes.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_close, gelu64, rand_vec};
use proptest::prelude::*;
use segvol_kernels::{
    Heads, MatMut, MatRef, attention, gelu_copy, gelu_in_place, layer_norm, linear, matmul,
};

/// Naive `a[m,k]·b[k,n]` with a general element accessor.
fn naive_mm(
    m: usize,
    k: usize,
    n: usize,
    a: impl Fn(usize, usize) -> f64,
    b: impl Fn(usize, usize) -> f64,
) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k).map(|p| a(i, p) * b(p, j)).sum();
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn strided_matmul_matches_naive(m in 1usize..40, k in 1usize..40, n in 1usize..40,
                                    ta in any::<bool>(), tb in any::<bool>(), acc in any::<bool>(),
                                    pad in 0usize..3, threads in 0usize..3) {
        // a stored either [m, k+pad] row-major or as the transpose of [k, m+pad].
        let a_data = rand_vec((m + pad) * (k + pad) + 3, 1);
        let b_data = rand_vec((k + pad) * (n + pad) + 3, 2);
        let a = if ta {
            MatRef::new(&a_data, 3, [k, m], [m + pad, 1]).unwrap().t()
        } else {
            MatRef::new(&a_data, 3, [m, k], [k + pad, 1]).unwrap()
        };
        let b = if tb {
            MatRef::new(&b_data, 1, [n, k], [k + pad, 1]).unwrap().t()
        } else {
            MatRef::new(&b_data, 1, [k, n], [n + pad, 1]).unwrap()
        };
        let init = rand_vec(m * n, 3);
        let mut dst = init.clone();
        matmul(MatMut::row_major(&mut dst, m, n).unwrap(), acc, a, b, 0.5, threads).unwrap();
        let mut want = naive_mm(m, k, n, |i, p| a.at(i, p) as f64, |p, j| b.at(p, j) as f64);
        for (i, w) in want.iter_mut().enumerate() {
            *w = 0.5 * *w + if acc { init[i] as f64 } else { 0.0 };
        }
        assert_close(&dst, &want, 1e-5, "matmul");
    }

    #[test]
    fn attention_matches_naive(nq in 1usize..20, nk in 1usize..300, heads in 1usize..4, dim in 1usize..9) {
        let c = heads * dim;
        // q, k, v packed as one [n, 3c] buffer (the ViT's fused qkv) when nq == nk, else apart.
        let qd = rand_vec(nq * c, 4);
        let kd = rand_vec(nk * 2 * c, 5);
        let q = Heads { data: &qd, rows: nq, row_stride: c, offset: 0, heads, dim };
        let k = Heads { data: &kd, rows: nk, row_stride: 2 * c, offset: 0, heads, dim };
        let v = Heads { data: &kd, rows: nk, row_stride: 2 * c, offset: c, heads, dim };
        let scale = 1.0 / (dim as f32).sqrt();
        let got = attention(q, k, v, scale).unwrap();
        let mut want = vec![0.0f64; nq * c];
        for h in 0..heads {
            for i in 0..nq {
                let s: Vec<f64> = (0..nk).map(|j| (0..dim).map(|d|
                    qd[i * c + h * dim + d] as f64 * kd[j * 2 * c + h * dim + d] as f64).sum::<f64>()
                    * scale as f64).collect();
                let mx = s.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = s.iter().map(|v| (v - mx).exp()).collect();
                let z: f64 = e.iter().sum();
                for d in 0..dim {
                    want[i * c + h * dim + d] = (0..nk).map(|j| e[j] / z * kd[j * 2 * c + c + h * dim + d] as f64).sum();
                }
            }
        }
        assert_close(&got, &want, 2e-6, "attention");
    }

    #[test]
    fn linear_with_bias_residual_gelu(rows in 1usize..30, din in 1usize..30, dout in 1usize..30,
                                      bias in any::<bool>(), res in any::<bool>(), gelu in any::<bool>()) {
        let x = rand_vec(rows * din, 6);
        // burn stores a Linear weight as [in, out]; here transposed storage [out, in] too.
        let w = rand_vec(din * dout, 7);
        let b = rand_vec(dout, 8);
        let r = rand_vec(rows * dout, 9);
        let wv = MatRef::new(&w, 0, [dout, din], [din, 1]).unwrap().t();
        let got = linear(MatRef::row_major(&x, rows, din).unwrap(), wv,
            bias.then_some(&b[..]), res.then_some(&r[..]), gelu).unwrap();
        let mut want = naive_mm(rows, din, dout, |i, p| x[i * din + p] as f64, |p, j| w[j * din + p] as f64);
        for i in 0..rows {
            for j in 0..dout {
                let mut v = want[i * dout + j];
                if bias { v += b[j] as f64; }
                if res { v += r[i * dout + j] as f64; }
                if gelu { v = gelu64(v); }
                want[i * dout + j] = v;
            }
        }
        assert_close(&got, &want, 2e-6, "linear");
    }
}

#[test]
fn layer_norm_matches_formula() {
    let (rows, cols) = (37, 768);
    let x: Vec<f32> = rand_vec(rows * cols, 10)
        .iter()
        .map(|v| v * 3.0 + 0.7)
        .collect();
    let g = rand_vec(cols, 11);
    let b = rand_vec(cols, 12);
    let got = layer_norm(&x, cols, &g, &b, 1e-5).unwrap();
    let mut want = vec![0.0; rows * cols];
    for i in 0..rows {
        let row = &x[i * cols..(i + 1) * cols];
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / cols as f64;
        for j in 0..cols {
            want[i * cols + j] =
                (row[j] as f64 - mean) / (var + 1e-5).sqrt() * g[j] as f64 + b[j] as f64;
        }
    }
    assert_close(&got, &want, 2e-5, "layer_norm");
    assert!(layer_norm(&x, 0, &g, &b, 1e-5).is_err());
    assert!(layer_norm(&x, 7, &g, &b, 1e-5).is_err());
}

#[test]
fn gelu_matches_formula() {
    let mut x: Vec<f32> = (0..20_001).map(|i| (i as f32 - 10_000.0) * 1e-3).collect();
    let input = x.clone();
    gelu_in_place(&mut x);
    // erf's absolute error (< 5e-7) enters scaled by x/2; plus f32 rounding of the product.
    for (&v, &g) in input.iter().zip(&x) {
        let w = gelu64(v as f64);
        let bound = 2.5e-7 * v.abs() as f64 + 2e-7 * w.abs() + 1e-9;
        assert!(
            (g as f64 - w).abs() <= bound,
            "gelu({v}): got {g}, want {w}"
        );
    }
}

/// `gelu_copy` (a new buffer, one pass) gives `gelu_in_place`'s floats, bit for bit, at sizes
/// around its 16 K-element blocks, and leaves its input alone.
#[test]
fn gelu_copy_equals_gelu_in_place() {
    for n in [0usize, 1, 17, 16_383, 16_384, 16_385, 50_000] {
        let x: Vec<f32> = rand_vec(n, 40 + n as u64).iter().map(|v| v * 6.0).collect();
        let input = x.clone();
        let got = gelu_copy(&x);
        let mut want = x.clone();
        gelu_in_place(&mut want);
        assert_eq!(x, input, "n = {n}: input changed");
        assert_eq!(got.len(), n);
        assert!(
            got.iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "n = {n}: gelu_copy differs from gelu_in_place"
        );
    }
}

#[test]
fn vit_shapes_attention_and_linear() {
    // One ViT-B block's attention at its real size (2048 tokens, 12 heads of 64), checked on
    // a few rows against the naive formula.
    let (n, heads, dim) = (2048usize, 12usize, 64usize);
    let c = heads * dim;
    let qkv = rand_vec(n * 3 * c, 13);
    let hv = |offset| Heads {
        data: &qkv,
        rows: n,
        row_stride: 3 * c,
        offset,
        heads,
        dim,
    };
    let scale = 0.125;
    let got = attention(hv(0), hv(c), hv(2 * c), scale).unwrap();
    for &i in &[0usize, 777, 2047] {
        for h in [0usize, 11] {
            let s: Vec<f64> = (0..n)
                .map(|j| {
                    (0..dim)
                        .map(|d| {
                            qkv[i * 3 * c + h * dim + d] as f64
                                * qkv[j * 3 * c + c + h * dim + d] as f64
                        })
                        .sum::<f64>()
                        * scale as f64
                })
                .collect();
            let mx = s.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = s.iter().map(|v| (v - mx).exp()).collect();
            let z: f64 = e.iter().sum();
            for d in 0..dim {
                let want: f64 = (0..n)
                    .map(|j| e[j] / z * qkv[j * 3 * c + 2 * c + h * dim + d] as f64)
                    .sum();
                let g = got[i * c + h * dim + d] as f64;
                assert!(
                    (g - want).abs() < 1e-5,
                    "row {i} head {h} dim {d}: {g} vs {want}"
                );
            }
        }
    }
}

#[test]
fn bad_views_are_errors_not_panics() {
    let data = vec![0.0f32; 10];
    assert!(MatRef::new(&data, 0, [3, 4], [4, 1]).is_err());
    assert!(MatRef::new(&data, 8, [1, 3], [3, 1]).is_err());
    assert!(MatRef::new(&data, 0, [0, 100], [100, 1]).is_ok());
    let mut d = vec![0.0f32; 10];
    assert!(MatMut::new(&mut d, 0, [2, 2], [1, 1]).is_err()); // overlapping
    assert!(MatMut::new(&mut d, 0, [2, 3], [2, 1]).is_err()); // row stride < cols
    let a = MatRef::row_major(&data, 2, 5).unwrap();
    let mut out = vec![0.0f32; 4];
    assert!(
        matmul(
            MatMut::row_major(&mut out, 2, 2).unwrap(),
            false,
            a,
            a,
            1.0,
            1
        )
        .is_err()
    );
    assert!(usize::MAX.checked_add(1).is_none());
    assert!(MatRef::new(&data, usize::MAX, [2, 2], [1, 1]).is_err());
}

#[test]
fn conv_transpose_k2s2_matches_the_definition() {
    use segvol_kernels::{conv_transpose_k2s2, full_layer_norm};
    let (cin, cout, d, h, w) = (5usize, 3usize, 2usize, 3usize, 4usize);
    let x = rand_vec(cin * d * h * w, 14);
    let wt = rand_vec(cin * cout * 8, 15);
    let b = rand_vec(cout, 16);
    for gelu in [false, true] {
        let got = conv_transpose_k2s2(&x, [cin, d, h, w], &wt, &b, gelu).unwrap();
        let (od, oh, ow) = (2 * d, 2 * h, 2 * w);
        let mut want = vec![0.0f64; cout * od * oh * ow];
        // PyTorch's definition: out[co, z·2+i, y·2+j, x·2+k] += x[ci, z, y, x]·W[ci, co, i, j, k].
        for co in 0..cout {
            for oz in 0..od {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let (z, i, y, j, xx, k) = (oz / 2, oz % 2, oy / 2, oy % 2, ox / 2, ox % 2);
                        let mut s = b[co] as f64;
                        for ci in 0..cin {
                            s += x[((ci * d + z) * h + y) * w + xx] as f64
                                * wt[(((ci * cout + co) * 2 + i) * 2 + j) * 2 + k] as f64;
                        }
                        want[((co * od + oz) * oh + oy) * ow + ox] =
                            if gelu { gelu64(s) } else { s };
                    }
                }
            }
        }
        assert_close(&got, &want, 2e-6, "conv_transpose_k2s2");
    }
    assert!(conv_transpose_k2s2(&x, [cin, d, h, w], &wt[1..], &b, false).is_err());

    let n = 1000;
    let xs: Vec<f32> = rand_vec(n, 17).iter().map(|v| v * 4.0 - 1.0).collect();
    let g = rand_vec(n, 18);
    let bb = rand_vec(n, 19);
    let got = full_layer_norm(&xs, &g, &bb, 1e-5, false).unwrap();
    let mean = xs.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    let var = xs.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
    let want: Vec<f64> = (0..n)
        .map(|i| (xs[i] as f64 - mean) / (var + 1e-5).sqrt() * g[i] as f64 + bb[i] as f64)
        .collect();
    assert_close(&got, &want, 2e-6, "full_layer_norm");
}

/// The fused last step of the decoder against the definition in f64: the transposed
/// convolution, GELU, then the dot product with `head` over channels. `n` = 165 input voxels:
/// a whole block of 128 and a partial one.
#[test]
fn conv_transpose_gelu_dot_matches_the_definition() {
    use segvol_kernels::conv_transpose_k2s2_gelu_dot;
    let (cin, cout, d, h, w) = (6usize, 5usize, 3usize, 5usize, 11usize);
    let x: Vec<f32> = rand_vec(cin * d * h * w, 21)
        .iter()
        .map(|v| 2.0 * v - 1.0)
        .collect();
    let wt: Vec<f32> = rand_vec(cin * cout * 8, 22)
        .iter()
        .map(|v| v - 0.5)
        .collect();
    let b: Vec<f32> = rand_vec(cout, 23).iter().map(|v| v - 0.5).collect();
    let head: Vec<f32> = rand_vec(cout, 24).iter().map(|v| 2.0 * v - 1.0).collect();
    let got = conv_transpose_k2s2_gelu_dot(&x, [cin, d, h, w], &wt, &b, &head).unwrap();
    let want = conv_gelu_dot64(&|i| x[i] as f64, cin, [d, h, w], &wt, &b, &head);
    assert_close(&got, &want, 4e-6, "conv_transpose_k2s2_gelu_dot");
    assert!(conv_transpose_k2s2_gelu_dot(&x, [cin, d, h, w], &wt, &b, &head[1..]).is_err());
    assert!(conv_transpose_k2s2_gelu_dot(&x[1..], [cin, d, h, w], &wt, &b, &head).is_err());
    assert!(conv_transpose_k2s2_gelu_dot(&x, [cin, d, h, w], &wt[1..], &b, &head).is_err());
}

/// `copy_into` against element-by-element indexing: transposed and offset views, sizes off the
/// 32×32 tiles, small (one thread) and large (blocks of rows in parallel).
#[test]
fn copy_into_matches_indexing() {
    use segvol_kernels::copy_into;
    for (rows, cols) in [(1usize, 1usize), (5, 70), (33, 31), (300, 257), (2048, 96)] {
        let data = rand_vec(rows * cols + 7, 30);
        for (offset, strides) in [(0, [cols, 1]), (7, [1, rows]), (3, [cols, 1])] {
            let m = MatRef::new(&data, offset, [rows, cols], strides).unwrap();
            let mut got = vec![0.0f32; rows * cols];
            copy_into(m, &mut got).unwrap();
            for i in 0..rows {
                for j in 0..cols {
                    assert_eq!(
                        got[i * cols + j],
                        data[offset + i * strides[0] + j * strides[1]],
                        "{rows}×{cols} strides {strides:?} at ({i}, {j})"
                    );
                }
            }
        }
    }
    let data = rand_vec(12, 31);
    let m = MatRef::new(&data, 0, [3, 4], [4, 1]).unwrap();
    assert!(copy_into(m, &mut [0.0; 11]).is_err());
}

/// The decoder's whole output upscaling reduced to the mask ([`segvol_kernels::upscale_dot`])
/// against the definition in f64: the first transposed convolution from token-major input,
/// the whole-sample LayerNorm with its element-wise affine, GELU, the second transposed
/// convolution, GELU, the dot product with `head`. The second convolution's 240 input voxels
/// are a whole block of 128 and a partial one; the input's offset makes the mean matter.
#[test]
fn upscale_dot_matches_the_definition() {
    use segvol_kernels::{Upscaling, upscale_dot};
    let (cin, c1, c2, d, h, w) = (5usize, 4usize, 3usize, 2usize, 3usize, 5usize);
    let n = d * h * w;
    let x: Vec<f32> = rand_vec(n * cin, 31)
        .iter()
        .map(|v| 2.0 * v - 0.3)
        .collect();
    let w1: Vec<f32> = rand_vec(cin * c1 * 8, 32).iter().map(|v| v - 0.4).collect();
    let b1: Vec<f32> = rand_vec(c1, 33).iter().map(|v| v + 0.5).collect();
    let (gd, gh, gw) = (2 * d, 2 * h, 2 * w);
    let m = c1 * gd * gh * gw;
    let gamma: Vec<f32> = rand_vec(m, 34).iter().map(|v| 0.5 + v).collect();
    let beta: Vec<f32> = rand_vec(m, 35).iter().map(|v| v - 0.5).collect();
    let w2: Vec<f32> = rand_vec(c1 * c2 * 8, 36).iter().map(|v| v - 0.5).collect();
    let b2: Vec<f32> = rand_vec(c2, 37).iter().map(|v| v - 0.5).collect();
    let head: Vec<f32> = rand_vec(c2, 38).iter().map(|v| 2.0 * v - 1.0).collect();
    let weights = Upscaling {
        conv1: (&w1, &b1),
        norm: (&gamma, &beta),
        eps: 1e-5,
        conv2: (&w2, &b2),
    };
    let mut stages = 0;
    let got = upscale_dot(&x, [d, h, w], weights, &head, &mut || stages += 1).unwrap();
    assert_eq!(stages, 2, "two stages reported before the last");

    // conv1 on the [2d, 2h, 2w] grid, PyTorch's layouts.
    let mut y1 = vec![0.0f64; m];
    for co in 0..c1 {
        for z in 0..gd {
            for y in 0..gh {
                for xx in 0..gw {
                    let v = ((z / 2) * h + y / 2) * w + xx / 2;
                    let mut s = b1[co] as f64;
                    for ci in 0..cin {
                        s += x[v * cin + ci] as f64
                            * w1[(((ci * c1 + co) * 2 + z % 2) * 2 + y % 2) * 2 + xx % 2] as f64;
                    }
                    y1[((co * gd + z) * gh + y) * gw + xx] = s;
                }
            }
        }
    }
    let mean = y1.iter().sum::<f64>() / m as f64;
    let var = y1.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m as f64;
    let a: Vec<f64> = (0..m)
        .map(|e| gelu64((y1[e] - mean) / (var + 1e-5).sqrt() * gamma[e] as f64 + beta[e] as f64))
        .collect();
    // conv2 + GELU · head on the [4d, 4h, 4w] grid.
    let want = conv_gelu_dot64(&|i| a[i], c1, [gd, gh, gw], &w2, &b2, &head);
    assert_close(&got, &want, 4e-6, "upscale_dot");
    let cut = |f: fn(&mut Upscaling<'_>)| {
        let mut u = weights;
        f(&mut u);
        upscale_dot(&x, [d, h, w], u, &head, &mut || {}).is_err()
    };
    assert!(cut(|u| u.conv1.0 = &u.conv1.0[1..]));
    assert!(cut(|u| u.norm.1 = &u.norm.1[1..]));
    assert!(cut(|u| u.conv2.0 = &u.conv2.0[1..]));
    assert!(upscale_dot(&x[1..], [d, h, w], weights, &head, &mut || {}).is_err());
    assert!(upscale_dot(&x, [d, h, w], weights, &head[1..], &mut || {}).is_err());
}

/// `head · GELU(ConvTranspose3d(k = 2, s = 2)(x))` per output voxel in f64, from the
/// definition: `x(i)` the input `[cin, d, h, w]` element `i`, `wt` `[cin, cout, 2, 2, 2]`, `b`
/// and `head` `[cout]`; returns `[2d, 2h, 2w]`.
fn conv_gelu_dot64(
    x: &dyn Fn(usize) -> f64,
    cin: usize,
    [d, h, w]: [usize; 3],
    wt: &[f32],
    b: &[f32],
    head: &[f32],
) -> Vec<f64> {
    let cout = b.len();
    let (od, oh, ow) = (2 * d, 2 * h, 2 * w);
    let mut want = vec![0.0f64; od * oh * ow];
    for oz in 0..od {
        for oy in 0..oh {
            for ox in 0..ow {
                let (z, i, y, j, xx, k) = (oz / 2, oz % 2, oy / 2, oy % 2, ox / 2, ox % 2);
                let mut dot = 0.0f64;
                for co in 0..cout {
                    let mut s = b[co] as f64;
                    for ci in 0..cin {
                        s += x(((ci * d + z) * h + y) * w + xx)
                            * wt[(((ci * cout + co) * 2 + i) * 2 + j) * 2 + k] as f64;
                    }
                    dot += head[co] as f64 * gelu64(s);
                }
                want[(oz * oh + oy) * ow + ox] = dot;
            }
        }
    }
    want
}
