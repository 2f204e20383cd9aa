//! Fast CPU paths for the encoder's hot operations when the backend is burn-flex.
//!
//! burn's way to give one backend its own kernels is a backend-extension trait that every
//! generic function holding the model must then name (`B: SegVolBackend`), with an `impl` per
//! backend: in this workspace that is ~130 signatures in nine crates, and burn has no
//! specialisation to default it. The same effect with none of that: at run time, if `B` *is*
//! `burn_flex::Flex` (a `TypeId` comparison), its tensors are `FlexTensor`s — moved out with
//! `Any::downcast`, computed on by `segvol-kernels` on their f32 slices, and moved back. In
//! training, on `Autodiff<Flex>`, attention and GELU become single graph nodes with their own
//! backward passes (`fast/train.rs`). For every other backend (ndarray, wgpu, cuda, and
//! `Autodiff` of those) the functions here return `None` and the caller runs burn's generic
//! code, unchanged.
//!
//! Parity: `tests/parity.rs` runs the PyTorch fixtures on flex (this path) and on ndarray
//! (burn's generic code); `tests/fast_paths.rs` compares the two paths on the base config's
//! shapes and checks, with [`hits`], that every fast kernel really ran.

use std::sync::atomic::{AtomicU64, Ordering};

use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Tensor, backend::Backend};

/// The fast kernels, for [`hits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// [`linear`].
    Linear,
    /// [`layer_norm`].
    LayerNorm,
    /// [`fused_qkv_attention`].
    QkvAttention,
    /// [`attention`].
    Attention,
    /// [`conv_transpose_k2s2`].
    ConvTranspose,
    /// [`full_layer_norm`].
    FullLayerNorm,
    /// [`contiguous`].
    Contiguous,
    /// [`attention`] or [`fused_qkv_attention`] on `Autodiff<Flex>` (training): one graph
    /// node with its own backward pass.
    TrainAttention,
    /// [`gelu`] on `Autodiff<Flex>`.
    TrainGelu,
    /// [`forward_linear`] on `Autodiff<Flex>`.
    TrainLinear,
    /// [`forward_layer_norm`] on `Autodiff<Flex>`.
    TrainLayerNorm,
    /// [`attention_layer`], in any plan.
    AttentionLayer,
    /// [`attention_layer`] with its projections folded into the attention (few queries or few
    /// keys: `segvol_kernels::AttentionPlan`).
    FoldedAttention,
    /// [`conv_transpose_k2s2_gelu_dot`]: the decoder's last upscaling and the hypernetwork's
    /// product in one pass, without the upscaled embedding.
    ConvTransposeGeluDot,
    /// [`upscale_dot`]: the decoder's whole output upscaling reduced to the mask, from the
    /// transformer's tokens.
    UpscaleDot,
    /// [`upscale_dot`] with its first product from the image's kept part and the two-way
    /// layers' low-rank updates ([`low_rank`]).
    UpscaleLowRank,
}

const KERNELS: [Kernel; 16] = [
    Kernel::Linear,
    Kernel::LayerNorm,
    Kernel::QkvAttention,
    Kernel::Attention,
    Kernel::ConvTranspose,
    Kernel::FullLayerNorm,
    Kernel::Contiguous,
    Kernel::TrainAttention,
    Kernel::TrainGelu,
    Kernel::TrainLinear,
    Kernel::TrainLayerNorm,
    Kernel::AttentionLayer,
    Kernel::FoldedAttention,
    Kernel::ConvTransposeGeluDot,
    Kernel::UpscaleDot,
    Kernel::UpscaleLowRank,
];

static HITS: [AtomicU64; 16] = [const { AtomicU64::new(0) }; 16];

/// Counts a fast path that produced its result (every caller falls back to burn's code on
/// `None`, silently, so a test that only compares outputs cannot tell whether the fast path
/// ran: it reads these counts).
#[cfg_attr(not(feature = "fast-cpu"), allow(dead_code))]
fn hit<T>(k: Kernel, out: Option<T>) -> Option<T> {
    if out.is_some() {
        HITS[k as usize].fetch_add(1, Ordering::Relaxed);
    }
    out
}

/// How many times each fast kernel has produced a result in this process.
pub fn hits() -> Vec<(Kernel, u64)> {
    KERNELS
        .iter()
        .map(|&k| (k, HITS[k as usize].load(Ordering::Relaxed)))
        .collect()
}

/// Whether the fast paths are compiled in (cargo feature `fast-cpu`, on by default) and, when
/// `SEGVOL_GENERIC_OPS` is set in the environment, switched off for comparisons.
pub fn enabled() -> bool {
    cfg!(feature = "fast-cpu") && std::env::var_os("SEGVOL_GENERIC_OPS").is_none()
}

