//! The fast kernels in training: autodiff operations on `Autodiff<Flex>` (burn's
//! `burn_autodiff::ops::Backward`, each with a hand-written backward pass from
//! `segvol_kernels`), for attention, GELU, the hot linear layers, LayerNorm, the decoder's
//! transposed convolutions and its strided views' copies.
//!
//! On `Autodiff<Flex>` burn runs its generic operations and records each in the graph: a
//! ViT block's attention is a transpose, two matmuls, a scale and a softmax made of `exp`, sum
//! and division nodes, whose backward passes call the scalar libm `expf` again; GELU's backward
//! two scalar libm calls per element. A profile of `segvol bench --train` (the `small` preset)
//! put a third of a step there. Here attention is one graph node (forward: the inference
//! kernel, keeping its probabilities when they are small enough; backward:
//! [`segvol_kernels::attention_backward_with_probs`], or [`segvol_kernels::attention_backward`]
//! with softmax recomputed, GEMMs and the vectorised `exp`), and GELU one node (vectorised
//! `erf`/`exp` both ways).
//!
//! Reached like the inference paths of the parent module: only when `B` *is*
//! `Autodiff<Flex>` (default checkpointing) by `TypeId`, the tensors moved across by
//! `Any::downcast`; every other backend gets `None`. Gradients are checked against burn's
//! generic operations in `tests/fast_paths.rs`.

use std::any::{Any, TypeId};
use std::sync::OnceLock;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::{DType, Shape, Tensor, TensorData, TensorPrimitive, backend::Backend};
use burn_flex::{Flex, FlexTensor};
use segvol_kernels::Heads;

use super::imp::{dense, slice};

/// The training backend these operations serve (`NoCheckpointing`, as `segvol train` runs).
type Ad = Autodiff<Flex>;

/// Whether `B` is `Autodiff<Flex>` and the fast paths are on.
pub(super) fn active<B: Backend>() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    TypeId::of::<B>() == TypeId::of::<Ad>() && *ON.get_or_init(super::enabled)
}

/// `t` as the `Autodiff<Flex>` tensor it is (`None` for any other backend).
fn to_ad<B: Backend, const D: usize>(t: Tensor<B, D>) -> Option<Tensor<Ad, D>> {
    if !active::<B>() {
        return None;
    }
    let any: Box<dyn Any> = Box::new(t);
    any.downcast::<Tensor<Ad, D>>().ok().map(|t| *t)
}

/// An `Autodiff<Flex>` tensor back as `Tensor<B, D>` (B is `Autodiff<Flex>`).
fn from_ad<B: Backend, const D: usize>(t: Tensor<Ad, D>) -> Option<Tensor<B, D>> {
    let any: Box<dyn Any> = Box::new(t);
    any.downcast::<Tensor<B, D>>().ok().map(|t| *t)
}

/// The autodiff primitive of a float tensor (its node and its f32 `FlexTensor`), or `None`
/// (quantised, or not f32).
fn primitive<const D: usize>(t: Tensor<Ad, D>) -> Option<AdPrimitive> {
    match t.into_primitive() {
        TensorPrimitive::Float(p) => (p.primitive.dtype() == DType::F32).then_some(p),
        TensorPrimitive::QFloat(_) => None,
    }
}

/// An autodiff tensor of `Autodiff<Flex>`, as burn-autodiff hands it out (its type sits in a
/// private module; this is its public name).
type AdPrimitive = <Ad as burn::tensor::backend::BackendTypes>::FloatTensorPrimitive;

/// `out`, computed from `parents`, as the output of graph node `op` (whose backward pass gets
/// `state`) when a parent is tracked, as an untracked tensor otherwise; returned as
/// `Tensor<B, D>`.
fn record<B: Backend, T: Backward<Flex, N>, const N: usize, const D: usize>(
    op: T,
    parents: [&AdPrimitive; N],
    state: T::State,
    out: FlexTensor,
) -> Option<Tensor<B, D>> {
    let nodes = parents.map(|p| p.node.clone());
    let out = match op
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    from_ad(Tensor::from_primitive(TensorPrimitive::Float(out)))
}

