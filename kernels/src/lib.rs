//! Fast CPU kernels for SegVol's hot operations, on plain row-major `f32` slices.
//!
//! burn's CPU backend spends most of a ViT block outside its GEMM: bias added in a second pass,
//! attention scores for all heads materialised (12 × 2048 × 2048 floats) before a separate
//! softmax, erf-GELU through a scalar libm call. These kernels do each of those in one pass:
//!
//! - [`linear`]: `x·W (+ bias) (+ residual)`, GELU optional, as one strided GEMM into a
//!   destination pre-filled with bias and residual;
//! - [`attention`]: softmax(q·kᵀ·scale)·v for every head, parallel over heads and query
//!   blocks, keeping only one block of scores per task (no `[heads, n, n]` tensor);
//! - [`attention_layer`]: SAM's whole attention layer, the projections folded into the
//!   attention when one side has few tokens (the mask decoder's prompt tokens);
//! - [`image_to_token_norm`]: the mask decoder's image-token update (image → token attention,
//!   LayerNorm, the next layer's keys with their PE) 64 rows at a time;
//! - [`layer_norm`], [`gelu_in_place`]: one pass per row, vectorised `exp`/`erf`;
//! - [`attention_backward`] (or [`attention_backward_with_probs`], with the probabilities
//!   [`attention_with_probs`] kept), [`gelu_backward_in_place`], [`layer_norm_backward`],
//!   [`conv_transpose_k2s2_backward`]: their gradients, for training;
//! - [`adamw_step`]: AdamW's update of one parameter in one pass, for training.
//!
//! `segvol-core` calls them when the backend is burn-flex (and keeps burn's generic code for
//! every other backend and for training); docs/performance.md has the measurements.

#![deny(missing_docs)]

mod attention_layer;
mod backward;
mod gemm;
mod low_rank;
pub mod math;
mod optim;

use multiversion::multiversion;
use rayon::prelude::*;

pub use crate::attention_layer::{
    AttentionFactors, AttentionPlan, AttentionWeights, NormedTokens, RowNorm, attention_layer,
    attention_layer_residual, attention_layer_residual_factored, image_to_token_norm,
    plan_attention_layer,
};
pub use crate::backward::{
    Grads3, attention_backward, attention_backward_with_probs, conv_transpose_k2s2_backward,
    gelu_backward_in_place, layer_norm_backward,
};
pub use crate::gemm::{
    MatMut, MatRef, auto_threads, filled_pieces, matmul, matmul_uninit, product,
};
pub use crate::low_rank::{Conv1ImageTerm, NormedUpdate, conv1_from_updates, conv1_image_term};
pub use crate::optim::{AdamWStep, adamw_step};

/// A kernel was handed inconsistent shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelError {
    /// What did not fit.
    Shape(&'static str),
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelError::Shape(s) => write!(f, "kernel shape error: {s}"),
        }
    }
}

impl std::error::Error for KernelError {}

/// Copies the strided matrix `src` into `dst` row-major (`dst.len()` = rows·cols), in 32×32
/// tiles so that a transposed source is read and written a cache line at a time; blocks of 32
/// rows in parallel (the decoder transposes its 2048×768 keys per click: 4–5 ms on one thread).
pub fn copy_into(src: MatRef<'_>, dst: &mut [f32]) -> Result<(), KernelError> {
    let [rows, cols] = src.dims();
    if dst.len() != rows * cols {
        return Err(KernelError::Shape("copy_into: destination size"));
    }
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    const T: usize = 32;
    let tile_rows = |(bi, block): (usize, &mut [f32])| -> Result<(), KernelError> {
        let nr = block.len() / cols;
        let part = src.sub([bi * T, 0], [nr, cols])?;
        for j0 in (0..cols).step_by(T) {
            for j in j0..(j0 + T).min(cols) {
                for r in 0..nr {
                    block[r * cols + j] = part.at(r, j);
                }
            }
        }
        Ok(())
    };
    if rows * cols < 1 << 16 {
        dst.chunks_mut(T * cols).enumerate().try_for_each(tile_rows)
    } else {
        dst.par_chunks_mut(T * cols)
            .enumerate()
            .try_for_each(tile_rows)
    }
}

/// Asks glibc's allocator to keep freed memory for reuse instead of returning it to the kernel
/// (`M_MMAP_MAX = 0`: large buffers come from the heap, not from their own `mmap`;
/// `M_TRIM_THRESHOLD` = 2 GiB: the heap is not trimmed below that). SegVol frees and allocates tens of
/// megabytes per block and per click; by default glibc unmaps each and the next page-faults
/// 4 KiB at a time: measured, one base-size decode takes 195 ms with this against 262 ms
/// without (docs/performance.md). The cost: a long-running process keeps its peak heap.
/// Call it once, at the start of `main`, before threads allocate. No-op off glibc; returns
/// whether it took effect. (jemalloc and mimalloc as the global allocator were measured too
/// and were slower: docs/performance.md.)
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only sets allocator parameters; these two are valid options with
        // valid values, and it is called before other threads exist.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Asks glibc's allocator to serve every thread from its main arena (`M_ARENA_MAX = 1`), which