/// Whether the fast paths run for backend `B` (burn-flex, compiled in, not switched off).
pub fn is_active<B: Backend>() -> bool {
    #[cfg(feature = "fast-cpu")]
    {
        imp::active::<B>()
    }
    #[cfg(not(feature = "fast-cpu"))]
    {
        false
    }
}

/// `f(out_chunk, in_chunk)` for each pair of `out`'s chunks of `out_len` and `input`'s of
/// `in_len`: in parallel with the fast CPU kernels compiled in, else one after another.
pub fn zip_chunks<F>(out: &mut [f32], out_len: usize, input: &[f32], in_len: usize, f: F)
where
    F: Fn(&mut [f32], &[f32]) + Sync + Send,
{
    #[cfg(feature = "fast-cpu")]
    segvol_kernels::par_zip_chunks(out, out_len, input, in_len, f);
    #[cfg(not(feature = "fast-cpu"))]
    if out_len > 0 && in_len > 0 {
        for (o, i) in out.chunks_mut(out_len).zip(input.chunks(in_len)) {
            f(o, i);
        }
    }
}

#[cfg(feature = "fast-cpu")]
mod train;

pub mod low_rank;

#[cfg(feature = "fast-cpu")]
mod imp {
    use std::any::{Any, TypeId};
    use std::sync::OnceLock;

