//! SAM's whole `Attention` layer (q/k/v projections, multi-head attention, output projection)
//! with the projections folded into the attention when one side has few tokens.
//!
//! The mask decoder attends between a handful of prompt tokens (5 output tokens, the box's two
//! corners, one per click: `T ≈ 7–12`) and 2 048 image tokens. Done as written, every
//! cross-attention projects the 2 048 image rows (`2048 × 768 · 768 × 384`, twice per layer)
//! although only `heads · T` (≈ 64) directions of them are ever used. By associativity, with
//! `d` the head width and `x` the image rows:
//!
//! - **few queries** (token → image): `q_h·(x·W_k,h + b_k,h)ᵀ = (q_h·W_k,hᵀ)·xᵀ + q_h·b_k,h`;
//!   the last term is the same for every key, and softmax ignores a per-row constant, so it
//!   drops. `P_h·(x·W_v,h + b_v,h) = (P_h·x)·W_v,h + b_v,h` because softmax rows sum to 1.
//!   The image is read twice by two `(heads·T) × 768 × 2048` products instead of projected.
//! - **few keys** (image → token): `(x·W_q,h + b_q,h)·k_hᵀ = x·(W_q,h·k_hᵀ) + b_q,h·k_hᵀ`, all
//!   heads as one `x · [C, heads·T]` product; the output projection folds into the values,
//!   `Σ_h P_h·(v_h·W_o,h) + b_o`, one `[2048, heads·T] · [heads·T, C]` product.
//!
//! Both cost `heads·T/d` of the projections they replace (≈ 1/6 for SegVol-base's decoder with
//! a box and a click), and are exact up to float rounding (the sums run in another order).
//! [`plan_attention_layer`] picks the cheapest of the three by multiply-adds; PyTorch's SAM
//! computes the direct form. Tested against a naive f64 reference for every plan on every
//! shape (`tests/reference.rs`).

use multiversion::multiversion;
use rayon::prelude::*;

use crate::{KernelError, MatMut, MatRef, auto_threads, matmul, softmax_rows_in_place};

/// The four projections of one attention layer: each `w` is `[in, out]` (any strides), each
/// bias `[out]`. `q`, `k`, `v` map the model width to `heads · d`; `out` maps it back.
#[derive(Clone, Copy, Debug)]
pub struct AttentionWeights<'a> {
    /// Query projection `[c_q, inner]` and its bias.
    pub q: (MatRef<'a>, Option<&'a [f32]>),
    /// Key projection `[c_k, inner]` and its bias.
    pub k: (MatRef<'a>, Option<&'a [f32]>),
    /// Value projection `[c_v, inner]` and its bias.
    pub v: (MatRef<'a>, Option<&'a [f32]>),
    /// Output projection `[inner, c_out]` and its bias.
    pub out: (MatRef<'a>, Option<&'a [f32]>),
    /// Number of heads (`inner` divides into them).
    pub heads: usize,
}

/// How [`attention_layer`] computes: all three give the same result up to rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionPlan {
    /// Project q, k and v, attend, project out (what PyTorch does).
    Direct,
    /// Fold the key and value projections into the queries (few queries, many keys).
    FewQueries,
    /// Fold the query and output projections into the keys and values (few keys).
    FewKeys,
}

/// Multiply-adds of each plan for `nq` queries and `nk` keys of widths `c_q`, `c_k` (values
/// `c_k` too), `inner` projected features in `heads` heads, `c_out` outputs.
fn costs(
    nq: usize,
    nk: usize,
    c_q: usize,
    c_k: usize,
    inner: usize,
    c_out: usize,
    heads: usize,
) -> [usize; 3] {
    let direct = nq * c_q * inner + 2 * nk * c_k * inner + 2 * nq * nk * inner + nq * inner * c_out;
    let few_queries = nq * c_q * inner        // q projection
        + 2 * nq * inner * c_k                // q_h·W_k,hᵀ and (P_h·x)·W_v,h
        + 2 * heads * nq * nk * c_k           // scores against x, P·x
        + nq * inner * c_out; // output projection
    let few_keys = 2 * nk * c_k * inner       // k and v projections
        + c_q * inner * nk                    // W_q,h·k_hᵀ
        + nk * inner * c_out                  // v_h·W_o,h
        + nq * heads * nk * (c_q + c_out); // scores from x, P·V'
    [direct, few_queries, few_keys]
}

