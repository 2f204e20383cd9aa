//! The image encoder: MONAI 0.9 `ViT` (SEGVOL.md §4), with the patch embedding written as a
//! reshape + one matrix multiplication instead of a Conv3d.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::{Tensor, backend::Backend};

use crate::SegVolConfig;

/// MONAI's `PatchEmbeddingBlock` with `pos_embed="perceptron"`: cut into patches, one Linear,
/// add the learned position embeddings.
#[derive(Module, Debug)]
pub struct PatchEmbedding<B: Backend> {
    /// `Linear(pd·ph·pw → hidden)`; the checkpoint's `patch_embedding.patch_embeddings.1`.
    pub(crate) patch_embeddings: Linear<B>,
    /// `[1, tokens, hidden]`.
    pub(crate) position_embeddings: Param<Tensor<B, 3>>,
    patch: [usize; 3],
}

impl<B: Backend> PatchEmbedding<B> {
    /// # Shapes
    /// - `image`: `[batch, 1, D, H, W]`
    /// - returns: `[batch, tokens, hidden]`, token `(i_d·gh + i_h)·gw + i_w`, feature
    ///   `(p1·ph + p2)·pw + p3` (MONAI's `b c (h p1) (w p2) (d p3) -> b (h w d) (p1 p2 p3 c)`)
    pub fn forward(&self, image: Tensor<B, 5>) -> Tensor<B, 3> {
        let [b, _c, d, h, w] = image.dims();
        let [pd, ph, pw] = self.patch;
        let (gd, gh, gw) = (d / pd, h / ph, w / pw);
        // Six dimensions at most (burn-ndarray's limit): fold batch into the D-grid axis.
        let x = image
            .reshape([b * gd, pd, gh, ph, gw, pw]) // [b·gd, pd, gh, ph, gw, pw]
            .permute([0, 2, 4, 1, 3, 5]) // [b·gd, gh, gw, pd, ph, pw]
            .reshape([b, gd * gh * gw, pd * ph * pw]); // [b, tokens, patch_dim]
        let pos = self.position_embeddings.val();
        if b == 1
            && let Some(y) = crate::fast::linear(&self.patch_embeddings, &x, Some(&pos), false)
        {
            return y;
        }
        self.patch_embeddings.forward(x) + pos
    }
}

/// MONAI's `SABlock`: fused bias-free `qkv` laid out `[q | k | v]`, heads split head-major.
#[derive(Module, Debug)]
pub struct SelfAttention<B: Backend> {
    pub(crate) qkv: Linear<B>,
    pub(crate) out_proj: Linear<B>,
    num_heads: usize,
}

impl<B: Backend> SelfAttention<B> {
    /// # Shapes
    /// - `x`: `[batch, tokens, hidden]` → `[batch, tokens, hidden]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, n, c] = x.dims();
        let (heads, dh) = (self.num_heads, c / self.num_heads);
        let qkv = crate::fast::forward_linear(&self.qkv, x); // [b, n, 3c]
        if let Some(out) = crate::fast::fused_qkv_attention(&qkv, heads) {
            return crate::fast::forward_linear(&self.out_proj, out);
        }
        let split = |i: usize| {
            qkv.clone()
                .narrow(2, i * c, c)
                .reshape([b, n, heads, dh])
                .swap_dims(1, 2) // [b, heads, n, dh]
        };
        let (q, k, v) = (split(0), split(1), split(2));
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar((dh as f64).powf(-0.5));
        let attn = softmax(scores, 3); // over keys
        let out = attn.matmul(v).swap_dims(1, 2).reshape([b, n, c]); // heads merged h·dh + d
        self.out_proj.forward(out)
    }
}

/// MONAI's `TransformerBlock` (pre-norm): `x + SA(LN1 x)`, then `x + MLP(LN2 x)` with exact GELU.
#[derive(Module, Debug)]
pub struct VitBlock<B: Backend> {
    pub(crate) norm1: LayerNorm<B>,
    pub(crate) attn: SelfAttention<B>,
    pub(crate) norm2: LayerNorm<B>,
    pub(crate) linear1: Linear<B>,
    pub(crate) linear2: Linear<B>,
    /// Both LayerNorms' epsilon (burn keeps `LayerNorm`'s private; the fast path needs it).
    eps: f64,
}