    use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive, backend::Backend};
    use burn_flex::{Flex, FlexTensor};
    use segvol_kernels::MatRef;

    /// Read once: the environment switch is not expected to change while running.
    pub(super) fn active<B: Backend>() -> bool {
        static ON: OnceLock<bool> = OnceLock::new();
        TypeId::of::<B>() == TypeId::of::<Flex>() && *ON.get_or_init(super::enabled)
    }

    /// `B`'s float tensor as a contiguous-or-strided f32 `FlexTensor`, or `None` (another
    /// backend, a quantised tensor, another float type).
    pub(super) fn flex<B: Backend, const D: usize>(t: Tensor<B, D>) -> Option<FlexTensor> {
        if !active::<B>() {
            return None;
        }
        match t.into_primitive() {
            TensorPrimitive::Float(p) => {
                let any: Box<dyn Any> = Box::new(p);
                let f = any.downcast::<FlexTensor>().ok()?;
                (f.dtype() == DType::F32).then_some(*f)
            }
            TensorPrimitive::QFloat(_) => None,
        }
    }

    /// An f32 buffer back into a `Tensor<B, D>` (B is Flex: checked by the caller's `flex`).
    pub(super) fn tensor<B: Backend, const D: usize>(
        data: Vec<f32>,
        shape: [usize; D],
    ) -> Option<Tensor<B, D>> {
        from_flex(FlexTensor::from_data(TensorData::new(data, shape)))
    }

    /// A FlexTensor as a `Tensor<B, D>` (B is Flex: checked by the caller's `flex`), no copy.
    pub(super) fn from_flex<B: Backend, const D: usize>(t: FlexTensor) -> Option<Tensor<B, D>> {
        let any: Box<dyn Any> = Box::new(t);
        let p = any.downcast::<B::FloatTensorPrimitive>().ok()?;
        Some(Tensor::from_primitive(TensorPrimitive::Float(*p)))
    }

    /// The tensor's elements in row-major order as one slice (copied only if strided; a
    /// rank-2 or rank-3 tensor with its last two axes swapped, the common case here, by a tiled
    /// transpose instead of burn-flex's element-by-element strided walk).
    pub(super) fn dense(t: FlexTensor) -> FlexTensor {
        if t.is_contiguous() && t.layout().start_offset() == 0 {
            return t;
        }
        let shape = t.layout().shape().clone();
        let strides = t.layout().strides().to_vec();
        let off = t.layout().start_offset();
        let rank = shape.num_dims();
        let nonneg: Option<Vec<usize>> = strides.iter().map(|&s| usize::try_from(s).ok()).collect();
        if t.dtype() == DType::F32
            && (rank == 2 || rank == 3)
            && let Some(st) = nonneg
        {
            let (b, sb) = if rank == 3 { (shape[0], st[0]) } else { (1, 0) };
            let (r, c) = (shape[rank - 2], shape[rank - 1]);
            let mut out = vec![0.0f32; b * r * c];
            let data = t.storage::<f32>();
            let ok = (0..b).all(|i| {
                MatRef::new(data, off + i * sb, [r, c], [st[rank - 2], st[rank - 1]])
                    .and_then(|m| {
                        segvol_kernels::copy_into(m, &mut out[i * r * c..(i + 1) * r * c])
                    })
                    .is_ok()
            });
            if ok {
                return FlexTensor::from_data(TensorData::new(out, shape));
            }
        }
        t.to_contiguous()
    }

    /// Three tensors as dense FlexTensors ([`dense`] of [`flex`] each, cloned handles).
    pub(super) fn dense3<B: Backend, const D: usize>(
        ts: [&Tensor<B, D>; 3],
    ) -> Option<[FlexTensor; 3]> {
        let [a, b, c] = ts;
        Some([
            dense(flex(a.clone())?),
            dense(flex(b.clone())?),
            dense(flex(c.clone())?),
        ])
    }

    /// What a per-sample `ConvTranspose3d(k = 2, s = 2)` kernel returns.
    pub(super) type SampleOut = Result<Vec<f32>, segvol_kernels::KernelError>;

    /// A `ConvTranspose3d(k = 2, s = 2)` kernel run on each sample of `x` `[b, cin, d, h, w]`
    /// with `weight` `[cin, cout, 2, 2, 2]` and `bias`: `kernel(sample, [cin, d, h, w],
    /// weight, bias, sample index)`, the results one after another. `None` if the shapes do not
    /// agree or a kernel fails.
    pub(super) fn per_sample_k2s2<B: Backend>(
        x: &Tensor<B, 5>,
        weight: &Tensor<B, 5>,
        bias: &Tensor<B, 1>,
        kernel: impl Fn(&[f32], [usize; 4], &[f32], &[f32], usize) -> SampleOut,
    ) -> Option<Vec<f32>> {
        let [b, cin, d, h, w] = x.dims();
        let [wc, _, k1, k2, k3] = weight.dims();
        if wc != cin || [k1, k2, k3] != [2, 2, 2] {
            return None;
        }
        let x = dense(flex(x.clone())?);
        let wt = dense(flex(weight.clone())?);
        let bs = dense(flex(bias.clone())?);
        k2s2_samples(slice(&x), [b, cin, d, h, w], slice(&wt), slice(&bs), kernel)
    }

    /// [`per_sample_k2s2`]'s loop over the samples, on dense buffers (training's node calls it
    /// with its autodiff tensors' buffers): `xs` `[b, cin, d, h, w]`.
    pub(super) fn k2s2_samples(
        xs: &[f32],
        [b, cin, d, h, w]: [usize; 5],
        wt: &[f32],
        bs: &[f32],
        kernel: impl Fn(&[f32], [usize; 4], &[f32], &[f32], usize) -> SampleOut,
    ) -> Option<Vec<f32>> {
        let per = cin * d * h * w;
        let mut out = Vec::new();
        for bi in 0..b {
            let part = kernel(
                xs.get(bi * per..(bi + 1) * per)?,
                [cin, d, h, w],
                wt,
                bs,
                bi,
            );
            append(&mut out, part.ok()?);
        }
        Some(out)
    }

    /// Appends one sample's result: moved, not copied, when it is the first (batch 1, the usual
    /// case; a copy of tens of megabytes costs as much as the kernel).
    pub(super) fn append(out: &mut Vec<f32>, part: Vec<f32>) {
        if out.is_empty() {
            *out = part;
        } else {
            out.extend(part);
        }
    }

    /// A dense tensor's elements (its buffer may be longer than the tensor).
    pub(super) fn slice(t: &FlexTensor) -> &[f32] {
        let n = t.layout().shape().num_elements();
        &t.storage::<f32>()[..n]
    }

    /// A 2-D FlexTensor as a strided matrix view (no copy; `None` for negative strides).
    pub(super) fn mat(t: &FlexTensor) -> Option<MatRef<'_>> {
        let shape = t.layout().shape();
        let strides = t.layout().strides();
        if shape.num_dims() != 2 {
            return None;
        }
        let rs = usize::try_from(strides[0]).ok()?;
        let cs = usize::try_from(strides[1]).ok()?;
        MatRef::new(
            t.storage::<f32>(),
            t.layout().start_offset(),
            [shape[0], shape[1]],
            [rs, cs],
        )
        .ok()
    }
}

/// A Linear layer's weight and bias as FlexTensors (bias dense).
#[cfg(feature = "fast-cpu")]
struct FlexLinear {
    weight: burn_flex::FlexTensor,
    bias: Option<burn_flex::FlexTensor>,
}

#[cfg(feature = "fast-cpu")]
impl FlexLinear {
    /// The weight as a matrix view and the bias, as the kernels take them.
    fn part(&self) -> Option<(segvol_kernels::MatRef<'_>, Option<&[f32]>)> {
        Some((imp::mat(&self.weight)?, self.bias.as_ref().map(imp::slice)))
    }
}

/// An attention layer's four projections (q, k, v, out) as FlexLinears.
#[cfg(feature = "fast-cpu")]
fn flex_linears<B: Backend>([q, k, v, o]: [&Linear<B>; 4]) -> Option<[FlexLinear; 4]> {
    Some([
        flex_linear(q)?,
        flex_linear(k)?,
        flex_linear(v)?,
        flex_linear(o)?,
    ])
}