fn flex(data: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

/// The most an attention node keeps of its probabilities for the backward pass (all samples of
/// the call): 64 MiB. Above it the backward pass computes them again.
const KEEP_PROBS_BYTES: usize = 64 << 20;

/// Each sample's attention probabilities `[heads, nq, nk]`, as the forward pass kept them.
type KeptProbs = Vec<Vec<f32>>;

/// Shapes of one attention call: batch, query rows, key rows, heads, q/k and v features per
/// head, and how q, k and v lie in their buffers.
#[derive(Debug, Clone, Copy)]
struct AttnDims {
    batch: usize,
    nq: usize,
    nk: usize,
    heads: usize,
    dim: usize,
    dv: usize,
    /// q, k and v are one `[b, n, 3c]` buffer (the ViT's fused projection).
    fused: bool,
}

impl AttnDims {
    fn scale(&self) -> f32 {
        (self.dim as f32).powf(-0.5)
    }

    /// Sample `bi`'s q, k and v as head views: from the one fused buffer, or from three.
    fn views<'a>(&self, bufs: &[&'a [f32]], bi: usize) -> (Heads<'a>, Heads<'a>, Heads<'a>) {
        let (c, cv) = (self.heads * self.dim, self.heads * self.dv);
        let h = |data: &'a [f32], rows, row_stride, offset, dim| Heads {
            data,
            rows,
            row_stride,
            offset,
            heads: self.heads,
            dim,
        };
        if self.fused {
            let per = self.nq * 3 * c;
            let d = &bufs[0][bi * per..(bi + 1) * per];
            (
                h(d, self.nq, 3 * c, 0, self.dim),
                h(d, self.nq, 3 * c, c, self.dim),
                h(d, self.nq, 3 * c, 2 * c, self.dim),
            )
        } else {
            let (pq, pk, pv) = (self.nq * c, self.nk * c, self.nk * cv);
            (
                h(&bufs[0][bi * pq..(bi + 1) * pq], self.nq, c, 0, self.dim),
                h(&bufs[1][bi * pk..(bi + 1) * pk], self.nk, c, 0, self.dim),
                h(&bufs[2][bi * pv..(bi + 1) * pv], self.nk, cv, 0, self.dv),
            )
        }
    }

    /// Whether the forward pass keeps the probabilities for the backward pass: when they take
    /// at most [`KEEP_PROBS_BYTES`] (the `small` model's encoder layer: 6.3 MB per sample;
    /// SegVol-base's: 201 MB, recomputed instead).
    fn keeps_probs(&self) -> bool {
        self.batch
            .saturating_mul(self.heads)
            .saturating_mul(self.nq)
            .saturating_mul(self.nk)
            .saturating_mul(4)
            <= KEEP_PROBS_BYTES
    }

    /// The output, and each sample's probabilities when [`Self::keeps_probs`].
    fn forward(&self, bufs: &[&[f32]]) -> Option<(Vec<f32>, Option<KeptProbs>)> {
        let mut out = Vec::with_capacity(self.batch * self.nq * self.heads * self.dv);
        let keep = self.keeps_probs();
        let mut probs = Vec::new();
        for bi in 0..self.batch {
            let (q, k, v) = self.views(bufs, bi);
            if keep {
                let (o, p) = segvol_kernels::attention_with_probs(q, k, v, self.scale()).ok()?;
                out.extend(o);
                probs.push(p);
            } else {
                out.extend(segvol_kernels::attention(q, k, v, self.scale()).ok()?);
            }
        }
        Some((out, keep.then_some(probs)))
    }

    /// The gradients of q, k and v (three buffers), or of the fused qkv (one); `probs` as the
    /// forward pass kept them (or `None`: recomputed).
    fn backward(&self, bufs: &[&[f32]], probs: Option<&[Vec<f32>]>, grad: &[f32]) -> Vec<Vec<f32>> {
        let (c, cv) = (self.heads * self.dim, self.heads * self.dv);
        let per_out = self.nq * cv;
        let mut parts: Vec<Vec<f32>> = if self.fused {
            vec![Vec::with_capacity(self.batch * self.nq * 3 * c)]
        } else {
            vec![Vec::new(), Vec::new(), Vec::new()]
        };
        for bi in 0..self.batch {
            let (q, k, v) = self.views(bufs, bi);
            let d_out = &grad[bi * per_out..(bi + 1) * per_out];
            let (gq, gk, gv) = match probs.and_then(|p| p.get(bi)) {
                Some(p) => {
                    segvol_kernels::attention_backward_with_probs(q, k, v, p, d_out, self.scale())
                }
                None => segvol_kernels::attention_backward(q, k, v, d_out, self.scale()),
            }
            .expect("attention backward: shapes were checked by the forward pass");
            if self.fused {
                for ((rq, rk), rv) in gq
                    .chunks_exact(c)
                    .zip(gk.chunks_exact(c))
                    .zip(gv.chunks_exact(c))
                {
                    parts[0].extend_from_slice(rq);
                    parts[0].extend_from_slice(rk);
                    parts[0].extend_from_slice(rv);
                }
            } else {
                parts[0].extend(gq);
                parts[1].extend(gk);
                parts[2].extend(gv);
            }
        }
        parts
    }
}

