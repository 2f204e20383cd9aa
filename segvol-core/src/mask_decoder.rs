//! SAM's two-way transformer and mask decoder lifted to 3-D (SEGVOL.md §6), with SegVol's
//! full-tensor LayerNorm in the upscaling path.

use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, relu, softmax};
use burn::tensor::module::conv_transpose3d;
use burn::tensor::ops::ConvTransposeOptions;
use burn::tensor::{Tensor, backend::Backend};

use crate::SegVolConfig;
use crate::fast::low_rank;

/// SAM's `Attention`: separate q/k/v projections to `dim / downsample`, heads as contiguous
/// slices.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub(crate) q_proj: Linear<B>,
    pub(crate) k_proj: Linear<B>,
    pub(crate) v_proj: Linear<B>,
    pub(crate) out_proj: Linear<B>,
    num_heads: usize,
}

impl<B: Backend> Attention<B> {
    fn new(dim: usize, heads: usize, downsample: usize, device: &B::Device) -> Self {
        let inner = dim / downsample;
        Attention {
            q_proj: LinearConfig::new(dim, inner).init(device),
            k_proj: LinearConfig::new(dim, inner).init(device),
            v_proj: LinearConfig::new(dim, inner).init(device),
            out_proj: LinearConfig::new(inner, dim).init(device),
            num_heads: heads,
        }
    }

    /// # Shapes
    /// - `q`: `[b, nq, dim]`, `k`, `v`: `[b, nk, dim]` → `[b, nq, dim]`
    pub fn forward(&self, q: Tensor<B, 3>, k: Tensor<B, 3>, v: Tensor<B, 3>) -> Tensor<B, 3> {
        if let Some(out) = self.forward_fast(&q, &k, &v) {
            return out;
        }
        let heads = self.num_heads;
        let (q, k, v) = (
            crate::fast::forward_linear(&self.q_proj, q),
            crate::fast::forward_linear(&self.k_proj, k),
            crate::fast::forward_linear(&self.v_proj, v),
        );
        // Training on burn-flex: attention as one graph node (`fast::attention`).
        if let Some(out) = crate::fast::attention(&q, &k, &v, heads) {
            return crate::fast::forward_linear(&self.out_proj, out);
        }
        let split = |x: Tensor<B, 3>| {
            let [b, n, c] = x.dims();
            x.reshape([b, n, heads, c / heads]).swap_dims(1, 2) // [b, heads, n, c/heads]
        };
        let (q, k, v) = (split(q), split(k), split(v));
        let dh = q.dims()[3];
        let attn = softmax(
            q.matmul(k.swap_dims(2, 3)).div_scalar((dh as f64).sqrt()),
            3,
        );
        let out = attn.matmul(v).swap_dims(1, 2); // [b, nq, heads, dh]
        let [b, n, h, d] = out.dims();
        self.out_proj.forward(out.reshape([b, n, h * d]))
    }
}

impl<B: Backend> Attention<B> {
    /// `residual + self.forward(q, k, v)` through `crate::fast` (burn-flex only), the residual
    /// added as the output is made; `None` on other backends.
    fn forward_residual(
        &self,
        q: &Tensor<B, 3>,
        k: &Tensor<B, 3>,
        v: &Tensor<B, 3>,
        residual: &Tensor<B, 3>,
    ) -> Option<Tensor<B, 3>> {
        crate::fast::attention_layer_residual(
            [&self.q_proj, &self.k_proj, &self.v_proj, &self.out_proj],
            self.num_heads,
            q,
            k,
            v,
            Some(residual),
        )
    }

    /// The same through `crate::fast` (burn-flex only); `None` on other backends.
    fn forward_fast(
        &self,
        q: &Tensor<B, 3>,
        k: &Tensor<B, 3>,
        v: &Tensor<B, 3>,
    ) -> Option<Tensor<B, 3>> {
        crate::fast::attention_layer(
            [&self.q_proj, &self.k_proj, &self.v_proj, &self.out_proj],
            self.num_heads,
            q,
            k,
            v,
        )
    }
}