/// [`flex_linears`]' projections as the kernels take them, with `heads` heads.
#[cfg(feature = "fast-cpu")]
fn attention_weights(
    ls: &[FlexLinear; 4],
    heads: usize,
) -> Option<segvol_kernels::AttentionWeights<'_>> {
    Some(segvol_kernels::AttentionWeights {
        q: ls[0].part()?,
        k: ls[1].part()?,
        v: ls[2].part()?,
        out: ls[3].part()?,
        heads,
    })
}

#[cfg(feature = "fast-cpu")]
fn flex_linear<B: Backend>(l: &Linear<B>) -> Option<FlexLinear> {
    let weight = imp::flex(l.weight.val())?;
    let bias = match &l.bias {
        Some(b) => Some(imp::dense(imp::flex(b.val())?)),
        None => None,
    };
    Some(FlexLinear { weight, bias })
}

/// `linear(x)` (+ `residual`) (then GELU) on the fast path; `None` → use burn's code.
/// `x` is `[.., in]`, flattened to rows.
pub fn linear<B: Backend, const D: usize>(
    layer: &Linear<B>,
    x: &Tensor<B, D>,
    residual: Option<&Tensor<B, D>>,
    gelu: bool,
) -> Option<Tensor<B, D>> {
    #[cfg(feature = "fast-cpu")]
    {
        if !imp::active::<B>() {
            return None;
        }
        let dims = x.dims();
        let l = flex_linear(layer)?;
        let x = imp::dense(imp::flex(x.clone())?);
        let residual = match residual {
            Some(r) => Some(imp::dense(imp::flex(r.clone())?)),
            None => None,
        };
        let din = dims[D - 1];
        let rows = dims[..D - 1].iter().product::<usize>();
        let w = imp::mat(&l.weight)?;
        let out = segvol_kernels::linear(
            segvol_kernels::MatRef::row_major(imp::slice(&x), rows, din).ok()?,
            w,
            l.bias.as_ref().map(imp::slice),
            residual.as_ref().map(imp::slice),
            gelu,
        )
        .ok()?;
        let mut shape = dims;
        shape[D - 1] = w.dims()[1];
        hit(Kernel::Linear, imp::tensor(out, shape))
    }
    #[cfg(not(feature = "fast-cpu"))]
    {
        let _ = (layer, x, residual, gelu);
        None
    }
}

/// `layer.forward(x)`; in training on burn-flex (`Autodiff<Flex>`) one graph node whose
/// backward runs two GEMMs on the tensors in place (`fast/train.rs`), elsewhere burn's
/// `Linear::forward` unchanged (the inference fast paths fuse more and are reached through
/// [`linear`]).
pub fn forward_linear<B: Backend, const D: usize>(
    layer: &Linear<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    #[cfg(feature = "fast-cpu")]
    {
        if train::active::<B>()
            && let Some(y) = hit(Kernel::TrainLinear, train::linear(layer, &x))
        {
            return y;
        }
    }
    layer.forward(x)
}

/// `norm.forward(x)` (`eps` is the layer's, which burn keeps private); in training on
/// burn-flex one graph node with its own backward pass (`fast/train.rs`), elsewhere burn's
/// `LayerNorm::forward` unchanged.
pub fn forward_layer_norm<B: Backend, const D: usize>(
    norm: &LayerNorm<B>,
    eps: f64,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    #[cfg(feature = "fast-cpu")]
    {
        if train::active::<B>()
            && let Some(y) = hit(Kernel::TrainLayerNorm, train::layer_norm(norm, eps, &x))
        {
            return y;
        }
    }
    let _ = eps;
    norm.forward(x)
}

/// `LayerNorm(x)` over the last axis on the fast path (`eps` is the layer's, which burn keeps
/// private); `None` → use burn's code.
pub fn layer_norm<B: Backend, const D: usize>(
    norm: &LayerNorm<B>,
    eps: f64,
    x: &Tensor<B, D>,
) -> Option<Tensor<B, D>> {
    #[cfg(feature = "fast-cpu")]
    {
        if !imp::active::<B>() {
            return None;
        }
        let dims = x.dims();
        let gamma = imp::dense(imp::flex(norm.gamma.val())?);
        let beta = match &norm.beta {
            Some(b) => imp::dense(imp::flex(b.val())?),
            None => return None,
        };
        let x = imp::dense(imp::flex(x.clone())?);
        let out = segvol_kernels::layer_norm(
            imp::slice(&x),
            dims[D - 1],
            imp::slice(&gamma),
            imp::slice(&beta),
            eps as f32,
        )
        .ok()?;
        hit(Kernel::LayerNorm, imp::tensor(out, dims))
    }
    #[cfg(not(feature = "fast-cpu"))]
    {
        let _ = (norm, eps, x);
        None
    }
}