/// Attention's graph node; its state: the dense inputs and their shapes.
#[derive(Debug)]
struct AttentionNode;

/// What attention's backward needs: q, k, v (or the fused qkv) dense, the shapes, and each
/// sample's probabilities when the forward pass kept them.
#[derive(Debug, Clone)]
struct AttnState {
    inputs: Vec<FlexTensor>,
    dims: AttnDims,
    probs: Option<KeptProbs>,
}

impl AttnState {
    fn grads(&self, grad: FlexTensor) -> Vec<FlexTensor> {
        let grad = dense(grad);
        let bufs: Vec<&[f32]> = self.inputs.iter().map(slice).collect();
        let parts = self
            .dims
            .backward(&bufs, self.probs.as_deref(), slice(&grad));
        parts
            .into_iter()
            .zip(&self.inputs)
            .map(|(g, t)| flex(g, t.layout().shape().clone()))
            .collect()
    }
}

impl Backward<Flex, 3> for AttentionNode {
    type State = AttnState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        for (parent, g) in ops.parents.iter().zip(ops.state.grads(grad)) {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, g);
            }
        }
    }
}

/// The fused-qkv attention's graph node (one parent).
#[derive(Debug)]
struct QkvAttentionNode;

impl Backward<Flex, 1> for QkvAttentionNode {
    type State = AttnState;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        if let (Some(node), Some(g)) = (&ops.parents[0], ops.state.grads(grad).pop()) {
            grads.register::<Flex>(node.id, g);
        }
    }
}

/// [`super::attention`] on `Autodiff<Flex>`: q `[b, nq, heads·d]`, k `[b, nk, heads·d]`, v
/// `[b, nk, heads·dv]` → `[b, nq, heads·dv]`, one graph node. `None` on other backends.
pub(super) fn attention<B: Backend>(
    q: &Tensor<B, 3>,
    k: &Tensor<B, 3>,
    v: &Tensor<B, 3>,
    heads: usize,
) -> Option<Tensor<B, 3>> {
    let [b, nq, cq] = q.dims();
    let [_, nk, cv] = v.dims();
    if heads == 0 || cq % heads != 0 || cv % heads != 0 || k.dims() != [b, nk, cq] {
        return None;
    }
    let dims = AttnDims {
        batch: b,
        nq,
        nk,
        heads,
        dim: cq / heads,
        dv: cv / heads,
        fused: false,
    };
    let (q, k, v) = (
        primitive(to_ad(q.clone())?)?,
        primitive(to_ad(k.clone())?)?,
        primitive(to_ad(v.clone())?)?,
    );
    let inputs = [&q, &k, &v].map(|t| dense(t.primitive.clone()));
    let bufs: Vec<&[f32]> = inputs.iter().map(slice).collect();
    let (out, probs) = dims.forward(&bufs)?;
    let out = flex(out, [b, nq, cv]);
    let state = AttnState {
        inputs: inputs.to_vec(),
        dims,
        probs,
    };
    record(AttentionNode, [&q, &k, &v], state, out)
}

/// [`super::fused_qkv_attention`] on `Autodiff<Flex>`: qkv `[b, n, 3c]` → `[b, n, c]`, one
/// graph node. `None` on other backends.
pub(super) fn fused_qkv_attention<B: Backend>(
    qkv: &Tensor<B, 3>,
    heads: usize,
) -> Option<Tensor<B, 3>> {
    let [b, n, c3] = qkv.dims();
    let c = c3 / 3;
    if heads == 0 || c % heads != 0 || c3 != 3 * c {
        return None;
    }
    let dims = AttnDims {
        batch: b,
        nq: n,
        nk: n,
        heads,
        dim: c / heads,
        dv: c / heads,
        fused: true,
    };
    let qkv = primitive(to_ad(qkv.clone())?)?;
    let input = dense(qkv.primitive.clone());
    let (out, probs) = dims.forward(&[slice(&input)])?;
    let out = flex(out, [b, n, c]);
    let state = AttnState {
        inputs: vec![input],
        dims,
        probs,
    };
    record(QkvAttentionNode, [&qkv], state, out)
}