impl<B: Backend> VitBlock<B> {
    /// A block of width `hidden`, MLP `mlp`, `heads` heads.
    pub fn new(hidden: usize, mlp: usize, heads: usize, eps: f64, device: &B::Device) -> Self {
        let norm = || LayerNormConfig::new(hidden).with_epsilon(eps).init(device);
        VitBlock {
            norm1: norm(),
            attn: SelfAttention {
                qkv: LinearConfig::new(hidden, 3 * hidden)
                    .with_bias(false)
                    .init(device),
                out_proj: LinearConfig::new(hidden, hidden).init(device),
                num_heads: heads,
            },
            norm2: norm(),
            linear1: LinearConfig::new(hidden, mlp).init(device),
            linear2: LinearConfig::new(mlp, hidden).init(device),
            eps,
        }
    }

    /// # Shapes
    /// - `x`: `[batch, tokens, hidden]` → same
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        if let Some(y) = self.forward_fast(&x) {
            return y;
        }
        let x = x.clone()
            + self
                .attn
                .forward(crate::fast::forward_layer_norm(&self.norm1, self.eps, x));
        let h = crate::fast::forward_linear(
            &self.linear1,
            crate::fast::forward_layer_norm(&self.norm2, self.eps, x.clone()),
        );
        let h = crate::fast::gelu(&h).unwrap_or_else(|| gelu(h));
        x + crate::fast::forward_linear(&self.linear2, h)
    }
}

impl<B: Backend> VitBlock<B> {
    /// The same block through `crate::fast` (burn-flex only): LayerNorm, the qkv projection,
    /// fused attention, the out projection with bias and residual in its GEMM, LayerNorm, the
    /// first MLP layer with bias and GELU, the second with bias and residual. `None` on other
    /// backends.
    fn forward_fast(&self, x: &Tensor<B, 3>) -> Option<Tensor<B, 3>> {
        use crate::fast;
        let h = fast::layer_norm(&self.norm1, self.eps, x)?;
        let qkv = fast::linear(&self.attn.qkv, &h, None, false)?;
        let a = fast::fused_qkv_attention(&qkv, self.attn.num_heads)?;
        let x = fast::linear(&self.attn.out_proj, &a, Some(x), false)?;
        let h = fast::layer_norm(&self.norm2, self.eps, &x)?;
        let h = fast::linear(&self.linear1, &h, None, true)?;
        fast::linear(&self.linear2, &h, Some(&x), false)
    }
}

/// The whole encoder: patch embedding, `num_layers` blocks, final LayerNorm, reshaped to the
/// token grid.
#[derive(Module, Debug)]
pub struct ImageEncoder<B: Backend> {
    pub(crate) patch_embedding: PatchEmbedding<B>,
    pub(crate) blocks: Vec<VitBlock<B>>,
    pub(crate) norm: LayerNorm<B>,
    grid: [usize; 3],
}

impl<B: Backend> ImageEncoder<B> {
    /// An encoder with random weights for `config` (load real ones with the weight loader).
    pub fn new(config: &SegVolConfig, device: &B::Device) -> Self {
        let c = config.hidden_size;
        ImageEncoder {
            patch_embedding: PatchEmbedding {
                patch_embeddings: LinearConfig::new(config.patch_dim(), c).init(device),
                position_embeddings: Param::from_tensor(Tensor::zeros(
                    [1, config.num_tokens(), c],
                    device,
                )),
                patch: config.patch_size,
            },
            blocks: (0..config.num_layers)
                .map(|_| {
                    VitBlock::new(
                        c,
                        config.mlp_dim,
                        config.num_heads,
                        config.layer_norm_eps,
                        device,
                    )
                })
                .collect(),
            norm: LayerNormConfig::new(c)
                .with_epsilon(config.layer_norm_eps)
                .init(device),
            grid: config.grid(),
        }
    }

    /// Only the patch embedding (benchmarks, debugging).
    ///
    /// # Shapes
    /// - `image`: `[batch, 1, D, H, W]` → `[batch, tokens, hidden]`
    pub fn patch_embedding_forward(&self, image: Tensor<B, 5>) -> Tensor<B, 3> {
        self.patch_embedding.forward(image)
    }