/// The cheapest plan for these shapes (by multiply-adds; ties go to [`AttentionPlan::Direct`]).
pub fn plan_attention_layer(
    nq: usize,
    nk: usize,
    c_q: usize,
    c_k: usize,
    inner: usize,
    c_out: usize,
    heads: usize,
) -> AttentionPlan {
    let [d, fq, fk] = costs(nq, nk, c_q, c_k, inner, c_out, heads);
    if fq < d && fq <= fk {
        AttentionPlan::FewQueries
    } else if fk < d {
        AttentionPlan::FewKeys
    } else {
        AttentionPlan::Direct
    }
}

/// SAM's `Attention.forward(q, k, v)` for one sample: `q` `[nq, c_q]`, `k` and `v` `[nk, c_k]`;
/// returns `[nq, c_out]` row-major. `plan` as [`plan_attention_layer`] chose it (or any other,
/// for tests).
pub fn attention_layer(
    q: MatRef<'_>,
    k: MatRef<'_>,
    v: MatRef<'_>,
    w: &AttentionWeights<'_>,
    plan: AttentionPlan,
) -> Result<Vec<f32>, KernelError> {
    attention_layer_residual(q, k, v, w, plan, None)
}

/// [`attention_layer`] plus `residual` (`[nq, c_out]` row-major) when given: the transformer's
/// `x + attention(…)`. The few-keys plan starts its output from the residual (no second pass
/// over the `[2048, C]` result); the others add it after.
pub fn attention_layer_residual(
    q: MatRef<'_>,
    k: MatRef<'_>,
    v: MatRef<'_>,
    w: &AttentionWeights<'_>,
    plan: AttentionPlan,
    residual: Option<&[f32]>,
) -> Result<Vec<f32>, KernelError> {
    let (d, scale) = check(q, k, v, w, residual)?;
    let ([nq, _], [nk, _], heads, inner) = (q.dims(), k.dims(), w.heads, w.q.0.dims()[1]);
    let out = match plan {
        AttentionPlan::Direct => {
            // Three independent projections at once: with few rows each is bound by reading
            // its weight, which one thread does no faster than two.
            let (qp, (kp, vp)) = rayon::join(
                || crate::linear(q, w.q.0, w.q.1, None, false),
                || {
                    rayon::join(
                        || crate::linear(k, w.k.0, w.k.1, None, false),
                        || crate::linear(v, w.v.0, w.v.1, None, false),
                    )
                },
            );
            let (qp, kp, vp) = (qp?, kp?, vp?);
            fn heads_of(data: &[f32], rows: usize, heads: usize, dim: usize) -> crate::Heads<'_> {
                crate::Heads {
                    data,
                    rows,
                    row_stride: heads * dim,
                    offset: 0,
                    heads,
                    dim,
                }
            }
            let o = crate::attention(
                heads_of(&qp, nq, heads, d),
                heads_of(&kp, nk, heads, d),
                heads_of(&vp, nk, heads, d),
                scale,
            )?;
            crate::linear(
                MatRef::row_major(&o, nq, inner)?,
                w.out.0,
                w.out.1,
                None,
                false,
            )
        }
        AttentionPlan::FewQueries => few_queries(q, k, v, w, d, scale),
        AttentionPlan::FewKeys => {
            return few_keys(q, k, v, w, d, scale, residual).map(|(out, _)| out);
        }
    };
    let mut out = out?;
    if let Some(r) = residual {
        for (o, &r) in out.iter_mut().zip(r) {
            *o += r;
        }
    }
    Ok(out)
}