/// A strided view copied row-major, as a graph node whose backward pass hands the gradient
/// through unchanged (same shape; the copy is the identity on values).
#[derive(Debug)]
struct ContiguousNode;

impl Backward<Flex, 1> for ContiguousNode {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        if let Some(node) = &ops.parents[0] {
            grads.register::<Flex>(node.id, grad);
        }
    }
}

/// [`super::contiguous`] on `Autodiff<Flex>`: the mask decoder's token-major keys and
/// positional encodings (`swap_dims` views) copied once, so that the transformer's adds and
/// their backward passes do not walk them strided (burn-flex's `StridedIter`: 3 % of a
/// training step's CPU in a profile). `None` when `t` is already dense or on other backends.
pub(super) fn contiguous<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Option<Tensor<B, D>> {
    let p = primitive(to_ad(t.clone())?)?;
    if p.primitive.is_contiguous() && p.primitive.layout().start_offset() == 0 {
        return None;
    }
    let out = dense(p.primitive.clone());
    record(ContiguousNode, [&p], (), out)
}

/// `ConvTranspose3d(k = 2, s = 2)`'s graph node (parents: input, weight, bias).
#[derive(Debug)]
struct ConvTransposeNode;

/// What its backward pass needs: the input and the weight, dense, and the input's shape.
#[derive(Debug, Clone)]
struct ConvTransposeState {
    x: FlexTensor,
    weight: FlexTensor,
    dims: [usize; 5],
}

impl Backward<Flex, 3> for ConvTransposeNode {
    type State = ConvTransposeState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = dense(grads.consume::<Flex>(&ops.node));
        let ConvTransposeState { x, weight, dims } = ops.state;
        let [b, cin, d, h, w] = dims;
        let per_in = cin * d * h * w;
        let (xs, ws, gs) = (slice(&x), slice(&weight), slice(&grad));
        let per_out = gs.len() / b.max(1);
        let cout = ws.len() / (cin * 8).max(1);
        let mut dx = Vec::with_capacity(b * per_in);
        let mut dw = vec![0.0f32; ws.len()];
        let mut db = vec![0.0f32; cout];
        for bi in 0..b {
            let (gx, gw, gb) = segvol_kernels::conv_transpose_k2s2_backward(
                &xs[bi * per_in..(bi + 1) * per_in],
                [cin, d, h, w],
                ws,
                &gs[bi * per_out..(bi + 1) * per_out],
            )
            .expect("conv_transpose backward: shapes were checked by the forward pass");
            dx.extend(gx);
            for (a, v) in dw.iter_mut().zip(gw) {
                *a += v;
            }
            for (a, v) in db.iter_mut().zip(gb) {
                *a += v;
            }
        }
        let wshape = weight.layout().shape().clone();
        let parts = [
            flex(dx, [b, cin, d, h, w]),
            flex(dw, wshape),
            flex(db, [cout]),
        ];
        for (parent, g) in ops.parents.iter().zip(parts) {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, g);
            }
        }
    }
}

/// [`super::conv_transpose_k2s2`] (no GELU) on `Autodiff<Flex>`: `x` `[b, cin, d, h, w]`,
/// `weight` `[cin, cout, 2, 2, 2]`, `bias` `[cout]` → `[b, cout, 2d, 2h, 2w]`, one graph node
/// (forward: the inference kernel, one GEMM per sample; backward:
/// [`segvol_kernels::conv_transpose_k2s2_backward`], two GEMMs), instead of burn's generic
/// transposed convolution and its backward pass through `conv3d` (11 % of a `small`
/// training step's CPU in a profile). `None` on other backends.
pub(super) fn conv_transpose_k2s2<B: Backend>(
    x: &Tensor<B, 5>,
    weight: &Tensor<B, 5>,
    bias: &Tensor<B, 1>,
) -> Option<Tensor<B, 5>> {
    let dims = x.dims();
    let [b, cin, d, h, w] = dims;
    let [wc, cout, k1, k2, k3] = weight.dims();
    if wc != cin || [k1, k2, k3] != [2, 2, 2] || bias.dims() != [cout] {
        return None;
    }
    let (xp, wp, bp) = (
        primitive(to_ad(x.clone())?)?,
        primitive(to_ad(weight.clone())?)?,
        primitive(to_ad(bias.clone())?)?,
    );
    let (xd, wd, bd) = (
        dense(xp.primitive.clone()),
        dense(wp.primitive.clone()),
        dense(bp.primitive.clone()),
    );
    let out = super::imp::k2s2_samples(
        slice(&xd),
        dims,
        slice(&wd),
        slice(&bd),
        |xs, dims, wt, bs, _| segvol_kernels::conv_transpose_k2s2(xs, dims, wt, bs, false),
    )?;
    let out = flex(out, [b, cout, 2 * d, 2 * h, 2 * w]);
    let state = ConvTransposeState {
        x: xd,
        weight: wd,
        dims,
    };
    record(ConvTransposeNode, [&xp, &wp, &bp], state, out)
}

