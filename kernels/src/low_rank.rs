//! The mask decoder's first upscaling product, split into a part computed once per image and
//! a low-rank part per click.
//!
//! The first `ConvTranspose3d` reads the image tokens as the two-way transformer leaves them.
//! Each of its `L` layers changes those tokens only by `keys ← LN(keys + A)`, where `A`, the
//! image → token attention, is `P·V + b_o`: `P` `[n, heads·T]` are its softmax probabilities,
//! `V` `[heads·T, C]` the prompt tokens' values through the output projection
//! ([`crate::AttentionFactors`]). A per-token LayerNorm is an affine map of the token once its
//! mean `μ` and `ρ = 1/√(var + eps)` are known, so with `G_l = γ_l ⊙ … ⊙ γ_{L−1}` (`G_L = 1`),
//! `M_l = diag(G_l)·W`, `a_l = ρ_l ⊙ … ⊙ ρ_{L−1}` (`a_L = 1`), `x` the tokens entering the
//! transformer with row means `m`, and `x_c = x − m`:
//!
//! ```text
//! keys_L·W = a_0·(x_c·M_0)
//!          + Σ_l a_l·(P_l·(V_l·M_l) + b_o,l·M_l − μ'_l·1ᵀM_l) + Σ_l a_{l+1}·β_l·M_{l+1}
//! ```
//!
//! (`μ'_0 = μ_0 − m`, `μ'_l = μ_l` after). `x_c·M_0`, the product PyTorch recomputes at every
//! click (`n × C × 8·C/4`, 4.8 GFLOP at SegVol-base), depends on the image and the weights only
//! ([`conv1_image_term`]); what a click adds is one product of inner size
//! `L·heads·T + 2L + 1` (≈ 150 against 768, [`conv1_from_updates`]). The same function up to
//! float rounding, as the folded attentions; tested against the layers as written in f64
//! (`tests/reference.rs`).

use rayon::prelude::*;

use crate::{AttentionFactors, KernelError, MatMut, MatRef, RowStats, auto_threads, matmul};

/// What [`conv1_image_term`] keeps per image.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv1ImageTerm {
    /// `x_c·M_0` transposed: `[c1·8, n]`, row `co·8 + t` (as [`crate::upscale_dot`]'s
    /// product).
    pub product: Vec<f32>,
    /// Each token's mean `m` `[n]`.
    pub mean: Vec<f32>,
}

/// One two-way layer's change to the image tokens: `keys ← LN(keys + P·V + b_o)`.
#[derive(Debug, Clone, Copy)]
pub struct NormedUpdate<'a> {
    /// The image → token attention's factors (`probs` `[n, m]`, `values` `[m, C]`).
    pub factors: &'a AttentionFactors,
    /// The attention's output bias `[C]`.
    pub out_bias: Option<&'a [f32]>,
    /// The LayerNorm's statistics of `keys + P·V + b_o`, per token.
    pub stats: &'a RowStats,
    /// The LayerNorm's weight `[C]`.
    pub gamma: &'a [f32],
    /// The LayerNorm's bias `[C]`.
    pub beta: &'a [f32],
}

/// `G_0`: the element-wise product of the LayerNorms' weights (ones without any).
fn gamma_product(gammas: &[&[f32]], c: usize) -> Result<Vec<f32>, KernelError> {
    let mut g = vec![1.0f32; c];
    for gl in gammas {
        if gl.len() != c {
            return Err(KernelError::Shape("conv1 low rank: LayerNorm width"));
        }
        for (a, &b) in g.iter_mut().zip(*gl) {
            *a *= b;
        }
    }
    Ok(g)
}

/// The per-image term: tokens `x` `[n, cin]` row-major (as they enter the two-way
/// transformer), the first convolution's weight `w1` in PyTorch's `[cin, c1, 2, 2, 2]`, and
/// the weights of the LayerNorms that follow each layer (`γ_0 … γ_{L−1}`, each `[cin]`).
pub fn conv1_image_term(
    x: &[f32],
    cin: usize,
    w1: &[f32],
    gammas: &[&[f32]],
) -> Result<Conv1ImageTerm, KernelError> {
    if cin == 0 || x.is_empty() || !x.len().is_multiple_of(cin) {
        return Err(KernelError::Shape("conv1 low rank: tokens' size"));
    }
    if w1.is_empty() || !w1.len().is_multiple_of(cin) {
        return Err(KernelError::Shape("conv1 low rank: weight's size"));
    }
    let n = x.len() / cin;
    let r = w1.len() / cin;
    let g = gamma_product(gammas, cin)?;
    let mut mean = vec![0.0f32; n];
    let mut xc = vec![0.0f32; x.len()];
    xc.par_chunks_mut(cin)
        .zip(x.par_chunks(cin))
        .zip(mean.par_iter_mut())
        .for_each(|((o, row), m)| {
            *m = row.iter().sum::<f32>() / cin as f32;
            for ((o, &v), &gc) in o.iter_mut().zip(row).zip(&g) {
                *o = (v - *m) * gc;
            }
        });
    let mut product = vec![0.0f32; r * n];
    matmul(
        MatMut::row_major(&mut product, r, n)?,
        false,
        MatRef::new(w1, 0, [r, cin], [1, r])?,
        MatRef::new(&xc, 0, [cin, n], [1, cin])?,
        1.0,
        auto_threads(r, n, cin),
    )?;
    Ok(Conv1ImageTerm { product, mean })
}