/// The transformer's `MLPBlock`: `lin2(relu(lin1(x)))`.
#[derive(Module, Debug)]
pub struct MlpBlock<B: Backend> {
    pub(crate) lin1: Linear<B>,
    pub(crate) lin2: Linear<B>,
}

/// One `TwoWayAttentionBlock`.
#[derive(Module, Debug)]
pub struct TwoWayBlock<B: Backend> {
    pub(crate) self_attn: Attention<B>,
    pub(crate) norm1: LayerNorm<B>,
    pub(crate) cross_attn_token_to_image: Attention<B>,
    pub(crate) norm2: LayerNorm<B>,
    pub(crate) mlp: MlpBlock<B>,
    pub(crate) norm3: LayerNorm<B>,
    pub(crate) norm4: LayerNorm<B>,
    pub(crate) cross_attn_image_to_token: Attention<B>,
    skip_first_layer_pe: bool,
}

/// What a two-way layer keeps of its image-token update for the low-rank upscaling
/// (`crate::fast::low_rank`).
type KeptUpdate = (low_rank::Factors, low_rank::Stats);

/// A two-way layer's output: the tokens, the image tokens, the image tokens plus their PE
/// where the fast path made them with the update, and what the low-rank upscaling keeps.
type LayerOut<B> = (
    Tensor<B, 3>,
    Tensor<B, 3>,
    Option<Tensor<B, 3>>,
    Option<KeptUpdate>,
);

impl<B: Backend> TwoWayBlock<B> {
    /// The layer; `keys_with_pe` is `keys + key_pe` when the caller has it. With `keep`, on
    /// the fast path, also the factors and statistics of its image-token update (`None`
    /// where it ran another way).
    fn forward(
        &self,
        queries: Tensor<B, 3>,
        keys: Tensor<B, 3>,
        keys_with_pe: Option<Tensor<B, 3>>,
        query_pe: Tensor<B, 3>,
        key_pe: Tensor<B, 3>,
        keep: bool,
    ) -> LayerOut<B> {
        // Layer 0: self-attention without PE and without residual (SEGVOL.md quirk 4).
        let queries = if self.skip_first_layer_pe {
            self.self_attn
                .forward(queries.clone(), queries.clone(), queries)
        } else {
            let q = queries.clone() + query_pe.clone();
            queries.clone() + self.self_attn.forward(q.clone(), q, queries)
        };
        let queries = self.norm1.forward(queries);
        let q = queries.clone() + query_pe.clone();
        let k = keys_with_pe.unwrap_or_else(|| keys.clone() + key_pe.clone());
        let queries = self.norm2.forward(
            queries
                + self
                    .cross_attn_token_to_image
                    .forward(q, k.clone(), keys.clone()),
        );
        let mlp = self
            .mlp
            .lin2
            .forward(relu(self.mlp.lin1.forward(queries.clone())));
        let queries = self.norm3.forward(queries + mlp);
        let q = queries.clone() + query_pe;
        let a = &self.cross_attn_image_to_token;
        // SAM's LayerNorms keep PyTorch's default epsilon.
        if let Some(out) = low_rank::image_to_token_norm(
            [&a.q_proj, &a.k_proj, &a.v_proj, &a.out_proj],
            a.num_heads,
            &k,
            &q,
            &queries,
            &keys,
            (&self.norm4, 1e-5),
            Some(&key_pe),
        ) {
            let kept = keep.then_some((out.factors, out.stats));
            return (queries, out.keys, out.keys_pe, kept);
        }
        let keys = a
            .forward_residual(&k, &q, &queries, &keys)
            .unwrap_or_else(|| {
                keys + self
                    .cross_attn_image_to_token
                    .forward(k, q, queries.clone())
            });
        let keys = crate::fast::layer_norm(&self.norm4, 1e-5, &keys)
            .unwrap_or_else(|| crate::fast::forward_layer_norm(&self.norm4, 1e-5, keys));
        (queries, keys, None, None)
    }
}