/// Checks that inputs, weights and residual agree; returns the head width and the scores'
/// scale `1/√d`.
fn check(
    q: MatRef<'_>,
    k: MatRef<'_>,
    v: MatRef<'_>,
    w: &AttentionWeights<'_>,
    residual: Option<&[f32]>,
) -> Result<(usize, f32), KernelError> {
    let [nq, c_q] = q.dims();
    let [nk, c_k] = k.dims();
    let [c_qw, inner] = w.q.0.dims();
    let [inner_o, _] = w.out.0.dims();
    let heads = w.heads;
    if v.dims() != [nk, c_k]
        || c_qw != c_q
        || w.k.0.dims() != [c_k, inner]
        || w.v.0.dims() != [c_k, inner]
        || inner_o != inner
        || heads == 0
        || inner % heads != 0
        || [w.q, w.k, w.v, w.out]
            .iter()
            .any(|(m, b)| b.is_some_and(|b| b.len() != m.dims()[1]))
    {
        return Err(KernelError::Shape(
            "attention layer: inputs and weights do not agree",
        ));
    }
    if residual.is_some_and(|r| r.len() != nq * w.out.0.dims()[1]) {
        return Err(KernelError::Shape("attention layer: residual size"));
    }
    let d = inner / heads;
    let scale = 1.0 / (d as f32).sqrt();
    Ok((d, scale))
}

/// The few-keys plan's attention term as two factors: `attention(q, k, v) = probs · values +
/// b_o`, of rank at most `heads · nk`.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionFactors {
    /// The softmax probabilities, `[nq, heads · nk]` row-major (head-major within a row).
    pub probs: Vec<f32>,
    /// Each head's values through its slice of the output projection, `v_h · W_o,h`,
    /// `[heads · nk, c_out]` row-major.
    pub values: Vec<f32>,
}

/// [`attention_layer_residual`] in the few-keys plan ([`AttentionPlan::FewKeys`]), also
/// returning the factors of its attention term (the decoder's image → token attention: the
/// mask decoder's upscaling uses them to keep its per-image product, see
/// [`crate::conv1_from_updates`]).
pub fn attention_layer_residual_factored(
    q: MatRef<'_>,
    k: MatRef<'_>,
    v: MatRef<'_>,
    w: &AttentionWeights<'_>,
    residual: Option<&[f32]>,
) -> Result<(Vec<f32>, AttentionFactors), KernelError> {
    let (d, scale) = check(q, k, v, w, residual)?;
    few_keys(q, k, v, w, d, scale, residual)
}

/// `m` rows of length `width`, each set to `row` (or zeros).
fn rows_of(row: Option<&[f32]>, m: usize, width: usize) -> Vec<f32> {
    let mut out = vec![0.0; m * width];
    if let Some(r) = row
        && width > 0
    {
        out.par_chunks_mut(width * 64).for_each(|c| {
            for o in c.chunks_exact_mut(width) {
                o.copy_from_slice(r);
            }
        });
    }
    out
}

/// `residual` (`m` rows of length `width`) with `row` added to each, or [`rows_of`] without
/// a residual.
fn residual_rows(
    residual: Option<&[f32]>,
    row: Option<&[f32]>,
    m: usize,
    width: usize,
) -> Vec<f32> {
    let Some(res) = residual else {
        return rows_of(row, m, width);
    };
    let mut out = res.to_vec();
    if let Some(r) = row
        && width > 0
    {
        out.par_chunks_mut(width * 64)
            .for_each(|c| crate::add_to_rows(c, r));
    }
    out
}

/// `scale · [w_h · x_hᵀ]_h`, every head's product of a projection's slice with a few rows:
/// `w` `[c, heads·d]` (any strides), `x` `[t, heads·d]` row-major; returns `[c, heads·t]`
/// row-major, element `(r, h·t + j)` = `scale · Σ_e w[r, h·d + e]·x[j, h·d + e]`.
///
/// Both folded plans need it (`W_k,h·q_hᵀ` and `W_q,h·k_hᵀ`): a few million multiply-adds
/// that, as one `gemm` call per head (`c × d · d × t`, strided), cost 0.6 ms per layer on
/// one thread in the crate's packing; here one pass over `w`'s rows, split over the pool.
fn head_dots(
    w: MatRef<'_>,
    x: &[f32],
    t: usize,
    heads: usize,
    scale: f32,
) -> Result<Vec<f32>, KernelError> {
    let [c, inner] = w.dims();
    if heads == 0 || inner % heads != 0 || x.len() != t * inner {
        return Err(KernelError::Shape("head_dots: sizes"));
    }
    let d = inner / heads;
    let width = heads * t;
    let mut out = vec![0.0f32; c * width];
    if width == 0 {
        return Ok(out);
    }
    out.par_chunks_mut(width * 32)
        .enumerate()
        .for_each(|(chunk, rows)| {
            let mut copy = Vec::new();
            for (i, o) in rows.chunks_exact_mut(width).enumerate() {
                let r = chunk * 32 + i;
                // Row r of w, in place when its elements are adjacent (burn's `[in, out]`).
                let wr = match w.row(r) {
                    Some(row) => row,
                    None => {
                        copy.clear();
                        copy.extend((0..inner).map(|e| w.at(r, e)));
                        &copy[..]
                    }
                };
                head_dots_row(o, wr, x, t, d, scale);
            }
        });
    Ok(out)
}