/// The first convolution's product (without its bias) after the layers `layers` (in order)
/// changed the tokens of `image`: `[c1·8, n]`, what [`crate::upscale_dot`] computes from the
/// transformer's output tokens, for [`crate::upscale_dot_from_conv1`]. `w1` as in
/// [`conv1_image_term`], which made `image` with these layers' `gamma`s.
pub fn conv1_from_updates(
    image: &Conv1ImageTerm,
    w1: &[f32],
    layers: &[NormedUpdate<'_>],
) -> Result<Vec<f32>, KernelError> {
    let n = image.mean.len();
    if n == 0 || image.product.is_empty() || !image.product.len().is_multiple_of(n) {
        return Err(KernelError::Shape("conv1 low rank: image term's size"));
    }
    let r = image.product.len() / n;
    if w1.is_empty() || !w1.len().is_multiple_of(r) {
        return Err(KernelError::Shape("conv1 low rank: weight's size"));
    }
    let cin = w1.len() / r;
    let big_l = layers.len();
    let mut widths = Vec::with_capacity(big_l);
    for l in layers {
        let f = l.factors;
        let m = f.probs.len() / n;
        if f.probs.len() != n * m
            || f.values.len() != m * cin
            || l.out_bias.is_some_and(|b| b.len() != cin)
            || l.stats.mean.len() != n
            || l.stats.inv_std.len() != n
            || l.gamma.len() != cin
            || l.beta.len() != cin
        {
            return Err(KernelError::Shape("conv1 low rank: a layer's sizes"));
        }
        widths.push(m);
    }
    // G_l for l = 0..=L, and a_l per token.
    let mut g = vec![vec![1.0f32; cin]; big_l + 1];
    for l in (0..big_l).rev() {
        let next = g[l + 1].clone();
        for ((a, &b), &c) in g[l].iter_mut().zip(layers[l].gamma).zip(&next) {
            *a = b * c;
        }
    }
    let mut a = vec![vec![1.0f32; n]; big_l + 1];
    for l in (0..big_l).rev() {
        let next = a[l + 1].clone();
        for ((o, &rho), &nx) in a[l].iter_mut().zip(&layers[l].stats.inv_std).zip(&next) {
            *o = rho * nx;
        }
    }
    // Rows of the left factor (`[k, cin]`, times W below) and of the coefficients (`[k, n]`).
    let k: usize = widths.iter().sum::<usize>() + (big_l + 1) + big_l;
    let mut left = vec![0.0f32; k * cin];
    let mut coef = vec![0.0f32; k * n];
    let mut row = 0;
    for (l, layer) in layers.iter().enumerate() {
        let m = widths[l];
        let f = layer.factors;
        for j in 0..m {
            let dst = &mut left[(row + j) * cin..][..cin];
            for ((o, &v), &gc) in dst.iter_mut().zip(&f.values[j * cin..][..cin]).zip(&g[l]) {
                *o = v * gc;
            }
        }
        coef[row * n..(row + m) * n]
            .par_chunks_mut(n)
            .enumerate()
            .for_each(|(j, c)| {
                for (i, o) in c.iter_mut().enumerate() {
                    *o = a[l][i] * f.probs[i * m + j];
                }
            });
        row += m;
    }
    // Constant rows: a_j·(b_o,j ⊙ G_j + β_{j−1} ⊙ G_j).
    for j in 0..=big_l {
        let dst = &mut left[row * cin..][..cin];
        if j < big_l
            && let Some(bo) = layers[j].out_bias
        {
            for ((o, &b), &gc) in dst.iter_mut().zip(bo).zip(&g[j]) {
                *o += b * gc;
            }
        }
        if j >= 1 {
            for ((o, &b), &gc) in dst.iter_mut().zip(layers[j - 1].beta).zip(&g[j]) {
                *o += b * gc;
            }
        }
        coef[row * n..][..n].copy_from_slice(&a[j]);
        row += 1;
    }
    // Mean rows: −a_l·μ'_l times 1ᵀ·M_l.
    for (l, layer) in layers.iter().enumerate() {
        left[row * cin..][..cin].copy_from_slice(&g[l]);
        for (i, o) in coef[row * n..][..n].iter_mut().enumerate() {
            let mu = layer.stats.mean[i] - if l == 0 { image.mean[i] } else { 0.0 };
            *o = -a[l][i] * mu;
        }
        row += 1;
    }
    // R = left·W `[k, r]`.
    let mut right = vec![0.0f32; k * r];
    matmul(
        MatMut::row_major(&mut right, k, r)?,
        false,
        MatRef::row_major(&left, k, cin)?,
        MatRef::row_major(w1, cin, r)?,
        1.0,
        auto_threads(k, r, cin),
    )?;
    // y = a_0 ⊙ product + Rᵀ·coef.
    let mut y = vec![0.0f32; r * n];
    y.par_chunks_mut(n)
        .zip(image.product.par_chunks(n))
        .for_each(|(o, p)| {
            for ((o, &p), &s) in o.iter_mut().zip(p).zip(&a[0]) {
                *o = p * s;
            }
        });
    matmul(
        MatMut::row_major(&mut y, r, n)?,
        true,
        MatRef::row_major(&right, k, r)?.t(),
        MatRef::row_major(&coef, k, n)?,
        1.0,
        auto_threads(r, n, k),
    )?;
    Ok(y)
}
