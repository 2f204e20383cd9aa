//! `CLIPEncoderLayer` (pre-norm) and its MLP with quick-GELU (SEGVOL.md §7.1 step 2, §7.3).

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Tensor, backend::Backend};

use super::TextConfig;
use super::attention::ClipAttention;

/// `fc2(quick_gelu(fc1(x)))`, `quick_gelu(x) = x·σ(1.702·x)` (transformers' `QuickGELUActivation`,
/// the default `hidden_act` of `CLIPTextConfig()`).
#[derive(Module, Debug)]
pub struct ClipMlp<B: Backend> {
    pub(crate) fc1: Linear<B>,
    pub(crate) fc2: Linear<B>,
}

impl<B: Backend> ClipMlp<B> {
    /// # Shapes
    /// - `x`: `[b, L, width]` → same
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = self.fc1.forward(x);
        let h = h.clone() * sigmoid(h.mul_scalar(1.702));
        self.fc2.forward(h)
    }
}

/// `x + SA(LN1 x)`, then `x + MLP(LN2 x)`.
#[derive(Module, Debug)]
pub struct ClipEncoderLayer<B: Backend> {
    pub(crate) self_attn: ClipAttention<B>,
    pub(crate) layer_norm1: LayerNorm<B>,
    pub(crate) mlp: ClipMlp<B>,
    pub(crate) layer_norm2: LayerNorm<B>,
}

impl<B: Backend> ClipEncoderLayer<B> {
    pub(crate) fn new(c: &TextConfig, device: &B::Device) -> Self {
        let lin = |i, o| LinearConfig::new(i, o).init(device);
        let norm = || {
            LayerNormConfig::new(c.width)
                .with_epsilon(c.layer_norm_eps)
                .init(device)
        };
        ClipEncoderLayer {
            self_attn: ClipAttention::new(
                lin(c.width, c.width),
                lin(c.width, c.width),
                lin(c.width, c.width),
                lin(c.width, c.width),
                c.heads,
            ),
            layer_norm1: norm(),
            mlp: ClipMlp {
                fc1: lin(c.width, c.mlp_dim),
                fc2: lin(c.mlp_dim, c.width),
            },
            layer_norm2: norm(),
        }
    }

    /// # Shapes
    /// - `x`: `[b, L, width]` → same
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x));
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }
}
