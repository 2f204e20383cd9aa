//! `CLIPTextEmbeddings`: token embedding plus learned absolute positions (SEGVOL.md §7.1 step 1).

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig};
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use super::TextConfig;

/// `x = token_embedding[ids] + position_embedding[0..L)`. The checkpoint's int64
/// `position_ids` buffer (`arange(77)`) is not a tensor here: positions are always `0..L`.
#[derive(Module, Debug)]
pub struct ClipTextEmbeddings<B: Backend> {
    /// `[vocab, width]`.
    pub(crate) token_embedding: Embedding<B>,
    /// `[max_positions, width]`.
    pub(crate) position_embedding: Embedding<B>,
}

impl<B: Backend> ClipTextEmbeddings<B> {
    pub(crate) fn new(c: &TextConfig, device: &B::Device) -> Self {
        ClipTextEmbeddings {
            token_embedding: EmbeddingConfig::new(c.vocab_size, c.width).init(device),
            position_embedding: EmbeddingConfig::new(c.max_positions, c.width).init(device),
        }
    }

    /// # Shapes
    /// - `ids`: `[1, L]` with `L ≤ max_positions` → `[1, L, width]`
    pub fn forward(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [b, l] = ids.dims();
        let device = ids.device();
        let pos = Tensor::<B, 2, Int>::from_data(
            TensorData::new((0..l as i64).collect::<Vec<_>>(), [1, l]),
            &device,
        );
        let p = self.position_embedding.forward(pos); // [1, L, width]
        let t = self.token_embedding.forward(ids); // [b, L, width]
        if b == 1 {
            t + p
        } else {
            t + p.repeat_dim(0, b)
        }
    }
}