/// SAM's `TwoWayTransformer`.
#[derive(Module, Debug)]
pub struct TwoWayTransformer<B: Backend> {
    pub(crate) layers: Vec<TwoWayBlock<B>>,
    pub(crate) final_attn_token_to_image: Attention<B>,
    pub(crate) norm_final_attn: LayerNorm<B>,
}

/// SAM's `MLP` (ReLU between layers, none after the last).
#[derive(Module, Debug)]
pub struct MlpHead<B: Backend> {
    pub(crate) layers: Vec<Linear<B>>,
}

impl<B: Backend> MlpHead<B> {
    fn new(dims: &[usize], device: &B::Device) -> Self {
        MlpHead {
            layers: dims
                .windows(2)
                .map(|w| LinearConfig::new(w[0], w[1]).init(device))
                .collect(),
        }
    }
    fn forward(&self, mut x: Tensor<B, 2>) -> Tensor<B, 2> {
        let n = self.layers.len();
        for (i, l) in self.layers.iter().enumerate() {
            x = l.forward(x);
            if i + 1 < n {
                x = relu(x);
            }
        }
        x
    }
}

/// `ConvTranspose3d(k = 2, s = 2)` with PyTorch's weight layout `[C_in, C_out, 2, 2, 2]`.
#[derive(Module, Debug)]
pub struct Up2<B: Backend> {
    pub(crate) weight: Param<Tensor<B, 5>>,
    pub(crate) bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> Up2<B> {
    fn new(cin: usize, cout: usize, device: &B::Device) -> Self {
        let std = 1.0 / ((cout * 8) as f64).sqrt();
        Up2 {
            weight: Param::from_tensor(Tensor::random(
                [cin, cout, 2, 2, 2],
                burn::tensor::Distribution::Uniform(-std, std),
                device,
            )),
            bias: Param::from_tensor(Tensor::zeros([cout], device)),
        }
    }
    fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        if let Some(y) =
            crate::fast::conv_transpose_k2s2(&x, &self.weight.val(), &self.bias.val(), false)
        {
            return y;
        }
        conv_transpose3d(
            x,
            self.weight.val(),
            Some(self.bias.val()),
            ConvTransposeOptions::new([2; 3], [0; 3], [0; 3], [1; 3], 1),
        )
    }

    /// `gelu(self.forward(x))`, fused on the fast path.
    fn forward_gelu(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        if let Some(y) =
            crate::fast::conv_transpose_k2s2(&x, &self.weight.val(), &self.bias.val(), true)
        {
            return y;
        }
        let y = self.forward(x);
        crate::fast::gelu(&y).unwrap_or_else(|| gelu(y))
    }

    /// `head · gelu(self.forward(x))` over channels, `[b, 1, 2d, 2h, 2w]`, on the fast path
    /// only (`head` `[b, cout]`); `None` elsewhere.
    fn forward_gelu_dot(&self, x: &Tensor<B, 5>, head: &Tensor<B, 2>) -> Option<Tensor<B, 5>> {
        crate::fast::conv_transpose_k2s2_gelu_dot(x, &self.weight.val(), &self.bias.val(), head)
    }
}

/// SegVol's `LayerNorm((C, D, H, W))`: statistics over the whole sample, element-wise affine
/// in PyTorch's `(C, D, H, W)` layout (SEGVOL.md §6.4, §14).
#[derive(Module, Debug)]
pub struct FullLayerNorm<B: Backend> {
    pub(crate) weight: Param<Tensor<B, 4>>,
    pub(crate) bias: Param<Tensor<B, 4>>,
}