/// [`keep_freed_memory`] keeps. Each other thread's arena grows in `mmap`ed heaps of at most
/// 64 MiB, and a heap that becomes wholly free is unmapped whatever the trim threshold: a
/// training lane frees its activations after each backward pass, so every step page-faulted
/// them in again (5 % of a `small` step's CPU in the kernel zeroing pages, `perf` of `segvol
/// bench --train`). The cost is one lock for all threads' allocations, which the training's few
/// large buffers per operation do not feel. Call it once, before the threads that should use
/// it first allocate; no-op off glibc; returns whether it took effect.
pub fn one_malloc_arena() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only sets an allocator parameter; this is a valid option with a
        // valid value.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Whether `a` and `b` hold the same bits (equal lengths, every element's bit pattern equal:
/// NaN equals the same NaN, `0.0` differs from `-0.0`), in parallel blocks, each compared
/// without an early exit so that it vectorises.
pub fn same_bits(a: &[f32], b: &[f32]) -> bool {
    #[multiversion(targets("x86_64+avx512f+avx512bw+avx512dq+avx512vl", "x86_64+avx2+fma"))]
    fn block(a: &[f32], b: &[f32]) -> bool {
        a.iter()
            .zip(b)
            .fold(0u32, |d, (x, y)| d | (x.to_bits() ^ y.to_bits()))
            == 0
    }
    a.len() == b.len()
        && a.par_chunks(1 << 16)
            .zip(b.par_chunks(1 << 16))
            .all(|(x, y)| block(x, y))
}

/// `f(out_chunk, in_chunk)` for each pair of `out`'s chunks of `out_len` and `input`'s of
/// `in_len`, in parallel (for callers without rayon of their own: the decoder's per-plane
/// upsampling).
pub fn par_zip_chunks<F>(out: &mut [f32], out_len: usize, input: &[f32], in_len: usize, f: F)
where
    F: Fn(&mut [f32], &[f32]) + Sync + Send,
{
    if out_len == 0 || in_len == 0 {
        return;
    }
    out.par_chunks_mut(out_len)
        .zip(input.par_chunks(in_len))
        .for_each(|(o, i)| f(o, i));
}

/// Rows per parallel task for row-wise kernels (enough work to be worth a task).
fn rows_per_task(cols: usize) -> usize {
    (16_384 / cols.max(1)).max(1)
}

/// LayerNorm over the last axis of a row-major `[rows, cols]` slice: `(x − mean)/√(var + eps)
/// · gamma + beta`, the biased variance as PyTorch.
pub fn layer_norm(
    x: &[f32],
    cols: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) -> Result<Vec<f32>, KernelError> {
    layer_norm_with_stats(x, cols, gamma, beta, eps).map(|(out, _)| out)
}

/// One row's LayerNorm statistics: its mean and `1/√(var + eps)`.
#[derive(Debug, Clone, PartialEq)]
pub struct RowStats {
    /// Each row's mean.
    pub mean: Vec<f32>,
    /// Each row's `1/√(var + eps)`.
    pub inv_std: Vec<f32>,
}

/// [`layer_norm`], also returning each row's statistics (the same values it normalised by:
/// the output is bit-identical to [`layer_norm`]'s).
pub fn layer_norm_with_stats(
    x: &[f32],
    cols: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) -> Result<(Vec<f32>, RowStats), KernelError> {
    if cols == 0 || !x.len().is_multiple_of(cols) || gamma.len() != cols || beta.len() != cols {
        return Err(KernelError::Shape(
            "layer_norm: width does not divide or match",
        ));
    }
    let rows = x.len() / cols;
    let mut out = vec![0.0f32; x.len()];
    let mut stats = vec![(0.0f32, 0.0f32); rows];
    let per = rows_per_task(cols);
    out.par_chunks_mut(per * cols)
        .zip(x.par_chunks(per * cols))
        .zip(stats.par_chunks_mut(per))
        .for_each(|((o, xi), st)| {
            for ((orow, xrow), s) in o.chunks_exact_mut(cols).zip(xi.chunks_exact(cols)).zip(st) {
                *s = layer_norm_row(orow, xrow, gamma, beta, eps);
            }
        });
    let (mean, inv_std) = stats.into_iter().unzip();
    Ok((out, RowStats { mean, inv_std }))
}

/// Normalises one row into `out`; returns its mean and `1/√(var + eps)`.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512dq+avx512vl", "x86_64+avx2+fma"))]
pub(crate) fn layer_norm_row(
    out: &mut [f32],
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = lane_sum(x, |v| v) / n;
    let var = lane_sum(x, |v| (v - mean) * (v - mean)) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for (((o, &v), &g), &b) in out.iter_mut().zip(x).zip(gamma).zip(beta) {
        *o = (v - mean) * inv * g + b;
    }
    (mean, inv)
}

/// `Σ f(v)` over `x` in sixteen partial sums (one vector register): one running sum is a
/// serial chain of dependent additions the compiler may not reorder, 768 of them per
/// LayerNorm row. Inlined into its (multiversioned) callers.
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    const L: usize = 16;
    let mut acc = [0.0f32; L];
    let chunks = x.chunks_exact(L);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Exact GELU in place, in parallel chunks.
pub fn gelu_in_place(x: &mut [f32]) {
    x.par_chunks_mut(16_384).for_each(gelu_chunk);
}