/// MONAI's self-attention core on a fused `qkv` of shape `[b, n, 3c]` (`[q | k | v]`, heads
/// head-major): `[b, n, c]`, heads merged `h·dh + d`. `None` → use burn's code.
pub fn fused_qkv_attention<B: Backend>(qkv: &Tensor<B, 3>, heads: usize) -> Option<Tensor<B, 3>> {
    #[cfg(feature = "fast-cpu")]
    {
        if train::active::<B>() {
            return hit(
                Kernel::TrainAttention,
                train::fused_qkv_attention(qkv, heads),
            );
        }
        if !imp::active::<B>() {
            return None;
        }
        let [b, n, c3] = qkv.dims();
        let c = c3 / 3;
        if heads == 0 || c % heads != 0 || c3 != 3 * c {
            return None;
        }
        let dh = c / heads;
        let qkv = imp::dense(imp::flex(qkv.clone())?);
        let data = imp::slice(&qkv);
        let mut out = Vec::new();
        for bi in 0..b {
            let part = &data[bi * n * c3..(bi + 1) * n * c3];
            let h = |offset| segvol_kernels::Heads {
                data: part,
                rows: n,
                row_stride: c3,
                offset,
                heads,
                dim: dh,
            };
            let scale = (dh as f32).powf(-0.5);
            imp::append(
                &mut out,
                segvol_kernels::attention(h(0), h(c), h(2 * c), scale).ok()?,
            );
        }
        hit(Kernel::QkvAttention, imp::tensor(out, [b, n, c]))
    }
    #[cfg(not(feature = "fast-cpu"))]
    {
        let _ = (qkv, heads);
        None
    }
}

/// Attention over separate q `[b, nq, heads·d]`, k `[b, nk, heads·d]`, v `[b, nk, heads·dv]`:
/// `[b, nq, heads·dv]` (SAM's decoder attention after its projections). `None` → burn's code.
pub fn attention<B: Backend>(
    q: &Tensor<B, 3>,
    k: &Tensor<B, 3>,
    v: &Tensor<B, 3>,
    heads: usize,
) -> Option<Tensor<B, 3>> {
    #[cfg(feature = "fast-cpu")]
    {
        if train::active::<B>() {
            return hit(Kernel::TrainAttention, train::attention(q, k, v, heads));
        }
        if !imp::active::<B>() {
            return None;
        }
        let [b, nq, cq] = q.dims();
        let [_, nk, cv] = v.dims();
        if heads == 0 || cq % heads != 0 || cv % heads != 0 || k.dims() != [b, nk, cq] {
            return None;
        }
        let (d, dv) = (cq / heads, cv / heads);
        let [q, k, v] = imp::dense3([q, k, v])?;
        let (qs, ks, vs) = (imp::slice(&q), imp::slice(&k), imp::slice(&v));
        let mut out = Vec::new();
        for bi in 0..b {
            let hq = segvol_kernels::Heads {
                data: &qs[bi * nq * cq..(bi + 1) * nq * cq],
                rows: nq,
                row_stride: cq,
                offset: 0,
                heads,
                dim: d,
            };
            let hk = segvol_kernels::Heads {
                data: &ks[bi * nk * cq..(bi + 1) * nk * cq],
                rows: nk,
                ..hq
            };
            let hv = segvol_kernels::Heads {
                data: &vs[bi * nk * cv..(bi + 1) * nk * cv],
                rows: nk,
                row_stride: cv,
                offset: 0,
                heads,
                dim: dv,
            };
            imp::append(
                &mut out,
                segvol_kernels::attention(hq, hk, hv, (d as f32).powf(-0.5)).ok()?,
            );
        }
        hit(Kernel::Attention, imp::tensor(out, [b, nq, cv]))
    }
    #[cfg(not(feature = "fast-cpu"))]
    {
        let _ = (q, k, v, heads);
        None
    }
}

/// SAM's attention layer, `out(attention(q_proj(q), k_proj(k), v_proj(v)))` with `heads`
/// heads, on the fast path: `q` `[b, nq, c]`, `k`, `v` `[b, nk, c]`. Where one side has few
/// tokens (the mask decoder's prompt tokens against the image) the projections of the other
/// side are folded into the attention (`segvol_kernels::attention_layer`: the same function,
/// several times fewer multiply-adds). `None` → burn's code.
pub fn attention_layer<B: Backend>(
    weights: [&Linear<B>; 4],
    heads: usize,
    q: &Tensor<B, 3>,
    k: &Tensor<B, 3>,
    v: &Tensor<B, 3>,
) -> Option<Tensor<B, 3>> {
    attention_layer_residual(weights, heads, q, k, v, None)
}