/// One row of [`head_dots`]: `o[h·t + j] = scale · w_r[h·d..][..d] · x[j][h·d..][..d]`.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512dq+avx512vl", "x86_64+avx2+fma"))]
fn head_dots_row(o: &mut [f32], wr: &[f32], x: &[f32], t: usize, d: usize, scale: f32) {
    let inner = wr.len();
    for (h, oh) in o.chunks_exact_mut(t).enumerate() {
        let wh = &wr[h * d..][..d];
        for (j, v) in oh.iter_mut().enumerate() {
            let xh = &x[j * inner + h * d..][..d];
            // Sixteen partial sums: one vector register, no serial chain.
            let mut acc = [0.0f32; 16];
            let (wc, xc) = (wh.chunks_exact(16), xh.chunks_exact(16));
            let tail: f32 = wc
                .remainder()
                .iter()
                .zip(xc.remainder())
                .map(|(a, b)| a * b)
                .sum();
            for (a, b) in wc.zip(xc) {
                for ((s, &p), &q) in acc.iter_mut().zip(a).zip(b) {
                    *s += p * q;
                }
            }
            *v = scale * (acc.iter().sum::<f32>() + tail);
        }
    }
}

fn few_queries(
    q: MatRef<'_>,
    k: MatRef<'_>,
    v: MatRef<'_>,
    w: &AttentionWeights<'_>,
    d: usize,
    scale: f32,
) -> Result<Vec<f32>, KernelError> {
    let [nq, _] = q.dims();
    let [nk, c] = k.dims();
    let heads = w.heads;
    let inner = heads * d;
    let qp = crate::linear(q, w.q.0, w.q.1, None, false)?; // [nq, inner]
    // A = scale · q_h·W_k,hᵀ for every head, stacked: row h·nq + i, kept transposed
    // (`[c, heads·nq]`). (q_h·b_k,h is constant along the keys: softmax drops it.)
    let m = heads * nq;
    let a_t = head_dots(w.k.0, &qp, nq, heads, scale)?;
    let mut s = vec![0.0f32; m * nk];
    matmul(
        MatMut::row_major(&mut s, m, nk)?,
        false,
        MatRef::row_major(&a_t, c, m)?.t(),
        k.t(),
        1.0,
        auto_threads(m, nk, c),
    )?;
    softmax_rows_in_place(&mut s, nk);
    // Z = P·x_v, then out_h = Z_h·W_v,h + b_v,h (softmax rows sum to 1).
    let mut z = vec![0.0f32; m * c];
    matmul(
        MatMut::row_major(&mut z, m, c)?,
        false,
        MatRef::row_major(&s, m, nk)?,
        v,
        1.0,
        auto_threads(m, c, nk),
    )?;
    let mut o = rows_of(w.v.1, nq, inner);
    for h in 0..heads {
        matmul(
            MatMut::new(&mut o, h * d, [nq, d], [inner, 1])?,
            true,
            MatRef::row_major(&z[h * nq * c..(h + 1) * nq * c], nq, c)?,
            w.v.0.sub([0, h * d], [c, d])?,
            1.0,
            1,
        )?;
    }
    crate::linear(
        MatRef::row_major(&o, nq, inner)?,
        w.out.0,
        w.out.1,
        None,
        false,
    )
}

/// The few-keys plan's parts that do not depend on the queries: the scores' matrix
/// `M = scale · [W_q,h·k_hᵀ]_h` `[c_q, heads·nk]`, its bias row `scale · [b_q,h·k_hᵀ]_h`, and
/// `V' = [v_h·W_o,h]_h` `[heads·nk, c_out]`.
struct FewKeyParts {
    mq: Vec<f32>,
    bias: Vec<f32>,
    vo: Vec<f32>,
}