/// Exact GELU of every element of `x` into a new buffer ([`gelu_in_place`]'s floats), in one
/// pass: each block is copied and transformed while it is in cache, where a copy of the whole
/// input and then [`gelu_in_place`] read and wrote it twice (training's GELU node keeps its
/// input for the backward pass, so it cannot work in place).
pub fn gelu_copy(x: &[f32]) -> Vec<f32> {
    const BLOCK: usize = 16_384;
    let lens: Vec<usize> = x.chunks(BLOCK).map(<[f32]>::len).collect();
    let filled = filled_pieces(&lens, |i, piece| {
        let y = gemm::write_copy(piece, &x[i * BLOCK..][..piece.len()]);
        gelu_chunk(y);
        Ok((y, ()))
    });
    match filled {
        Ok((y, _)) => y,
        // Not reached: every piece comes back as itself.
        Err(_) => {
            let mut y = x.to_vec();
            gelu_in_place(&mut y);
            y
        }
    }
}

#[multiversion(targets("x86_64+avx512f+avx512bw+avx512dq+avx512vl", "x86_64+avx2+fma"))]
fn gelu_chunk(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = math::gelu(*v);
    }
}

/// Softmax of each row of a row-major `[rows, cols]` slice, in place.
pub fn softmax_rows_in_place(s: &mut [f32], cols: usize) {
    if cols == 0 {
        return;
    }
    if cols < 16 {
        // Rows shorter than a vector register (the image → token attention's: one score per
        // prompt token): their exponentials all at once, not a row at a time. Whole rows only,
        // as below (a trailing part row is left as it is).
        let whole = s.len() / cols * cols;
        for block in s[..whole].chunks_mut(cols * 64) {
            softmax_short_rows(block, cols);
        }
        return;
    }
    for row in s.chunks_exact_mut(cols) {
        softmax_row(row);
    }
}

/// [`softmax_rows_in_place`] on whole rows of `cols` (< 16) elements: each row less its
/// maximum, then the exponential over the whole block (vectorised across rows), then each row
/// divided by its sum.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512dq+avx512vl", "x86_64+avx2+fma"))]
fn softmax_short_rows(block: &mut [f32], cols: usize) {
    for row in block.chunks_exact_mut(cols) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        for v in row.iter_mut() {
            *v -= max;
        }
    }
    for v in block.iter_mut() {
        *v = math::exp(*v);
    }
    for row in block.chunks_exact_mut(cols) {
        let inv = 1.0 / row.iter().sum::<f32>();
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

#[multiversion(targets("x86_64+avx512f+avx512bw+avx512dq+avx512vl", "x86_64+avx2+fma"))]
fn softmax_row(row: &mut [f32]) {
    // Sixteen running maxima and sums: a single accumulator is a serial chain the compiler may
    // not reorder (float addition), sixteen lanes are one vector register.
    const L: usize = 16;
    let mut mx = [f32::NEG_INFINITY; L];
    let mut chunks = row.chunks_exact(L);
    for c in &mut chunks {
        for (m, &v) in mx.iter_mut().zip(c) {
            *m = m.max(v);
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(mx.iter())
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut acc = [0.0f32; L];
    let mut chunks = row.chunks_exact_mut(L);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c.iter_mut()) {
            *v = math::exp(*v - max);
            *a += *v;
        }
    }
    let mut sum = 0.0f32;
    for v in chunks.into_remainder() {
        *v = math::exp(*v - max);
        sum += *v;
    }
    sum += acc.iter().sum::<f32>();
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// `x·w (+ bias) (+ residual)`, then GELU if asked: `x` is `[rows, in]`, `w` `[in, out]` (any
/// strides: burn's `[in, out]` weight or a transposed `[out, in]` one, without a copy), `bias`
/// `[out]`, `residual` `[rows, out]` row-major. Returns `[rows, out]` row-major.
pub fn linear(
    x: MatRef<'_>,
    w: MatRef<'_>,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    gelu: bool,
) -> Result<Vec<f32>, KernelError> {
    let [rows, _] = x.dims();
    let [_, out_dim] = w.dims();
    if bias.is_some_and(|b| b.len() != out_dim)
        || residual.is_some_and(|r| r.len() != rows * out_dim)
    {
        return Err(KernelError::Shape("linear: bias or residual size"));
    }
    let [m, k] = x.dims();
    let threads = auto_threads(m, out_dim, k);
    // The product accumulates onto the residual and the bias; without either it writes a new
    // buffer that is not zeroed first (`product`).
    let start = match (residual, bias) {
        (Some(r), _) => {
            let mut out = r.to_vec();
            if let Some(b) = bias
                && out_dim > 0
            {
                out.par_chunks_mut(rows_per_task(out_dim) * out_dim)
                    .for_each(|c| add_to_rows(c, b));
            }
            Some(out)
        }
        // The bias in every row (what a zeroed buffer plus the bias was, in one pass; `repeat`
        // copies by doubling, with `memcpy`).
        (None, Some(b)) => Some(b.repeat(rows)),
        (None, None) => None,
    };
    let mut out = match start {
        Some(mut out) => {
            matmul(
                MatMut::row_major(&mut out, rows, out_dim)?,
                true,
                x,
                w,
                1.0,
                threads,
            )?;
            out
        }
        None => product(x, w, 1.0, threads)?,
    };
    if gelu {
        gelu_in_place(&mut out);
    }
    Ok(out)
}

/// `row += b` for each row of `rows` (rows of `b.len()`; nothing when `b` is empty): the
/// bias of [`linear`] and of the attention layers' outputs.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512dq+avx512vl", "x86_64+avx2+fma"))]
pub(crate) fn add_to_rows(rows: &mut [f32], b: &[f32]) {
    if b.is_empty() {
        return;
    }
    for row in rows.chunks_exact_mut(b.len()) {
        for (o, &v) in row.iter_mut().zip(b) {
            *o += v;
        }
    }
}

/// Per-head matrices inside one slice: head `h` is the `[rows, dim]` matrix starting at column
/// `offset + h·dim` of a row-major buffer with `row_stride` floats per row (q, k and v of a
/// fused `[n, 3c]` projection are three of these over the same slice).
#[derive(Clone, Copy, Debug)]
pub struct Heads<'a> {
    /// The buffer.
    pub data: &'a [f32],
    /// Rows (tokens).
    pub rows: usize,
    /// Floats from one row to the next.
    pub row_stride: usize,
    /// Column of head 0's first feature.
    pub offset: usize,
    /// Number of heads.
    pub heads: usize,
    /// Features per head.
    pub dim: usize,
}

impl<'a> Heads<'a> {
    fn head(&self, h: usize, row0: usize, rows: usize) -> Result<MatRef<'a>, KernelError> {
        MatRef::new(
            self.data,
            self.offset + h * self.dim + row0 * self.row_stride,
            [rows, self.dim],
            [self.row_stride, 1],
        )
    }
}