impl<B: Backend> FullLayerNorm<B> {
    fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let [b, c, d, h, w] = x.dims();
        let flat = x.reshape([b, c * d * h * w]);
        // Two passes: mean, then the biased variance of the centred values.
        let mean = flat.clone().mean_dim(1); // [b, 1]
        let centred = flat - mean;
        let var = centred.clone().powi_scalar(2).mean_dim(1);
        let normed = (centred / var.add_scalar(1e-5).sqrt()).reshape([b, c, d, h, w]);
        normed * self.weight.val().unsqueeze::<5>() + self.bias.val().unsqueeze::<5>()
    }

    /// `gelu(self.forward(x))`, fused on the fast path.
    fn forward_gelu(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        if let Some(y) =
            crate::fast::full_layer_norm(&x, &self.weight.val(), &self.bias.val(), 1e-5, true)
        {
            return y;
        }
        let y = self.forward(x);
        crate::fast::gelu(&y).unwrap_or_else(|| gelu(y))
    }
}

/// The mask decoder.
#[derive(Module, Debug)]
pub struct MaskDecoder<B: Backend> {
    pub(crate) transformer: TwoWayTransformer<B>,
    pub(crate) iou_token: Embedding<B>,
    pub(crate) mask_tokens: Embedding<B>,
    pub(crate) up_conv1: Up2<B>,
    pub(crate) up_norm: FullLayerNorm<B>,
    pub(crate) up_conv2: Up2<B>,
    pub(crate) output_hypernetworks_mlps: Vec<MlpHead<B>>,
    /// Loaded for completeness; its output is discarded (SEGVOL.md §6.7).
    pub(crate) iou_prediction_head: MlpHead<B>,
    /// The text-similarity projection (`C → C/8`), used only with a text prompt.
    pub(crate) txt_align_upscaled_embedding: Linear<B>,
    /// What decodes of one image share on the fast CPU path (`crate::fast::low_rank`).
    #[module(skip)]
    image_cache: low_rank::ImageCache,
}

impl<B: Backend> MaskDecoder<B> {
    /// A decoder for `config` with random weights.
    pub fn new(config: &SegVolConfig, device: &B::Device) -> Self {
        let c = config.hidden_size;
        let heads = config.decoder_heads;
        let ln = || LayerNormConfig::new(c).init(device);
        let layers = (0..config.decoder_depth)
            .map(|i| TwoWayBlock {
                self_attn: Attention::new(c, heads, 1, device),
                norm1: ln(),
                cross_attn_token_to_image: Attention::new(c, heads, 2, device),
                norm2: ln(),
                mlp: MlpBlock {
                    lin1: LinearConfig::new(c, config.decoder_mlp_dim).init(device),
                    lin2: LinearConfig::new(config.decoder_mlp_dim, c).init(device),
                },
                norm3: ln(),
                norm4: ln(),
                cross_attn_image_to_token: Attention::new(c, heads, 2, device),
                skip_first_layer_pe: i == 0,
            })
            .collect();
        let [gd, gh, gw] = config.grid();
        MaskDecoder {
            transformer: TwoWayTransformer {
                layers,
                final_attn_token_to_image: Attention::new(c, heads, 2, device),
                norm_final_attn: ln(),
            },
            iou_token: EmbeddingConfig::new(1, c).init(device),
            mask_tokens: EmbeddingConfig::new(4, c).init(device),
            up_conv1: Up2::new(c, c / 4, device),
            up_norm: FullLayerNorm {
                weight: Param::from_tensor(Tensor::ones([c / 4, 2 * gd, 2 * gh, 2 * gw], device)),
                bias: Param::from_tensor(Tensor::zeros([c / 4, 2 * gd, 2 * gh, 2 * gw], device)),
            },
            up_conv2: Up2::new(c / 4, c / 8, device),
            output_hypernetworks_mlps: (0..4)
                .map(|_| MlpHead::new(&[c, c, c, c / 8], device))
                .collect(),
            iou_prediction_head: MlpHead::new(
                &[c, config.iou_head_hidden, config.iou_head_hidden, 4],
                device,
            ),
            txt_align_upscaled_embedding: LinearConfig::new(c, c / 8).init(device),
            image_cache: Default::default(),
        }
    }