fn few_key_parts(
    k: MatRef<'_>,
    v: MatRef<'_>,
    w: &AttentionWeights<'_>,
    d: usize,
    scale: f32,
) -> Result<FewKeyParts, KernelError> {
    let [nk, _] = k.dims();
    let heads = w.heads;
    let inner = heads * d;
    let c_out = w.out.0.dims()[1];
    let (kp, vp) = rayon::join(
        || crate::linear(k, w.k.0, w.k.1, None, false), // [nk, inner]
        || crate::linear(v, w.v.0, w.v.1, None, false),
    );
    let (kp, vp) = (kp?, vp?);
    let width = heads * nk;
    let mq = head_dots(w.q.0, &kp, nk, heads, scale)?;
    let bias = match w.q.1 {
        Some(bq) => head_dots(MatRef::row_major(bq, 1, inner)?, &kp, nk, heads, scale)?,
        None => vec![0.0f32; width],
    };
    let mut vo = vec![0.0f32; width * c_out];
    for h in 0..heads {
        matmul(
            MatMut::row_major(&mut vo[h * nk * c_out..(h + 1) * nk * c_out], nk, c_out)?,
            false,
            MatRef::row_major(&vp, nk, inner)?.sub([0, h * d], [nk, d])?,
            w.out.0.sub([h * d, 0], [d, c_out])?,
            1.0,
            1,
        )?;
    }
    Ok(FewKeyParts { mq, bias, vo })
}

fn few_keys(
    q: MatRef<'_>,
    k: MatRef<'_>,
    v: MatRef<'_>,
    w: &AttentionWeights<'_>,
    d: usize,
    scale: f32,
    residual: Option<&[f32]>,
) -> Result<(Vec<f32>, AttentionFactors), KernelError> {
    let [nq, c_q] = q.dims();
    let [nk, _] = k.dims();
    let width = w.heads * nk;
    let c_out = w.out.0.dims()[1];
    let FewKeyParts { mq, bias, vo } = few_key_parts(k, v, w, d, scale)?;
    let mut s = rows_of(Some(&bias), nq, width);
    matmul(
        MatMut::row_major(&mut s, nq, width)?,
        true,
        q,
        MatRef::row_major(&mq, c_q, width)?,
        1.0,
        auto_threads(nq, width, c_q),
    )?;
    // Each (row, head) segment of nk scores is one softmax.
    s.par_chunks_mut(nk.max(1) * 256)
        .for_each(|chunk| softmax_rows_in_place(chunk, nk));
    // out = P·V' + b_o.
    let mut out = residual_rows(residual, w.out.1, nq, c_out);
    matmul(
        MatMut::row_major(&mut out, nq, c_out)?,
        true,
        MatRef::row_major(&s, nq, width)?,
        MatRef::row_major(&vo, width, c_out)?,
        1.0,
        auto_threads(nq, c_out, width),
    )?;
    Ok((
        out,
        AttentionFactors {
            probs: s,
            values: vo,
        },
    ))
}

/// A LayerNorm over the last axis: weight, bias, epsilon.
#[derive(Debug, Clone, Copy)]
pub struct RowNorm<'a> {
    /// The weight, one per column.
    pub gamma: &'a [f32],
    /// The bias, one per column.
    pub beta: &'a [f32],
    /// Added to the variance.
    pub eps: f32,
}

/// What [`image_to_token_norm`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct NormedTokens {
    /// `norm(residual + attention(q, k, v))`, `[nq, c_out]` row-major.
    pub tokens: Vec<f32>,
    /// `tokens + pe` when a `pe` was given.
    pub with_pe: Option<Vec<f32>>,
    /// The attention term's factors, as [`attention_layer_residual_factored`] returns them.
    pub factors: AttentionFactors,
    /// The LayerNorm's statistics of each row.
    pub stats: crate::RowStats,
}