/// Multi-head attention `softmax(q·kᵀ·scale)·v`, heads concatenated: returns `[q.rows,
/// heads·v.dim]` row-major, head `h` in columns `h·v.dim ..`. Parallel over (query block,
/// head); each task holds one `[block, k.rows]` block of scores.
pub fn attention(
    q: Heads<'_>,
    k: Heads<'_>,
    v: Heads<'_>,
    scale: f32,
) -> Result<Vec<f32>, KernelError> {
    attention_kept(q, k, v, scale, false).map(|(out, _)| out)
}

/// [`attention`], plus its probabilities `softmax(q·kᵀ·scale)`: `[heads, q.rows, k.rows]`
/// row-major (head `h`'s `[q.rows, k.rows]` block at `h·q.rows·k.rows`), the same floats the
/// output was computed from. Training keeps them for [`attention_backward_with_probs`], which
/// then does not compute them again (one GEMM and one softmax per head less).
pub fn attention_with_probs(
    q: Heads<'_>,
    k: Heads<'_>,
    v: Heads<'_>,
    scale: f32,
) -> Result<(Vec<f32>, Vec<f32>), KernelError> {
    attention_kept(q, k, v, scale, true).map(|(out, p)| (out, p.unwrap_or_default()))
}

/// One head's kᵀ `[dim, nk]` and v `[nk, dv]`, dense.
type PackedHead = (Vec<f32>, Vec<f32>);

fn attention_kept(
    q: Heads<'_>,
    k: Heads<'_>,
    v: Heads<'_>,
    scale: f32,
    keep: bool,
) -> Result<(Vec<f32>, Option<Vec<f32>>), KernelError> {
    if q.heads != k.heads || q.heads != v.heads || q.dim != k.dim || k.rows != v.rows {
        return Err(KernelError::Shape("attention: q, k, v do not agree"));
    }
    let (nq, nk, heads, dv) = (q.rows, k.rows, q.heads, v.dim);
    let width = heads * dv;
    let mut out = vec![0.0f32; nq * width];
    if nq == 0 || nk == 0 || width == 0 {
        return Ok((out, keep.then(|| vec![0.0f32; heads * nq * nk])));
    }
    // Each head's kᵀ `[dim, nk]` and v `[nk, dv]` copied dense once: the GEMM packs its right
    // operand on every call, and packing from a dense buffer is several times faster than
    // gathering every `row_stride`-th float.
    let packed: Vec<Result<PackedHead, KernelError>> = (0..heads)
        .into_par_iter()
        .map(|h| {
            let (kh, vh) = (k.head(h, 0, nk)?, v.head(h, 0, nk)?);
            let mut kt = vec![0.0f32; q.dim * nk];
            for (j, row) in kt.chunks_exact_mut(nk).enumerate() {
                for (i, o) in row.iter_mut().enumerate() {
                    *o = kh.at(i, j);
                }
            }
            let mut vd = vec![0.0f32; nk * dv];
            for (i, row) in vd.chunks_exact_mut(dv).enumerate() {
                for (j, o) in row.iter_mut().enumerate() {
                    *o = vh.at(i, j);
                }
            }
            Ok((kt, vd))
        })
        .collect();
    let packed = packed.into_iter().collect::<Result<Vec<_>, _>>()?;
    // Query rows per task: enough that the GEMM's fixed cost (packing kᵀ and v, both
    // `nk × dim`) is small against its work, few enough that every thread gets tasks and the
    // `[block, nk]` scores stay in L2.
    let block = (262_144 / nk).clamp(16, 256).min(nq);
    // Tasks head-major: (head, first row, rows).
    let tasks: Vec<(usize, usize, usize)> = (0..heads)
        .flat_map(|h| {
            (0..nq)
                .step_by(block)
                .map(move |r0| (h, r0, block.min(nq - r0)))
        })
        .collect();
    // A task's two score operands: its query rows of head h, and the head's kᵀ.
    let score_operands = |&(h, row0, rows): &(usize, usize, usize)| {
        Ok::<_, KernelError>((
            q.head(h, row0, rows)?,
            MatRef::row_major(&packed[h].0, q.dim, nk)?,
        ))
    };
    // Softmax of a task's scores in place, then its `[rows, dv]` output.
    let finish = |&(h, _, rows): &(usize, usize, usize),
                  scores: &mut [f32]|
     -> Result<Vec<f32>, KernelError> {
        softmax_rows_in_place(scores, nk);
        product(
            MatRef::row_major(scores, rows, nk)?,
            MatRef::row_major(&packed[h].1, nk, dv)?,
            1.0,
            1,
        )
    };
    let (probs, outs) = if keep {
        // Each task writes its scores straight into its `[rows, nk]` place in the kept P
        // (head-major, then query blocks), not zeroed first, so nothing is copied afterwards.
        let lens: Vec<usize> = tasks.iter().map(|t| t.2 * nk).collect();
        let (p, outs) = filled_pieces(&lens, |i, dst| {
            let (qh, kt) = score_operands(&tasks[i])?;
            let scores = matmul_uninit(dst, qh, kt, scale, 1)?;
            let o = finish(&tasks[i], scores)?;
            Ok((scores, o))
        })?;
        (Some(p), outs)
    } else {
        let outs = tasks
            .par_iter()
            .map(|t| {
                let (qh, kt) = score_operands(t)?;
                let mut scores = product(qh, kt, scale, 1)?;
                finish(t, &mut scores)
            })
            .collect::<Result<Vec<_>, KernelError>>()?;
        (None, outs)
    };
    for (&(h, row0, _), o) in tasks.iter().zip(outs) {
        for (i, orow) in o.chunks_exact(dv).enumerate() {
            let at = (row0 + i) * width + h * dv;
            out[at..at + dv].copy_from_slice(orow);
        }
    }
    Ok((out, probs))
}

