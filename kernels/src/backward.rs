//! Backward passes of the kernels that training runs through (`segvol-core`'s autodiff ops on
//! burn-flex): the gradients of [`crate::attention`], exact GELU and [`crate::layer_norm`].
//!
//! Training on `Autodiff<Flex>` otherwise runs burn's generic operations, where attention's
//! softmax is an `exp` node whose backward calls the scalar libm `expf` again, plus a division,
//! a sum and layout copies per head, and GELU's backward two more scalar libm calls per element
//! (a profile of `segvol bench --train`: a third of a step). These do each in one pass with the
//! vectorised `exp`/`erf` of [`crate::math`] and the attention's products as GEMMs.

use rayon::prelude::*;

use crate::{Heads, KernelError, MatRef, auto_threads, math, product, softmax_rows_in_place};

/// Three gradients, one per input, in the order of the inputs (the kernels' own documentation
/// says which).
pub type Grads3 = (Vec<f32>, Vec<f32>, Vec<f32>);

/// The gradients of [`crate::attention`]`(q, k, v, scale)` given `d_out`, the gradient of its
/// output (`[q.rows, heads·v.dim]` row-major): `(dq, dk, dv)`, row-major `[q.rows, heads·dim]`,
/// `[k.rows, heads·dim]`, `[k.rows, heads·v.dim]`, head `h` in columns `h·dim ..`.
///
/// Per head, with P = softmax(q·kᵀ·scale) recomputed (not stored by the forward pass; see
/// [`attention_backward_with_probs`] for P kept):
/// dv = Pᵀ·dO, dP = dO·vᵀ, dS = P ⊙ (dP − rowsum(P ⊙ dP)), dq = scale·dS·k, dk = scale·dSᵀ·q.
/// Parallel over heads; each holds its `[q.rows, k.rows]` P and dS.
pub fn attention_backward(
    q: Heads<'_>,
    k: Heads<'_>,
    v: Heads<'_>,
    d_out: &[f32],
    scale: f32,
) -> Result<Grads3, KernelError> {
    attention_backward_p(q, k, v, None, d_out, scale)
}

/// [`attention_backward`] with P given: `probs` is what [`crate::attention_with_probs`]
/// returned for the same q, k, v and scale (`[heads, q.rows, k.rows]`), so P is not computed
/// again. Storing P costs `4·heads·q.rows·k.rows` bytes per call, which is why the caller
/// chooses.
pub fn attention_backward_with_probs(
    q: Heads<'_>,
    k: Heads<'_>,
    v: Heads<'_>,
    probs: &[f32],
    d_out: &[f32],
    scale: f32,
) -> Result<Grads3, KernelError> {
    attention_backward_p(q, k, v, Some(probs), d_out, scale)
}

fn attention_backward_p(
    q: Heads<'_>,
    k: Heads<'_>,
    v: Heads<'_>,
    probs: Option<&[f32]>,
    d_out: &[f32],
    scale: f32,
) -> Result<Grads3, KernelError> {
    if q.heads != k.heads || q.heads != v.heads || q.dim != k.dim || k.rows != v.rows {
        return Err(KernelError::Shape(
            "attention_backward: q, k, v do not agree",
        ));
    }
    let (nq, nk, heads, d, dv) = (q.rows, k.rows, q.heads, q.dim, v.dim);
    let width = heads * dv;
    if d_out.len() != nq * width {
        return Err(KernelError::Shape(
            "attention_backward: output gradient size",
        ));
    }
    if probs.is_some_and(|p| p.len() != heads * nq * nk) {
        return Err(KernelError::Shape("attention_backward: probabilities size"));
    }
    let mut gq = vec![0.0f32; nq * heads * d];
    let mut gk = vec![0.0f32; nk * heads * d];
    let mut gv = vec![0.0f32; nk * width];
    if nq == 0 || nk == 0 || heads == 0 {
        return Ok((gq, gk, gv));
    }
    let per_head: Vec<Result<Grads3, KernelError>> = (0..heads)
        .into_par_iter()
        .map(|h| {
            let (qh, kh, vh) = (q.head(h, 0, nq)?, k.head(h, 0, nk)?, v.head(h, 0, nk)?);
            let doh = MatRef::new(d_out, h * dv, [nq, dv], [width, 1])?;
            let computed;
            let p: &[f32] = match probs {
                Some(all) => &all[h * nq * nk..(h + 1) * nq * nk],
                None => {
                    let mut p = product(qh, kh.t(), scale, 1)?;
                    softmax_rows_in_place(&mut p, nk);
                    computed = p;
                    &computed
                }
            };
            let pm = MatRef::row_major(p, nq, nk)?;
            let ghv = product(pm.t(), doh, 1.0, 1)?;
            let mut ds = product(doh, vh.t(), 1.0, 1)?;
            for (srow, prow) in ds.chunks_exact_mut(nk).zip(p.chunks_exact(nk)) {
                softmax_grad_row(srow, prow);
            }
            let dsm = MatRef::row_major(&ds, nq, nk)?;
            let ghq = product(dsm, kh, scale, 1)?;
            let ghk = product(dsm.t(), qh, scale, 1)?;
            Ok((ghq, ghk, ghv))
        })
        .collect();
    for (h, r) in per_head.into_iter().enumerate() {
        let (ghq, ghk, ghv) = r?;
        scatter_head(&mut gq, &ghq, heads * d, h * d, d);
        scatter_head(&mut gk, &ghk, heads * d, h * d, d);
        scatter_head(&mut gv, &ghv, width, h * dv, dv);
    }
    Ok((gq, gk, gv))
}