/// The two-way transformer's image-token update in one pass over the image tokens: the image
/// → token attention in the few-keys plan with its residual, the LayerNorm after it, and
/// the positional encoding added for the next layer:
/// `tokens = norm(residual + attention(q, k, v))`, `with_pe = tokens + pe`.
///
/// The same values as [`attention_layer_residual_factored`] then [`crate::layer_norm_with_stats`]
/// then an addition (the same operations in the same order on each row), made 64 rows at a
/// time while the rows are in cache: the image tokens (`[2048, 768]` at SegVol-base, 6 MB)
/// are read and written three times instead of ten, and this part of a decode is bound by
/// memory, not arithmetic (docs/performance.md).
pub fn image_to_token_norm(
    q: MatRef<'_>,
    k: MatRef<'_>,
    v: MatRef<'_>,
    w: &AttentionWeights<'_>,
    residual: &[f32],
    norm: RowNorm<'_>,
    pe: Option<&[f32]>,
) -> Result<NormedTokens, KernelError> {
    let (d, scale) = check(q, k, v, w, Some(residual))?;
    let [nq, c_q] = q.dims();
    let [nk, _] = k.dims();
    let c_out = w.out.0.dims()[1];
    let width = w.heads * nk;
    if norm.gamma.len() != c_out
        || norm.beta.len() != c_out
        || pe.is_some_and(|p| p.len() != nq * c_out)
        || c_out == 0
    {
        return Err(KernelError::Shape("image_to_token_norm: norm or pe size"));
    }
    let FewKeyParts { mq, bias, vo } = few_key_parts(k, v, w, d, scale)?;
    let mq = MatRef::row_major(&mq, c_q, width)?;
    let vo_m = MatRef::row_major(&vo, width, c_out)?;
    // The outputs start as copies of the residual and the PE, made in parallel.
    let mut tokens = Vec::with_capacity(nq * c_out);
    residual.par_iter().copied().collect_into_vec(&mut tokens);
    let mut with_pe = pe.map(|p| {
        let mut out = Vec::with_capacity(p.len());
        p.par_iter().copied().collect_into_vec(&mut out);
        out
    });
    let mut probs = rows_of(Some(&bias), nq, width);
    let mut stats = vec![(0.0f32, 0.0f32); nq];
    const ROWS: usize = 64;
    let mut pe_blocks: Vec<Option<&mut [f32]>> = match &mut with_pe {
        Some(p) => p.chunks_mut(ROWS * c_out).map(Some).collect(),
        None => (0..nq.div_ceil(ROWS)).map(|_| None).collect(),
    };
    tokens
        .par_chunks_mut(ROWS * c_out)
        .zip(probs.par_chunks_mut(ROWS * width))
        .zip(stats.par_chunks_mut(ROWS))
        .zip(pe_blocks.par_iter_mut())
        .enumerate()
        .try_for_each(|(b, (((out, s), st), pe_out))| -> Result<(), KernelError> {
            let rows = st.len();
            matmul(
                MatMut::row_major(s, rows, width)?,
                true,
                q.sub([b * ROWS, 0], [rows, c_q])?,
                mq,
                1.0,
                1,
            )?;
            softmax_rows_in_place(s, nk);
            if let Some(bo) = w.out.1 {
                crate::add_to_rows(out, bo);
            }
            matmul(
                MatMut::row_major(out, rows, c_out)?,
                true,
                MatRef::row_major(s, rows, width)?,
                vo_m,
                1.0,
                1,
            )?;
            norm_rows(out, st, norm, pe_out.as_deref_mut());
            Ok(())
        })?;
    let (mean, inv_std) = stats.into_iter().unzip();
    Ok(NormedTokens {
        tokens,
        with_pe,
        factors: AttentionFactors { probs, values: vo },
        stats: crate::RowStats { mean, inv_std },
    })
}

/// [`image_to_token_norm`]'s LayerNorm of each row of `out` in place, its statistics into
/// `stats`, and the row added into `pe` (`pe += row`: the PE plus the new tokens).
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512dq+avx512vl", "x86_64+avx2+fma"))]
fn norm_rows<'a>(
    out: &mut [f32],
    stats: &mut [(f32, f32)],
    norm: RowNorm<'a>,
    mut pe: Option<&mut [f32]>,
) {
    let c = norm.gamma.len();
    let mut x = vec![0.0f32; c];
    for (i, (o, st)) in out.chunks_exact_mut(c).zip(stats.iter_mut()).enumerate() {
        x.copy_from_slice(o);
        *st = crate::layer_norm_row(o, &x, norm.gamma, norm.beta, norm.eps);
        if let Some(p) = pe.as_deref_mut() {
            for (p, &v) in p[i * c..][..c].iter_mut().zip(o.iter()) {
                *p += v; // pe + tokens (float addition commutes: the same bits as keys + pe)
            }
        }
    }
}