    /// Low-resolution logits of mask token 0, and the upscaled embedding `E` when
    /// `keep_upscaled` (without it, the fast CPU path reduces `E` to the mask as it is made and
    /// returns `None`; other backends return it either way). Calls `mark(stage)` as each stage
    /// ends (`segvol bench --decode-ops` times them; on an asynchronous GPU backend the marks
    /// mean nothing).
    ///
    /// # Shapes
    /// - `image_embedding`: `[1, C, gd, gh, gw]`; `image_pe`: `[1, C, gd, gh, gw]`
    /// - `sparse`: `[1, T, C]`; `dense`: `[1, C, gd, gh, gw]`; `text`: `[1, C]`
    /// - `cells` (`[1, C/8, 4gd, 4gh, 4gw]`, the mask prompt's term) is added to `E` before
    ///   the hypernetwork's product.
    /// - returns `(Option<E [1, C/8, 4gd, 4gh, 4gw]>, low-res logits [1, 1, 4gd, 4gh, 4gw])`;
    ///   batch 1 (the prompts are one sample's)
    ///
    /// With a text embedding `t`, the similarity `txt_align(t) · E` is added to the mask
    /// (SEGVOL.md §6.6).
    ///
    /// `constant_dense`: the model has no dense prompts of its own, so `dense` is the same
    /// "no mask" embedding at every decode; the fast CPU path then keeps what depends only on
    /// the image between decodes (`crate::fast::low_rank`).
    #[allow(clippy::too_many_arguments)]
    pub fn forward_marked(
        &self,
        image_embedding: Tensor<B, 5>,
        image_pe: Tensor<B, 5>,
        sparse: Tensor<B, 3>,
        dense: Tensor<B, 5>,
        text: Option<Tensor<B, 2>>,
        cells: Option<Tensor<B, 5>>,
        keep_upscaled: bool,
        constant_dense: bool,
        mark: &mut dyn FnMut(&'static str),
    ) -> (Option<Tensor<B, 5>>, Tensor<B, 5>) {
        let [b, c, gd, gh, gw] = image_embedding.dims();
        let out_tokens = Tensor::cat(
            vec![self.iou_token.weight.val(), self.mask_tokens.weight.val()],
            0,
        )
        .unsqueeze::<3>(); // [1, 5, C]
        let tokens = Tensor::cat(vec![out_tokens, sparse], 1); // [1, T, C]
        // Token-major copies once, not a strided walk in every add of the transformer.
        let make = || {
            let src = image_embedding.clone() + dense.clone();
            let keys = src.reshape([b, c, gd * gh * gw]).swap_dims(1, 2); // [b, N, C]
            let key_pe = image_pe
                .clone()
                .reshape([1, c, gd * gh * gw])
                .swap_dims(1, 2);
            (
                crate::fast::contiguous(&keys).unwrap_or(keys),
                crate::fast::contiguous(&key_pe).unwrap_or(key_pe),
            )
        };
        // Without dense prompts of the model's own, on the fast path: kept for the next decode
        // of the same image, and the upscaling's first product from the image's kept part plus
        // the layers' low-rank updates (`crate::fast::low_rank`).
        let keep = constant_dense && !keep_upscaled && b == 1;
        let (keys, key_pe, keys_with_pe) = if keep {
            let (k, pe, with_pe) = self
                .image_cache
                .keys(&image_embedding, &dense, &image_pe, make);
            (k, pe, Some(with_pe))
        } else {
            let (k, pe) = make();
            (k, pe, None)
        };
        let mut kept = Vec::new();
        let (mut q, mut k, mut k_pe) = (tokens.clone(), keys, keys_with_pe);
        mark("tokens, keys");
        for layer in &self.transformer.layers {
            let update;
            (q, k, k_pe, update) = layer.forward(q, k, k_pe, tokens.clone(), key_pe.clone(), keep);
            kept.push(update.map(|(factors, stats)| low_rank::Kept {
                factors,
                out_proj: &layer.cross_attn_image_to_token.out_proj,
                stats,
                norm: &layer.norm4,
            }));
            mark("two-way layer");
        }
        let attn = self.transformer.final_attn_token_to_image.forward(
            q.clone() + tokens,
            k_pe.unwrap_or_else(|| k.clone() + key_pe),
            k.clone(),
        );
        let hs = self.transformer.norm_final_attn.forward(q + attn); // [b, T, C]
        mark("final token-to-image attention");
        let ce = self.up_conv2.weight.dims()[1];
        // Only mask token 0 is used (multimask_output = false), so only hypernetwork 0 runs.
        let h0 = self.output_hypernetworks_mlps[0]
            .forward(hs.narrow(1, 1, 1).reshape([b, c]))
            .reshape([b, ce]);
        let t = text.map(|t| {
            self.txt_align_upscaled_embedding
                .forward(t)
                .reshape([b, ce])
        });
        // h0·E + t·E = (h0 + t)·E, and the mask prompt's term, added to E, is linear too.
        let head = match &t {
            Some(t) => h0.clone() + t.clone(),
            None => h0.clone(),
        };
        let add_cells = |masks: Tensor<B, 5>, cells: Option<Tensor<B, 5>>| match cells {
            Some(cells) => {
                let [_, _, de, he, we] = cells.dims();
                let term = head
                    .clone()
                    .reshape([b, 1, ce])
                    .matmul(cells.reshape([b, ce, de * he * we]))
                    .reshape([b, 1, de, he, we]);
                masks + term
            }
            None => masks,
        };
        // The fast CPU path: the whole upscaling, `E` never made; its first product from the
        // image's kept part and the layers' updates, else from the tokens.
        let kept: Option<Vec<_>> = kept.into_iter().collect();
        let (w1, b1) = (self.up_conv1.weight.val(), self.up_conv1.bias.val());
        let (g, be) = (self.up_norm.weight.val(), self.up_norm.bias.val());
        let (w2, b2) = (self.up_conv2.weight.val(), self.up_conv2.bias.val());
        let weights = crate::fast::UpscaleWeights {
            conv1: (&w1, &b1),
            norm: (&g, &be),
            eps: 1e-5,
            conv2: (&w2, &b2),
        };
        let grid = [gd, gh, gw];
        let mut fused = None;
        if keep && let Some(kept) = &kept {
            fused = low_rank::upscale_dot_low_rank(
                &self.image_cache,
                kept,
                grid,
                &weights,
                &head,
                mark,
            );
        }
        if fused.is_none() && !keep_upscaled {
            fused = crate::fast::upscale_dot(&k, grid, &weights, &head, mark);
        }
        if let Some(masks) = fused {
            let masks = add_cells(masks, cells);
            mark("ConvTranspose3d 2 + GELU · hypernetwork, fused");
            return (None, masks);
        }
        let src = k.swap_dims(1, 2);
        let src = crate::fast::contiguous(&src)
            .unwrap_or(src)
            .reshape([b, c, gd, gh, gw]);
        let up1 = self.up_conv1.forward(src);
        mark(crate::fast::UPSCALE_STAGES[0]);
        let up1 = self.up_norm.forward_gelu(up1);
        mark(crate::fast::UPSCALE_STAGES[1]);
        if !keep_upscaled && let Some(masks) = self.up_conv2.forward_gelu_dot(&up1, &head) {
            let masks = add_cells(masks, cells);
            mark("ConvTranspose3d 2 + GELU · hypernetwork, fused");
            return (None, masks);
        }
        let mut e = self.up_conv2.forward_gelu(up1);
        mark("ConvTranspose3d 2 + GELU");
        if let Some(cells) = cells {
            e = e + cells;
        }
        let [_, _, de, he, we] = e.dims();
        let flat_e = e.clone().reshape([b, ce, de * he * we]);
        let mut masks = h0.reshape([b, 1, ce]).matmul(flat_e.clone()); // [b, 1, N]
        if let Some(t) = t {
            masks = masks + t.reshape([b, 1, ce]).matmul(flat_e);
        }
        let masks = masks.reshape([b, 1, de, he, we]);
        mark("hypernetwork MLP · E");
        (Some(e), masks)
    }
}