/// Writes the dense `[rows, cols]` block `src` into columns `at ..` of the row-major `dst`
/// with `width` columns.
fn scatter_head(dst: &mut [f32], src: &[f32], width: usize, at: usize, cols: usize) {
    if cols == 0 {
        return;
    }
    for (drow, srow) in dst.chunks_exact_mut(width).zip(src.chunks_exact(cols)) {
        drow[at..at + cols].copy_from_slice(srow);
    }
}

/// One row of softmax's backward in place: `ds ← p ⊙ (ds − Σ p ⊙ ds)` (`ds` holds dP on entry).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl",
    "x86_64+avx2+fma"
))]
fn softmax_grad_row(ds: &mut [f32], p: &[f32]) {
    const L: usize = 16;
    let mut acc = [0.0f32; L];
    let mut chunks = ds.chunks_exact(L).zip(p.chunks_exact(L));
    for (a, b) in &mut chunks {
        for ((s, &x), &y) in acc.iter_mut().zip(a).zip(b) {
            *s += x * y;
        }
    }
    let tail = ds.len() - ds.len() % L;
    let mut dot = acc.iter().sum::<f32>();
    for (x, y) in ds[tail..].iter().zip(&p[tail..]) {
        dot += x * y;
    }
    for (s, &y) in ds.iter_mut().zip(p) {
        *s = y * (*s - dot);
    }
}

/// Exact GELU's backward in place: `grad ← grad · (Φ(x) + x·φ(x))`, Φ and φ the standard
/// normal's distribution and density; `x` is GELU's input. Parallel in chunks.
pub fn gelu_backward_in_place(x: &[f32], grad: &mut [f32]) -> Result<(), KernelError> {
    if x.len() != grad.len() {
        return Err(KernelError::Shape("gelu_backward: sizes"));
    }
    grad.par_chunks_mut(16_384)
        .zip(x.par_chunks(16_384))
        .for_each(|(g, x)| gelu_backward_chunk(x, g));
    Ok(())
}

#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl",
    "x86_64+avx2+fma"
))]
fn gelu_backward_chunk(x: &[f32], g: &mut [f32]) {
    // 1/√(2π)
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    for (g, &x) in g.iter_mut().zip(x) {
        let cdf = 0.5 * (1.0 + math::erf(x * std::f32::consts::FRAC_1_SQRT_2));
        let pdf = INV_SQRT_2PI * math::exp(-0.5 * x * x);
        *g *= cdf + x * pdf;
    }
}

/// The gradients of [`crate::layer_norm`] over rows of width `cols` given `grad`, the gradient
/// of its output: `(dx, dgamma, dbeta)`. Per row, with x̂ = (x − mean)·inv and
/// inv = 1/√(var + eps): dx̂ = grad ⊙ gamma, dx = inv·(dx̂ − mean(dx̂) − x̂·mean(dx̂ ⊙ x̂));
/// dgamma = Σ_rows grad ⊙ x̂, dbeta = Σ_rows grad.
pub fn layer_norm_backward(
    x: &[f32],
    cols: usize,
    gamma: &[f32],
    eps: f32,
    grad: &[f32],
) -> Result<Grads3, KernelError> {
    if cols == 0 || !x.len().is_multiple_of(cols) || gamma.len() != cols || grad.len() != x.len() {
        return Err(KernelError::Shape(
            "layer_norm_backward: width does not divide or match",
        ));
    }
    let mut dx = vec![0.0f32; x.len()];
    let rows = 16_384usize.div_ceil(cols).max(1);
    let chunk = rows * cols;
    // Each task sums its rows' dgamma and dbeta; the partial sums are added after.
    let partial: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk).zip(grad.par_chunks(chunk)))
        .map(|(d, (xs, gs))| {
            let mut dg = vec![0.0f32; cols];
            let mut db = vec![0.0f32; cols];
            for ((drow, xrow), grow) in d
                .chunks_exact_mut(cols)
                .zip(xs.chunks_exact(cols))
                .zip(gs.chunks_exact(cols))
            {
                layer_norm_backward_row(drow, xrow, grow, gamma, eps, &mut dg, &mut db);
            }
            (dg, db)
        })
        .collect();
    let mut dgamma = vec![0.0f32; cols];
    let mut dbeta = vec![0.0f32; cols];
    for (dg, db) in partial {
        for (s, v) in dgamma.iter_mut().zip(dg) {
            *s += v;
        }
        for (s, v) in dbeta.iter_mut().zip(db) {
            *s += v;
        }
    }
    Ok((dx, dgamma, dbeta))
}