/// The input voxels `n` and output channels `cout` of a `ConvTranspose3d(k = 2, s = 2)`:
/// `x` `[cin, d, h, w]`, `weight` `[cin, cout, 2, 2, 2]`, `bias` `[cout]`; errors if they do not
/// agree.
fn k2s2_sizes(
    x: &[f32],
    [cin, d, h, w]: [usize; 4],
    weight: &[f32],
    bias: &[f32],
) -> Result<(usize, usize), KernelError> {
    let n = d * h * w;
    if cin == 0 || x.len() != cin * n || !weight.len().is_multiple_of(cin * 8) {
        return Err(KernelError::Shape(
            "conv_transpose_k2s2: input or weight size",
        ));
    }
    let cout = weight.len() / (cin * 8);
    if bias.len() != cout {
        return Err(KernelError::Shape("conv_transpose_k2s2: bias size"));
    }
    Ok((n, cout))
}

/// `ConvTranspose3d(kernel 2, stride 2, no padding)` for one sample, then GELU if asked:
/// `x` is `[cin, d, h, w]`, `weight` PyTorch's `[cin, cout, 2, 2, 2]`, `bias` `[cout]`; returns
/// `[cout, 2d, 2h, 2w]`. The windows do not overlap, so it is one GEMM, `Wᵀ·x` with the eight
/// kernel offsets `(i, j, k)` as extra output rows (`[cout·8, d·h·w]`, the weight read in
/// place by strides), whose rows are then written every other voxel into the output.
pub fn conv_transpose_k2s2(
    x: &[f32],
    [cin, d, h, w]: [usize; 4],
    weight: &[f32],
    bias: &[f32],
    gelu: bool,
) -> Result<Vec<f32>, KernelError> {
    let (n, cout) = k2s2_sizes(x, [cin, d, h, w], weight, bias)?;
    let xm = MatRef::row_major(x, cin, n)?;
    let (oh, ow) = (2 * h, 2 * w);
    let plane = 8 * n;
    let mut out = vec![0.0f32; cout * plane];
    if plane == 0 || cout == 0 {
        return Ok(out);
    }
    // All eight kernel offsets in one product, `[cout·8, n]` (row `co·8 + t`; the weight read
    // in place as `[cout·8, cin]` with strides (1, cout·8)), into a scratch buffer kept between
    // calls (first-touching tens of fresh megabytes costs more than the arithmetic); then each
    // row written every other voxel into its output plane.
    SCRATCH.with(|cell| -> Result<(), KernelError> {
        let mut part = cell.take();
        part.resize(cout * 8 * n, 0.0);
        let wm = MatRef::new(weight, 0, [cout * 8, cin], [1, cout * 8])?;
        matmul(
            MatMut::row_major(&mut part, cout * 8, n)?,
            false,
            wm,
            xm,
            1.0,
            auto_threads(cout * 8, n, cin),
        )?;
        out.par_chunks_mut(plane)
            .zip(part.par_chunks(8 * n))
            .enumerate()
            .for_each(|(co, (o, rows8))| {
                let b = bias[co];
                for (t, src) in rows8.chunks_exact(n).enumerate() {
                    let (i, j, k) = (t >> 2, (t >> 1) & 1, t & 1);
                    for z in 0..d {
                        for y in 0..h {
                            let row = &src[(z * h + y) * w..][..w];
                            let at = ((2 * z + i) * oh + 2 * y + j) * ow + k;
                            for (dst, &v) in o[at..].iter_mut().step_by(2).zip(row) {
                                *dst = v + b;
                            }
                        }
                    }
                }
            });
        cell.set(part);
        Ok(())
    })?;
    if gelu {
        gelu_in_place(&mut out);
    }
    Ok(out)
}