/// [`attention_layer`] plus `residual` (`[b, nq, c_out]`): `residual + attention(q, k, v)`,
/// the residual added as the output is made (`segvol_kernels::attention_layer_residual`).
pub fn attention_layer_residual<B: Backend>(
    [wq, wk, wv, wo]: [&Linear<B>; 4],
    heads: usize,
    q: &Tensor<B, 3>,
    k: &Tensor<B, 3>,
    v: &Tensor<B, 3>,
    residual: Option<&Tensor<B, 3>>,
) -> Option<Tensor<B, 3>> {
    #[cfg(feature = "fast-cpu")]
    {
        use segvol_kernels::{AttentionPlan, MatRef};
        if !imp::active::<B>() {
            return None;
        }
        let [b, nq, cq] = q.dims();
        let [_, nk, ck] = k.dims();
        if v.dims() != [b, nk, ck] || k.dims()[0] != b {
            return None;
        }
        let ls = flex_linears([wq, wk, wv, wo])?;
        /// Sample `bi`'s `[n, c]` rows.
        fn rows(s: &[f32], bi: usize, n: usize, c: usize) -> Option<MatRef<'_>> {
            MatRef::row_major(s.get(bi * n * c..(bi + 1) * n * c)?, n, c).ok()
        }
        let w = attention_weights(&ls, heads)?;
        let inner = w.q.0.dims()[1];
        let c_out = w.out.0.dims()[1];
        // `SEGVOL_UNFOLDED_ATTENTION=1`: always the direct plan, for before/after timings.
        static UNFOLDED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let plan =
            if *UNFOLDED.get_or_init(|| std::env::var_os("SEGVOL_UNFOLDED_ATTENTION").is_some()) {
                AttentionPlan::Direct
            } else {
                segvol_kernels::plan_attention_layer(nq, nk, cq, ck, inner, c_out, heads)
            };
        let [q, k, v] = imp::dense3([q, k, v])?;
        let (qs, ks, vs) = (imp::slice(&q), imp::slice(&k), imp::slice(&v));
        let res = match residual {
            Some(r) if r.dims() == [b, nq, c_out] => Some(imp::dense(imp::flex(r.clone())?)),
            Some(_) => return None,
            None => None,
        };
        let per = nq * c_out;
        let mut out = Vec::new();
        for bi in 0..b {
            let r = match &res {
                Some(r) => Some(imp::slice(r).get(bi * per..(bi + 1) * per)?),
                None => None,
            };
            imp::append(
                &mut out,
                segvol_kernels::attention_layer_residual(
                    rows(qs, bi, nq, cq)?,
                    rows(ks, bi, nk, ck)?,
                    rows(vs, bi, nk, ck)?,
                    &w,
                    plan,
                    r,
                )
                .ok()?,
            );
        }
        let y = hit(Kernel::AttentionLayer, imp::tensor(out, [b, nq, c_out]))?;
        if plan != AttentionPlan::Direct {
            HITS[Kernel::FoldedAttention as usize].fetch_add(1, Ordering::Relaxed);
        }
        Some(y)
    }
    #[cfg(not(feature = "fast-cpu"))]
    {
        let _ = (wq, wk, wv, wo, heads, q, k, v, residual);
        None
    }
}

/// `ConvTranspose3d(k = 2, s = 2)` (+ GELU) on the fast path: `x` `[b, cin, d, h, w]`, `weight`
/// `[cin, cout, 2, 2, 2]`, `bias` `[cout]`. `None` → burn's code.
pub fn conv_transpose_k2s2<B: Backend>(
    x: &Tensor<B, 5>,
    weight: &Tensor<B, 5>,
    bias: &Tensor<B, 1>,
    gelu: bool,
) -> Option<Tensor<B, 5>> {
    #[cfg(feature = "fast-cpu")]
    {
        if train::active::<B>() {
            // In training GELU is its own graph node (the caller falls back to it).
            return if gelu {
                None
            } else {
                hit(
                    Kernel::ConvTranspose,
                    train::conv_transpose_k2s2(x, weight, bias),
                )
            };
        }
        if !imp::active::<B>() {
            return None;
        }
        let [b, _, d, h, w] = x.dims();
        let cout = weight.dims()[1];
        let out = imp::per_sample_k2s2(x, weight, bias, |xs, dims, wt, bs, _| {
            segvol_kernels::conv_transpose_k2s2(xs, dims, wt, bs, gelu)
        })?;
        hit(
            Kernel::ConvTranspose,
            imp::tensor(out, [b, cout, 2 * d, 2 * h, 2 * w]),
        )
    }
    #[cfg(not(feature = "fast-cpu"))]
    {
        let _ = (x, weight, bias, gelu);
        None
    }
}