#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512dq+avx512vl",
    "x86_64+avx2+fma"
))]
fn layer_norm_backward_row(
    dx: &mut [f32],
    x: &[f32],
    g: &[f32],
    gamma: &[f32],
    eps: f32,
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    let (mut sum_d, mut sum_dx) = (0.0f32, 0.0f32);
    for (((&xv, &gv), &gm), (dgm, dbt)) in x
        .iter()
        .zip(g)
        .zip(gamma)
        .zip(dgamma.iter_mut().zip(dbeta.iter_mut()))
    {
        let xhat = (xv - mean) * inv;
        let d = gv * gm;
        sum_d += d;
        sum_dx += d * xhat;
        *dgm += gv * xhat;
        *dbt += gv;
    }
    let (mean_d, mean_dx) = (sum_d / n, sum_dx / n);
    for (((o, &xv), &gv), &gm) in dx.iter_mut().zip(x).zip(g).zip(gamma) {
        let xhat = (xv - mean) * inv;
        *o = inv * (gv * gm - mean_d - xhat * mean_dx);
    }
}

/// The gradients of [`crate::conv_transpose_k2s2`] (no GELU) for one sample given `grad`, the
/// gradient of its output (`[cout, 2d, 2h, 2w]`): `(dx [cin, d, h, w], dweight [cin, cout, 2,
/// 2, 2], dbias [cout])`.
///
/// The forward pass is `part = Wᵀ·x` (`[cout·8, n]`, row `co·8 + t` for kernel offset `t`)
/// written every other voxel, so with `G` the output gradient gathered back into that
/// `[cout·8, n]` layout: dx = W·G (the weight read as its own row-major `[cin, cout·8]`),
/// dweight = x·Gᵀ, dbias = the sum of each channel's eight rows.
pub fn conv_transpose_k2s2_backward(
    x: &[f32],
    [cin, d, h, w]: [usize; 4],
    weight: &[f32],
    grad: &[f32],
) -> Result<Grads3, KernelError> {
    let n = d * h * w;
    if cin == 0 || x.len() != cin * n || !weight.len().is_multiple_of(cin * 8) {
        return Err(KernelError::Shape(
            "conv_transpose_k2s2_backward: input or weight size",
        ));
    }
    let cout = weight.len() / (cin * 8);
    if grad.len() != cout * 8 * n {
        return Err(KernelError::Shape(
            "conv_transpose_k2s2_backward: output gradient size",
        ));
    }
    let mut db = vec![0.0f32; cout];
    if n == 0 || cout == 0 {
        return Ok((vec![0.0f32; cin * n], vec![0.0f32; cin * cout * 8], db));
    }
    let (oh, ow) = (2 * h, 2 * w);
    let plane = 8 * n;
    // G: each output channel's plane read back into its eight `[n]` rows.
    let mut g = vec![0.0f32; cout * 8 * n];
    g.par_chunks_mut(8 * n)
        .zip(grad.par_chunks(plane))
        .zip(db.par_iter_mut())
        .for_each(|((rows8, src), bsum)| {
            for (t, row) in rows8.chunks_exact_mut(n).enumerate() {
                let (i, j, k) = (t >> 2, (t >> 1) & 1, t & 1);
                for z in 0..d {
                    for y in 0..h {
                        let dst = &mut row[(z * h + y) * w..][..w];
                        let at = ((2 * z + i) * oh + 2 * y + j) * ow + k;
                        for (o, &v) in dst.iter_mut().zip(src[at..].iter().step_by(2)) {
                            *o = v;
                        }
                    }
                }
            }
            *bsum = src.iter().sum();
        });
    let gm = MatRef::row_major(&g, cout * 8, n)?;
    let dx = product(
        MatRef::row_major(weight, cin, cout * 8)?,
        gm,
        1.0,
        auto_threads(cin, n, cout * 8),
    )?;
    let dw = product(
        MatRef::row_major(x, cin, n)?,
        gm.t(),
        1.0,
        auto_threads(cin, cout * 8, n),
    )?;
    Ok((dx, dw, db))
}