/// `head · GELU(ConvTranspose3d(k = 2, s = 2)(x))` without the upscaled tensor: the mask
/// decoder's last step (SAM's hypernetwork vector dotted with the upscaled embedding, per
/// voxel). `x` `[cin, d, h, w]`, `weight` `[cin, cout, 2, 2, 2]`, `bias` and `head` `[cout]`;
/// returns `[2d, 2h, 2w]`.
///
/// [`conv_transpose_k2s2`] followed by a dot product writes the `cout`-channel grid (50 MB at
/// SegVol-base size), runs GELU over it and reads it back. Here the product runs 128 input
/// voxels at a time, and each block is reduced to its `8 · block` logits while it
/// is still in cache. The sum over channels runs in channel order, as a plain dot product.
pub fn conv_transpose_k2s2_gelu_dot(
    x: &[f32],
    [cin, d, h, w]: [usize; 4],
    weight: &[f32],
    bias: &[f32],
    head: &[f32],
) -> Result<Vec<f32>, KernelError> {
    k2s2_sizes(x, [cin, d, h, w], weight, bias)?;
    gelu_dot(x, cin, VoxelOrder::RowMajor([d, h, w]), weight, bias, head)
}

/// Where the input voxels of a transposed convolution lie in its `[d, h, w]` input grid.
#[derive(Debug, Clone, Copy)]
enum VoxelOrder {
    /// Voxel `u` is `(z, y, x)` of the grid `[d, h, w]`, row-major.
    RowMajor([usize; 3]),
    /// The output of another `k = 2, s = 2` transposed convolution on the grid `[d, h, w]`,
    /// as its product leaves it: voxel `u = t·d·h·w + v` is offset `t = (i, j, k)` of parent
    /// voxel `v = (z, y, x)`, i.e. `(2z + i, 2y + j, 2x + k)` of the grid `[2d, 2h, 2w]`.
    ParentMajor([usize; 3]),
}

impl VoxelOrder {
    /// The number of voxels.
    fn len(self) -> usize {
        match self {
            VoxelOrder::RowMajor([d, h, w]) => d * h * w,
            VoxelOrder::ParentMajor([d, h, w]) => 8 * d * h * w,
        }
    }

    /// The grid's `[d, h, w]`.
    fn grid(self) -> [usize; 3] {
        match self {
            VoxelOrder::RowMajor(g) => g,
            VoxelOrder::ParentMajor([d, h, w]) => [2 * d, 2 * h, 2 * w],
        }
    }

    /// `(z, y, x)` of voxel `u`.
    fn zyx(self, u: usize) -> [usize; 3] {
        match self {
            VoxelOrder::RowMajor([_, h, w]) => [u / (h * w), (u / w) % h, u % w],
            VoxelOrder::ParentMajor([d, h, w]) => {
                let n = d * h * w;
                let (t, v) = (u / n, u % n);
                let (i, j, k) = (t >> 2, (t >> 1) & 1, t & 1);
                let [z, y, x] = [v / (h * w), (v / w) % h, v % w];
                [2 * z + i, 2 * y + j, 2 * x + k]
            }
        }
    }
}