/// GELU's graph node; its state: the input, dense.
#[derive(Debug)]
struct GeluNode;

impl Backward<Flex, 1> for GeluNode {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let mut grad = dense(grads.consume::<Flex>(&ops.node));
        if let Some(node) = &ops.parents[0] {
            let n = grad.layout().shape().num_elements();
            // In place: `storage_mut` copies the buffer only when another tensor shares it (the
            // usual gradient, made by the next layer's backward pass, is this node's alone).
            let g = &mut grad.storage_mut::<f32>()[..n];
            segvol_kernels::gelu_backward_in_place(slice(&ops.state), g)
                .expect("gelu backward: the gradient has its input's shape");
            grads.register::<Flex>(node.id, grad);
        }
    }
}

/// Exact GELU on `Autodiff<Flex>`, one graph node. `None` on other backends.
pub(super) fn gelu<B: Backend, const D: usize>(x: &Tensor<B, D>) -> Option<Tensor<B, D>> {
    let x = primitive(to_ad(x.clone())?)?;
    let input = dense(x.primitive.clone());
    let shape = input.layout().shape().clone();
    let out = flex(segvol_kernels::gelu_copy(slice(&input)), shape);
    record(GeluNode, [&x], input, out)
}

/// What a linear layer's backward needs: the input rows and the weight, dense, their shapes.
#[derive(Debug, Clone)]
struct LinearState {
    x: FlexTensor,
    weight: FlexTensor,
    rows: usize,
    din: usize,
    dout: usize,
}

impl LinearState {
    /// `dx = g·Wᵀ`, `dW = xᵀ·g`, `db = Σ_rows g`, each only when asked.
    fn grads(&self, grad: FlexTensor, want: [bool; 3]) -> [Option<FlexTensor>; 3] {
        use segvol_kernels::{MatRef, auto_threads, product};
        let grad = dense(grad);
        let (rows, din, dout) = (self.rows, self.din, self.dout);
        let g = MatRef::row_major(slice(&grad), rows, dout)
            .expect("linear backward: the gradient has the output's shape");
        let w = MatRef::row_major(slice(&self.weight), din, dout)
            .expect("linear backward: the weight is [in, out]");
        let x =
            MatRef::row_major(slice(&self.x), rows, din).expect("linear backward: the input rows");
        let mut out = [None, None, None];
        if want[0] {
            let dx = product(g, w.t(), 1.0, auto_threads(rows, din, dout))
                .expect("linear backward: dx shapes");
            out[0] = Some(flex(dx, self.x.layout().shape().clone()));
        }
        if want[1] {
            let dw = product(x.t(), g, 1.0, auto_threads(din, dout, rows))
                .expect("linear backward: dW shapes");
            out[1] = Some(flex(dw, [din, dout]));
        }
        if want[2] {
            let mut db = vec![0.0f32; dout];
            for row in slice(&grad).chunks_exact(dout.max(1)) {
                for (s, &v) in db.iter_mut().zip(row) {
                    *s += v;
                }
            }
            out[2] = Some(flex(db, [dout]));
        }
        out
    }
}

/// A linear layer with bias as one graph node (parents: input, weight, bias).
#[derive(Debug)]
struct LinearNode;

impl Backward<Flex, 3> for LinearNode {
    type State = LinearState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let want = [0, 1, 2].map(|i| ops.parents[i].is_some());
        for (parent, g) in ops.parents.iter().zip(ops.state.grads(grad, want)) {
            if let (Some(node), Some(g)) = (parent, g) {
                grads.register::<Flex>(node.id, g);
            }
        }
    }
}

/// A linear layer without bias as one graph node (parents: input, weight).
#[derive(Debug)]
struct LinearNoBiasNode;

