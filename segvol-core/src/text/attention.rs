//! `CLIPAttention` with the causal mask of the text tower (SEGVOL.md §7.1 step 2).

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Tensor, TensorData, backend::Backend};

/// Multi-head self-attention, `q` scaled by `head_dim^-0.5`, each token attending only to
/// itself and the tokens before it.
#[derive(Module, Debug)]
pub struct ClipAttention<B: Backend> {
    pub(crate) q_proj: Linear<B>,
    pub(crate) k_proj: Linear<B>,
    pub(crate) v_proj: Linear<B>,
    pub(crate) out_proj: Linear<B>,
    heads: usize,
}

impl<B: Backend> ClipAttention<B> {
    pub(crate) fn new(
        q_proj: Linear<B>,
        k_proj: Linear<B>,
        v_proj: Linear<B>,
        out_proj: Linear<B>,
        heads: usize,
    ) -> Self {
        ClipAttention {
            q_proj,
            k_proj,
            v_proj,
            out_proj,
            heads,
        }
    }

    /// # Shapes
    /// - `x`: `[b, L, width]` → same
    ///
    /// No padding mask: a name is encoded on its own, unpadded (SegVol pads a batch to its
    /// longest prompt, but the padding comes after the end-of-text token, which under the
    /// causal mask never attends to it, so the pooled output is the same).
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, l, c] = x.dims();
        let (h, dh) = (self.heads, c / self.heads);
        let split = |t: Tensor<B, 3>| t.reshape([b, l, h, dh]).swap_dims(1, 2); // [b, h, L, dh]
        let q = split(
            self.q_proj
                .forward(x.clone())
                .mul_scalar((dh as f64).powf(-0.5)),
        );
        let k = split(self.k_proj.forward(x.clone()));
        let v = split(self.v_proj.forward(x));
        let scores = q.matmul(k.swap_dims(2, 3)); // [b, h, L, L]
        let future: Vec<bool> = (0..l * l).map(|i| i % l > i / l).collect();
        let mask =
            Tensor::<B, 2, Bool>::from_data(TensorData::new(future, [l, l]), &scores.device())
                .reshape([1, 1, l, l])
                .expand([b, h, l, l]);
        // transformers adds the dtype's minimum to masked scores; after the softmax both are 0.
        let attn = softmax(scores.mask_fill(mask, f32::MIN), 3);
        let out = attn.matmul(v).swap_dims(1, 2).reshape([b, l, c]);
        self.out_proj.forward(out)
    }
}