/// [`conv_transpose_k2s2_gelu_dot`] on `x` `[cin, order.len()]`, its voxels in `order`;
/// returns the `[2d, 2h, 2w]` logits of `order`'s grid, row-major. Sizes of `weight` and
/// `bias` checked by the caller.
fn gelu_dot(
    x: &[f32],
    cin: usize,
    order: VoxelOrder,
    weight: &[f32],
    bias: &[f32],
    head: &[f32],
) -> Result<Vec<f32>, KernelError> {
    let n = order.len();
    let cout = bias.len();
    if head.len() != cout {
        return Err(KernelError::Shape(
            "conv_transpose_k2s2_gelu_dot: head size",
        ));
    }
    let mut out = vec![0.0f32; 8 * n];
    if n == 0 || cout == 0 {
        return Ok(out);
    }
    // 128 input voxels: the block's product (`8·cout × 128`, 384 KB at cout = 96) stays in L2.
    const BLOCK: usize = 128;
    let wm = MatRef::new(weight, 0, [cout * 8, cin], [1, cout * 8])?;
    let blocks: Vec<usize> = (0..n).step_by(BLOCK).collect();
    let sums = blocks
        .par_iter()
        .map(|&v0| -> Result<Vec<f32>, KernelError> {
            let nb = BLOCK.min(n - v0);
            let xm = MatRef::new(x, v0, [cin, nb], [n, 1])?;
            let mut acc = vec![0.0f32; 8 * nb];
            BLOCK_SCRATCH.with(|cell| -> Result<(), KernelError> {
                let mut part = cell.take();
                part.resize(cout * 8 * nb, 0.0);
                let done = matmul(
                    MatMut::row_major(&mut part[..cout * 8 * nb], cout * 8, nb)?,
                    false,
                    wm,
                    xm,
                    1.0,
                    1,
                );
                if done.is_ok() {
                    for (co, rows8) in part.chunks_exact(8 * nb).take(cout).enumerate() {
                        for (a, row) in acc.chunks_exact_mut(nb).zip(rows8.chunks_exact(nb)) {
                            gelu_dot_row(a, row, bias[co], head[co]);
                        }
                    }
                }
                cell.set(part);
                done
            })?;
            Ok(acc)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let [_, gh, gw] = order.grid();
    let (oh, ow) = (2 * gh, 2 * gw);
    for (&v0, acc) in blocks.iter().zip(&sums) {
        let nb = acc.len() / 8;
        for (t, a) in acc.chunks_exact(nb).enumerate() {
            let (i, j, k) = (t >> 2, (t >> 1) & 1, t & 1);
            for (vl, &s) in a.iter().enumerate() {
                let [z, y, xx] = order.zyx(v0 + vl);
                out[((2 * z + i) * oh + 2 * y + j) * ow + 2 * xx + k] = s;
            }
        }
    }
    Ok(out)
}

/// The weights of SegVol's output upscaling (SEGVOL.md §6.4), PyTorch's layouts: the first
/// transposed convolution `conv1` (`[cin, c1, 2, 2, 2]`, bias `[c1]`), the whole-sample
/// LayerNorm's element-wise `norm` (each `[c1, 2d, 2h, 2w]`) with its `eps`, the second
/// transposed convolution `conv2` (`[c1, c2, 2, 2, 2]`, bias `[c2]`).
#[derive(Debug, Clone, Copy)]
pub struct Upscaling<'a> {
    /// The first `ConvTranspose3d(k = 2, s = 2)`: weight and bias.
    pub conv1: (&'a [f32], &'a [f32]),
    /// `LayerNorm((C, D, H, W))`: weight and bias.
    pub norm: (&'a [f32], &'a [f32]),
    /// The LayerNorm's epsilon.
    pub eps: f32,
    /// The second `ConvTranspose3d(k = 2, s = 2)`: weight and bias.
    pub conv2: (&'a [f32], &'a [f32]),
}

/// The mask decoder's output upscaling reduced to the mask, from its token-major input:
/// `head · GELU(conv2(GELU(norm(conv1(x)))))` per voxel of the `[4d, 4h, 4w]` grid, `x`
/// `[d·h·w, cin]` (the transformer's image tokens, row-major). Calls `stage_done` after the
/// first convolution and after the LayerNorm (for per-stage timings).
///
/// The same function as [`conv_transpose_k2s2`], [`full_layer_norm`] with GELU and
/// [`conv_transpose_k2s2_gelu_dot`] in turn, with less memory traffic: the first product reads
/// the tokens in place (no transpose to channel-major), its result stays in the order the
/// product leaves it (offset-major, no scatter into the `[2d, 2h, 2w]` grid), the LayerNorm's
/// statistics are taken with bias added in the same pass and it is applied in place, and the
/// second product reads that order directly (offset-major voxel order).
pub fn upscale_dot(
    x: &[f32],
    [d, h, w]: [usize; 3],
    weights: Upscaling<'_>,
    head: &[f32],
    stage_done: &mut dyn FnMut(),
) -> Result<Vec<f32>, KernelError> {
    let n = d * h * w;
    if n == 0 || !x.len().is_multiple_of(n) {
        return Err(KernelError::Shape("upscale_dot: input size"));
    }
    let cin = x.len() / n;
    let (w1, b1) = weights.conv1;
    let c1 = b1.len();
    if cin == 0 || c1 == 0 || w1.len() != cin * c1 * 8 {
        return Err(KernelError::Shape("upscale_dot: first convolution's size"));
    }
    check_upscaling(n, &weights)?;
    // conv1: `[c1·8, n]`, row `co·8 + t` (offset t of output channel co), as one product.
    let mut y = vec![0.0f32; c1 * 8 * n];
    matmul(
        MatMut::row_major(&mut y, c1 * 8, n)?,
        false,
        MatRef::new(w1, 0, [c1 * 8, cin], [1, c1 * 8])?,
        MatRef::new(x, 0, [cin, n], [1, cin])?,
        1.0,
        auto_threads(c1 * 8, n, cin),
    )?;
    upscale_dot_from_conv1(y, [d, h, w], weights, head, stage_done)
}

/// The sizes of `weights` against each other and the `n`-voxel grid (all but the first
/// convolution's input width).
fn check_upscaling(n: usize, weights: &Upscaling<'_>) -> Result<(), KernelError> {
    let c1 = weights.conv1.1.len();
    let (gamma, beta) = weights.norm;
    let (w2, b2) = weights.conv2;
    if c1 == 0 || !weights.conv1.0.len().is_multiple_of(c1 * 8) {
        return Err(KernelError::Shape("upscale_dot: first convolution's size"));
    }
    if gamma.len() != c1 * 8 * n || beta.len() != c1 * 8 * n {
        return Err(KernelError::Shape("upscale_dot: LayerNorm's size"));
    }
    if b2.is_empty() || w2.len() != c1 * b2.len() * 8 {
        return Err(KernelError::Shape("upscale_dot: second convolution's size"));
    }
    Ok(())
}

/// [`upscale_dot`] from the first convolution's product without its bias, `y` `[c1·8, n]`
/// (row `co·8 + t` holds offset `t` of output channel `co` for every parent voxel, row-major
/// over the `[d, h, w]` grid), as [`conv1_from_updates`] makes it. Calls `stage_done` after
/// the bias and after the LayerNorm.
pub fn upscale_dot_from_conv1(
    mut y: Vec<f32>,
    [d, h, w]: [usize; 3],
    weights: Upscaling<'_>,
    head: &[f32],
    stage_done: &mut dyn FnMut(),
) -> Result<Vec<f32>, KernelError> {
    let n = d * h * w;
    check_upscaling(n, &weights)?;
    let b1 = weights.conv1.1;
    let (gamma, beta) = weights.norm;
    let (w2, b2) = weights.conv2;
    let c1 = b1.len();
    let plane = 8 * n;
    if y.len() != c1 * plane {
        return Err(KernelError::Shape("upscale_dot: product's size"));
    }
    // Bias, and the sum for the mean in the same pass (f64 partial sums: millions of values).
    let sum: f64 = y
        .par_chunks_mut(n)
        .enumerate()
        .map(|(r, row)| add_and_sum(row, b1[r / 8]))
        .sum();
    stage_done();
    let count = y.len() as f64;
    let mean = sum / count;
    let var = y
        .par_chunks(n)
        .map(|row| centred_squares(row, mean))
        .sum::<f64>()
        / count;
    let (mean, inv) = (
        mean as f32,
        (1.0 / (var + weights.eps as f64).sqrt()) as f32,
    );
    // LayerNorm + GELU in place; row `co·8 + t` holds the grid's voxels `(2z+i, 2y+j, 2x+k)`.
    let (oh, ow) = (2 * h, 2 * w);
    y.par_chunks_mut(n).enumerate().for_each(|(r, row)| {
        let (co, t) = (r / 8, r % 8);
        let (i, j, k) = (t >> 2, (t >> 1) & 1, t & 1);
        for z in 0..d {
            for yy in 0..h {
                let seg = &mut row[(z * h + yy) * w..][..w];
                let at = co * plane + ((2 * z + i) * oh + 2 * yy + j) * ow + k;
                norm_strided(seg, &gamma[at..], &beta[at..], mean, inv);
            }
        }
        gelu_chunk(row);
    });
    stage_done();
    gelu_dot(&y, c1, VoxelOrder::ParentMajor([d, h, w]), w2, b2, head)
}

/// `row += bias`, returning the row's sum in f64 (eight partial sums, so it vectorises).
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512dq+avx512vl", "x86_64+avx2+fma"))]
fn add_and_sum(row: &mut [f32], bias: f32) -> f64 {
    let mut lanes = [0.0f64; 8];
    let mut chunks = row.chunks_exact_mut(8);
    for c in &mut chunks {
        for (l, v) in lanes.iter_mut().zip(c.iter_mut()) {
            *v += bias;
            *l += *v as f64;
        }
    }
    let mut s: f64 = lanes.iter().sum();
    for v in chunks.into_remainder() {
        *v += bias;
        s += *v as f64;
    }
    s
}

/// `Σ (v − mean)²` over `row` in f64 (eight partial sums).
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512dq+avx512vl", "x86_64+avx2+fma"))]
fn centred_squares(row: &[f32], mean: f64) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = row.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            let e = v as f64 - mean;
            *l += e * e;
        }
    }
    lanes.iter().sum::<f64>() + rest.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>()
}