    /// # Shapes
    /// - `image`: `[batch, 1, D, H, W]` (the model grid)
    /// - returns: `[batch, hidden, gd, gh, gw]` image embedding (8×16×16 grid for base)
    pub fn forward(&self, image: Tensor<B, 5>) -> Tensor<B, 5> {
        let mut x = self.patch_embedding.forward(image);
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = self.norm.forward(x); // [b, tokens, c]
        let [b, _n, c] = x.dims();
        let [gd, gh, gw] = self.grid;
        x.swap_dims(1, 2).reshape([b, c, gd, gh, gw])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;
    use segvol_backends::Flex;

    type B = Flex;

    /// The patch map of SEGVOL.md §4.2: voxel (4·i_d + p1, 16·i_h + p2, 16·i_w + p3) lands in
    /// token (i_d·gh + i_h)·gw + i_w at feature (p1·16 + p2)·16 + p3. With an identity Linear
    /// (patch_dim = hidden) and zero position embeddings the output *is* the patch matrix.
    #[test]
    fn patch_embedding_follows_the_monai_index_map() {
        let device = Default::default();
        let (d, h, w) = (8, 32, 16); // grid 2×2×1, patch 4×16×16 → 1024 features
        let n = d * h * w;
        let vals: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let image = Tensor::<B, 5>::from_data(TensorData::new(vals, [1, 1, d, h, w]), &device);
        let mut lin = LinearConfig::new(1024, 1024)
            .with_bias(false)
            .init::<B>(&device);
        lin.weight = Param::from_tensor(Tensor::eye(1024, &device));
        let pe = PatchEmbedding {
            patch_embeddings: lin,
            position_embeddings: Param::from_tensor(Tensor::zeros([1, 4, 1024], &device)),
            patch: [4, 16, 16],
        };
        let out: Vec<f32> = pe.forward(image).into_data().to_vec().unwrap();
        let (gh, gw) = (2, 1);
        for (id, ih, iw) in [(0, 0, 0), (1, 1, 0), (0, 1, 0), (1, 0, 0)] {
            for (p1, p2, p3) in [(0, 0, 0), (3, 15, 15), (1, 7, 2), (2, 0, 9)] {
                let (z, y, x) = (4 * id + p1, 16 * ih + p2, 16 * iw + p3);
                let token = (id * gh + ih) * gw + iw;
                let feat = (p1 * 16 + p2) * 16 + p3;
                assert_eq!(out[token * 1024 + feat], ((z * h + y) * w + x) as f32);
            }
        }
    }

    /// Parameter count of one ViT-B block: 4C² + 2C·M + 6C + M = 7,085,568 (SEGVOL.md §12).
    #[test]
    fn vit_b_block_has_the_documented_parameter_count() {
        let device = Default::default();
        let block = VitBlock::<B>::new(768, 3072, 12, 1e-5, &device);
        assert_eq!(block.num_params(), 7_085_568);
        let enc = ImageEncoder::<B>::new(&SegVolConfig::tiny(), &device);
        let out = enc.forward(Tensor::zeros([1, 1, 32, 64, 64], &device));
        assert_eq!(out.dims(), [1, 96, 8, 4, 4]);
    }

    /// One head, one token per position, hand-derived: with q = k = 0 the attention is uniform,
    /// so every output row is the mean of v (then `out_proj` = identity).
    #[test]
    fn attention_with_zero_queries_averages_values() {
        let device = Default::default();
        let c = 2;
        let mut qkv = LinearConfig::new(c, 3 * c)
            .with_bias(false)
            .init::<B>(&device);
        // weight [in, out] = [2, 6]: q and k columns zero, v = identity.
        let w = Tensor::<B, 2>::from_floats(
            [
                [0.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
            ],
            &device,
        );
        qkv.weight = Param::from_tensor(w);
        let mut out_proj = LinearConfig::new(c, c).with_bias(false).init::<B>(&device);
        out_proj.weight = Param::from_tensor(Tensor::eye(c, &device));
        let sa = SelfAttention {
            qkv,
            out_proj,
            num_heads: 1,
        };
        let x = Tensor::<B, 3>::from_floats([[[1.0, 2.0], [3.0, 6.0], [5.0, 1.0]]], &device);
        let y: Vec<f32> = sa.forward(x).into_data().to_vec().unwrap();
        for row in y.chunks(2) {
            assert!(
                (row[0] - 3.0).abs() < 1e-6 && (row[1] - 3.0).abs() < 1e-6,
                "{row:?}"
            );
        }
    }
}