/// `head · GELU(ConvTranspose3d(k = 2, s = 2)(x))` per voxel on the fast path, the upscaled
/// tensor never made: `x` `[b, cin, d, h, w]`, `weight` `[cin, cout, 2, 2, 2]`, `bias`
/// `[cout]`, `head` `[b, cout]`; returns `[b, 1, 2d, 2h, 2w]`. `None` → burn's code.
pub fn conv_transpose_k2s2_gelu_dot<B: Backend>(
    x: &Tensor<B, 5>,
    weight: &Tensor<B, 5>,
    bias: &Tensor<B, 1>,
    head: &Tensor<B, 2>,
) -> Option<Tensor<B, 5>> {
    #[cfg(feature = "fast-cpu")]
    {
        if !imp::active::<B>() {
            return None;
        }
        let [b, _, d, h, w] = x.dims();
        let cout = weight.dims()[1];
        if head.dims() != [b, cout] {
            return None;
        }
        let hd = imp::dense(imp::flex(head.clone())?);
        let hs = imp::slice(&hd);
        let out = imp::per_sample_k2s2(x, weight, bias, |xs, dims, wt, bs, bi| {
            segvol_kernels::conv_transpose_k2s2_gelu_dot(
                xs,
                dims,
                wt,
                bs,
                &hs[bi * cout..(bi + 1) * cout],
            )
        })?;
        hit(
            Kernel::ConvTransposeGeluDot,
            imp::tensor(out, [b, 1, 2 * d, 2 * h, 2 * w]),
        )
    }
    #[cfg(not(feature = "fast-cpu"))]
    {
        let _ = (x, weight, bias, head);
        None
    }
}

/// The names [`upscale_dot`] and the decoder's stage-by-stage code mark their first two
/// upscaling stages with (`segvol bench --decode-ops` sums time by name).
pub(crate) const UPSCALE_STAGES: [&str; 2] = ["ConvTranspose3d 1", "LayerNorm(C,D,H,W) + GELU"];

/// The weights of the mask decoder's output upscaling, as [`upscale_dot`] takes them.
#[derive(Debug)]
pub struct UpscaleWeights<'a, B: Backend> {
    /// The first ConvTranspose3d: weight `[cin, c1, 2, 2, 2]` and bias `[c1]`.
    pub conv1: (&'a Tensor<B, 5>, &'a Tensor<B, 1>),
    /// The whole-sample LayerNorm's weight and bias, `[c1, 2d, 2h, 2w]` each.
    pub norm: (&'a Tensor<B, 4>, &'a Tensor<B, 4>),
    /// The LayerNorm's epsilon.
    pub eps: f64,
    /// The second ConvTranspose3d: weight `[c1, c2, 2, 2, 2]` and bias `[c2]`.
    pub conv2: (&'a Tensor<B, 5>, &'a Tensor<B, 1>),
}

impl<B: Backend> Clone for UpscaleWeights<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: Backend> Copy for UpscaleWeights<'_, B> {}