/// `seg[x] = (seg[x] − mean)·inv·gamma[2x] + beta[2x]`: one grid row of the LayerNorm, whose
/// affine weights sit every other element in the `[2d, 2h, 2w]` layout.
fn norm_strided(seg: &mut [f32], gamma: &[f32], beta: &[f32], mean: f32, inv: f32) {
    for ((v, &g), &b) in seg
        .iter_mut()
        .zip(gamma.iter().step_by(2))
        .zip(beta.iter().step_by(2))
    {
        *v = (*v - mean) * inv * g + b;
    }
}

/// `acc[v] += head · GELU(row[v] + bias)`.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512dq+avx512vl", "x86_64+avx2+fma"))]
fn gelu_dot_row(acc: &mut [f32], row: &[f32], bias: f32, head: f32) {
    for (a, &v) in acc.iter_mut().zip(row) {
        *a = head.mul_add(math::gelu(v + bias), *a);
    }
}

thread_local! {
    /// `conv_transpose_k2s2_gelu_dot`'s block product, kept for the next block on this thread.
    static BLOCK_SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

thread_local! {
    /// `conv_transpose_k2s2`'s scratch product, kept for the next call on this thread.
    static SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// SegVol's `LayerNorm((C, D, H, W))` on one sample: statistics over every element, then the
/// element-wise affine `weight`, `bias` (same length as `x`), then GELU if asked.
pub fn full_layer_norm(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    eps: f32,
    gelu: bool,
) -> Result<Vec<f32>, KernelError> {
    if x.is_empty() || weight.len() != x.len() || bias.len() != x.len() {
        return Err(KernelError::Shape("full_layer_norm: sizes"));
    }
    // f64 partial sums: millions of elements.
    let n = x.len() as f64;
    let mean = x
        .par_chunks(16_384)
        .map(|c| c.iter().map(|&v| v as f64).sum::<f64>())
        .sum::<f64>()
        / n;
    let var = x
        .par_chunks(16_384)
        .map(|c| c.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>())
        .sum::<f64>()
        / n;
    let (mean, inv) = (mean as f32, (1.0 / (var + eps as f64).sqrt()) as f32);
    let mut out = vec![0.0f32; x.len()];
    out.par_chunks_mut(16_384)
        .zip(x.par_chunks(16_384))
        .zip(weight.par_chunks(16_384).zip(bias.par_chunks(16_384)))
        .for_each(|((o, xs), (ws, bs))| {
            for (((o, &v), &g), &b) in o.iter_mut().zip(xs).zip(ws).zip(bs) {
                *o = (v - mean) * inv * g + b;
            }
            if gelu {
                gelu_chunk(o);
            }
        });
    Ok(out)
}