impl Backward<Flex, 2> for LinearNoBiasNode {
    type State = LinearState;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let want = [ops.parents[0].is_some(), ops.parents[1].is_some(), false];
        for (parent, g) in ops.parents.iter().zip(ops.state.grads(grad, want)) {
            if let (Some(node), Some(g)) = (parent, g) {
                grads.register::<Flex>(node.id, g);
            }
        }
    }
}

/// `layer.forward(x)` on `Autodiff<Flex>` as one graph node: the forward pass one GEMM into
/// the bias (`segvol_kernels::linear`), the backward two GEMMs reading the weight and the
/// input in place (burn's copies the transposed weight) and a column sum. `None` on other
/// backends.
pub(super) fn linear<B: Backend, const D: usize>(
    layer: &burn::nn::Linear<B>,
    x: &Tensor<B, D>,
) -> Option<Tensor<B, D>> {
    let dims = x.dims();
    let din = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let x = primitive(to_ad(x.clone())?)?;
    let weight = primitive(to_ad(layer.weight.val())?)?;
    let bias = match &layer.bias {
        Some(b) => Some(primitive(to_ad(b.val())?)?),
        None => None,
    };
    let xd = dense(x.primitive.clone());
    let wd = dense(weight.primitive.clone());
    let wdims = wd.layout().shape().clone();
    if wdims.num_dims() != 2 || wdims[0] != din {
        return None;
    }
    let dout = wdims[1];
    let bd = bias.as_ref().map(|b| dense(b.primitive.clone()));
    let y = segvol_kernels::linear(
        segvol_kernels::MatRef::row_major(slice(&xd), rows, din).ok()?,
        segvol_kernels::MatRef::row_major(slice(&wd), din, dout).ok()?,
        bd.as_ref().map(slice),
        None,
        false,
    )
    .ok()?;
    let mut shape = dims;
    shape[D - 1] = dout;
    let out = flex(y, shape);
    let state = LinearState {
        x: xd,
        weight: wd,
        rows,
        din,
        dout,
    };
    match &bias {
        Some(b) => record(LinearNode, [&x, &weight, b], state, out),
        None => record(LinearNoBiasNode, [&x, &weight], state, out),
    }
}

/// What a LayerNorm's backward needs: the input and gamma, dense, and epsilon.
#[derive(Debug, Clone)]
struct LayerNormState {
    x: FlexTensor,
    gamma: FlexTensor,
    eps: f32,
}

/// A LayerNorm over the last axis as one graph node (parents: input, gamma, beta).
#[derive(Debug)]
struct LayerNormNode;

impl Backward<Flex, 3> for LayerNormNode {
    type State = LayerNormState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = dense(grads.consume::<Flex>(&ops.node));
        let s = &ops.state;
        let cols = slice(&s.gamma).len();
        let (dx, dg, db) = segvol_kernels::layer_norm_backward(
            slice(&s.x),
            cols,
            slice(&s.gamma),
            s.eps,
            slice(&grad),
        )
        .expect("layer norm backward: shapes were checked by the forward pass");
        let parts = [
            flex(dx, s.x.layout().shape().clone()),
            flex(dg, [cols]),
            flex(db, [cols]),
        ];
        for (parent, g) in ops.parents.iter().zip(parts) {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, g);
            }
        }
    }
}

/// `norm.forward(x)` on `Autodiff<Flex>` as one graph node (forward: `segvol_kernels::
/// layer_norm`; backward: `segvol_kernels::layer_norm_backward`, one pass per row). `None` on
/// other backends or without a beta.
pub(super) fn layer_norm<B: Backend, const D: usize>(
    norm: &burn::nn::LayerNorm<B>,
    eps: f64,
    x: &Tensor<B, D>,
) -> Option<Tensor<B, D>> {
    let x = primitive(to_ad(x.clone())?)?;
    let gamma = primitive(to_ad(norm.gamma.val())?)?;
    let beta = primitive(to_ad(norm.beta.as_ref()?.val())?)?;
    let xd = dense(x.primitive.clone());
    let gd = dense(gamma.primitive.clone());
    let bd = dense(beta.primitive.clone());
    let cols = slice(&gd).len();
    let y =
        segvol_kernels::layer_norm(slice(&xd), cols, slice(&gd), slice(&bd), eps as f32).ok()?;
    let out = flex(y, xd.layout().shape().clone());
    let state = LayerNormState {
        x: xd,
        gamma: gd,
        eps: eps as f32,
    };
    record(LayerNormNode, [&x, &gamma, &beta], state, out)
}