/// The mask decoder's output upscaling reduced to the mask on the fast path
/// (`segvol_kernels::upscale_dot`): `head · GELU(conv2(GELU(norm(conv1(x)))))` per voxel, `x`
/// the transformer's image tokens `keys` `[1, d·h·w, c]` on the token grid `grid`, `head`
/// `[1, c2]`. Returns `[1, 1, 4d, 4h, 4w]`
/// and calls `mark` with the names of the first two stages as they end. Batch 1 only; `None`
/// → the caller's stage-by-stage code (other backends, other shapes).
pub fn upscale_dot<B: Backend>(
    keys: &Tensor<B, 3>,
    grid: [usize; 3],
    weights: &UpscaleWeights<'_, B>,
    head: &Tensor<B, 2>,
    mark: &mut dyn FnMut(&'static str),
) -> Option<Tensor<B, 5>> {
    #[cfg(feature = "fast-cpu")]
    {
        if !imp::active::<B>() {
            return None;
        }
        let [b, n, _] = keys.dims();
        let [d, h, w] = grid;
        if b != 1 || n != d * h * w {
            return None;
        }
        let x = imp::dense(imp::flex(keys.clone())?);
        upscale_dot_from(
            Conv1Input::Tokens(imp::slice(&x)),
            grid,
            weights,
            head,
            mark,
        )
    }
    #[cfg(not(feature = "fast-cpu"))]
    {
        let _ = (keys, grid, weights, head, mark);
        None
    }
}

/// What [`upscale_dot_from`] starts from.
#[cfg(feature = "fast-cpu")]
enum Conv1Input<'a> {
    /// The transformer's image tokens `[d·h·w, c]`.
    Tokens(&'a [f32]),
    /// The first convolution's product without its bias (`low_rank`).
    Product(Vec<f32>),
}

/// [`upscale_dot`] from tokens or from the first convolution's product.
#[cfg(feature = "fast-cpu")]
fn upscale_dot_from<B: Backend>(
    input: Conv1Input<'_>,
    grid: [usize; 3],
    weights: &UpscaleWeights<'_, B>,
    head: &Tensor<B, 2>,
    mark: &mut dyn FnMut(&'static str),
) -> Option<Tensor<B, 5>> {
    let [d, h, w] = grid;
    let UpscaleWeights {
        conv1,
        norm,
        eps,
        conv2,
    } = *weights;
    let k2 = |t: &Tensor<B, 5>| {
        let [_, _, a, b, c] = t.dims();
        [a, b, c] == [2, 2, 2]
    };
    if !k2(conv1.0) || !k2(conv2.0) || head.dims()[0] != 1 {
        return None;
    }
    let [w1, w2] = [conv1.0, conv2.0].map(|t| imp::flex(t.clone()).map(imp::dense));
    let [b1, b2] = [conv1.1, conv2.1].map(|t| imp::flex(t.clone()).map(imp::dense));
    let [g, be] = [norm.0, norm.1].map(|t| imp::flex(t.clone()).map(imp::dense));
    let hd = imp::dense(imp::flex(head.clone())?);
    let (w1, b1, w2, b2, g, be) = (w1?, b1?, w2?, b2?, g?, be?);
    let weights = segvol_kernels::Upscaling {
        conv1: (imp::slice(&w1), imp::slice(&b1)),
        norm: (imp::slice(&g), imp::slice(&be)),
        eps: eps as f32,
        conv2: (imp::slice(&w2), imp::slice(&b2)),
    };
    let names = UPSCALE_STAGES;
    let mut stage = 0;
    let mut stage_done = || {
        if let Some(name) = names.get(stage) {
            mark(name);
        }
        stage += 1;
    };
    let out = match input {
        Conv1Input::Tokens(x) => {
            segvol_kernels::upscale_dot(x, grid, weights, imp::slice(&hd), &mut stage_done)
        }
        Conv1Input::Product(y) => segvol_kernels::upscale_dot_from_conv1(
            y,
            grid,
            weights,
            imp::slice(&hd),
            &mut stage_done,
        ),
    }
    .ok()?;
    hit(
        Kernel::UpscaleDot,
        imp::tensor(out, [1, 1, 4 * d, 4 * h, 4 * w]),
    )
}

/// SegVol's whole-sample LayerNorm (+ GELU) on the fast path: `x` `[b, c, d, h, w]`, `weight`
/// and `bias` `[c, d, h, w]`. `None` → burn's code.
pub fn full_layer_norm<B: Backend>(
    x: &Tensor<B, 5>,
    weight: &Tensor<B, 4>,
    bias: &Tensor<B, 4>,
    eps: f64,
    gelu: bool,
) -> Option<Tensor<B, 5>> {
    #[cfg(feature = "fast-cpu")]
    {
        if !imp::active::<B>() {
            return None;
        }
        let dims = x.dims();
        let per: usize = dims[1..].iter().product();
        if weight.dims().iter().product::<usize>() != per {
            return None;
        }
        let x = imp::dense(imp::flex(x.clone())?);
        let wt = imp::dense(imp::flex(weight.clone())?);
        let bs = imp::dense(imp::flex(bias.clone())?);
        let xs = imp::slice(&x);
        let mut out = Vec::new();
        for bi in 0..dims[0] {
            imp::append(
                &mut out,
                segvol_kernels::full_layer_norm(
                    &xs[bi * per..(bi + 1) * per],
                    imp::slice(&wt),
                    imp::slice(&bs),
                    eps as f32,
                    gelu,
                )
                .ok()?,
            );
        }
        hit(Kernel::FullLayerNorm, imp::tensor(out, dims))
    }
    #[cfg(not(feature = "fast-cpu"))]
    {
        let _ = (x, weight, bias, eps, gelu);
        None
    }
}

/// Exact GELU as one graph node with its own backward pass, on `Autodiff<Flex>` (training; the
/// inference paths fuse GELU into the kernel before it). `None` → burn's `gelu`.
pub fn gelu<B: Backend, const D: usize>(x: &Tensor<B, D>) -> Option<Tensor<B, D>> {
    #[cfg(feature = "fast-cpu")]
    {
        if !train::active::<B>() {
            return None;
        }
        hit(Kernel::TrainGelu, train::gelu(x))
    }
    #[cfg(not(feature = "fast-cpu"))]
    {
        let _ = x;
        None
    }
}

/// `t` with its elements laid out row-major (a strided view copied once; in training on
/// `Autodiff<Flex>` as a graph node that passes the gradient through); `None` → leave it to
/// burn (other backends, or already contiguous).
pub fn contiguous<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Option<Tensor<B, D>> {
    #[cfg(feature = "fast-cpu")]
    {
        if train::active::<B>() {
            return hit(Kernel::Contiguous, train::contiguous(t));
        }
        if !imp::active::<B>() {
            return None;
        }
        let f = imp::flex(t.clone())?;
        if f.is_contiguous() && f.layout().start_offset() == 0 {
            return None;
        }
        // The dense copy becomes the tensor itself (same shape, row-major), not copied again.
        hit(Kernel::Contiguous, imp::from_flex(imp::dense(f)))
    }
    #[cfg(not(feature = "fast-cpu"))]
    {
        let _ = t;
        None
    }
}
