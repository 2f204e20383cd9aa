//! The seed's five-block layout (GRU_CORRECTION.md §3.1), for reproducing its numbers: block
//! `s` (round s = 0..4) is `GRU(8K → H)` run from `h0 = 0` over the whole token history of
//! rounds `0..=s` (2(s+1) tokens), its last output concatenated with the flattened coordinates
//! and fed to `fc_prob: Linear(H + 6K → 2K)`, then a sigmoid. The seed stored those
//! probabilities into logit space by assignment at corner voxels (its defects 2–4); this module
//! reproduces the network only and leaves write-back to the caller.
//!
//! The seed's checkpoint keys are `model.gru_blocks.{0..4}.gru.{weight,bias}_{ih,hh}_l0` and
//! `model.gru_blocks.{0..4}.fc_prob.{weight,bias}` (K = 200, H = 2000: 114,462,000 parameters).

use std::path::Path;

use burn::module::Module;
use burn::nn::Linear;
use burn::nn::gru::Gru;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Tensor, backend::Backend};

use crate::pytorch::{GruLoadError, read_checkpoint};

/// One round's block.
#[derive(Module, Debug)]
pub struct SeedBlock<B: Backend> {
    /// `GRU(8K → H)`.
    pub gru: Gru<B>,
    /// `Linear(H + 6K → 2K)`.
    pub fc_prob: Linear<B>,
}

/// The seed's corrector: one block per round.
#[derive(Module, Debug)]
pub struct SeedCorrector<B: Backend> {
    /// Blocks for rounds 0, 1, ….
    pub blocks: Vec<SeedBlock<B>>,
    k: usize,
    hidden: usize,
}

impl<B: Backend> SeedCorrector<B> {
    /// Rows per set (K).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Hidden size of each block's GRU.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Round `round`'s output probabilities `[B, 2K]` from the token history `[B, T, 8K]`
    /// (all rounds so far, two tokens each) and the current coordinates `[B, 6K]`; rounds past
    /// the last block reuse it.
    pub fn forward(
        &self,
        round: usize,
        history: Tensor<B, 3>,
        coords: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let idx = round.min(self.blocks.len().saturating_sub(1));
        let block = &self.blocks[idx];
        let [b, t, _] = history.dims();
        let out = block.gru.forward(history, None);
        let last: Tensor<B, 2> = out.narrow(1, t - 1, 1).reshape([b, self.hidden]);
        sigmoid(block.fc_prob.forward(Tensor::cat(vec![last, coords], 1)))
    }
}

/// Loads `gru_blocks.{0..}` from a PyTorch or safetensors checkpoint (keys optionally under
/// `model.` or `module.`); every block must have the same sizes.
///
/// # Errors
/// [`GruLoadError`] naming the file and the tensor at fault.
pub fn load_seed<B: Backend>(
    path: impl AsRef<Path>,
    device: &B::Device,
) -> Result<SeedCorrector<B>, GruLoadError> {
    let path = path.as_ref();
    let ck = read_checkpoint(path)?;
    let Some(prefix) = ck.find_prefix(
        &["model.", "", "module.", "state_dict.", "model.module."],
        "gru_blocks.0.gru.weight_ih_l0",
    ) else {
        return Err(GruLoadError::Format {
            path: path.to_path_buf(),
            detail: "no `gru_blocks.0.gru.weight_ih_l0`: not the seed's five-block layout".into(),
        });
    };
    let mut blocks = Vec::new();
    let (mut k, mut hidden) = (0, 0);
    while ck.tensors.contains_key(&format!(
        "{prefix}gru_blocks.{}.gru.weight_ih_l0",
        blocks.len()
    )) {
        let s = blocks.len();
        let g = ck.gru(&format!("{prefix}gru_blocks.{s}.gru."))?;
        if s == 0 {
            if g.d_input % 8 != 0 {
                return Err(GruLoadError::Tensor {
                    path: path.to_path_buf(),
                    key: format!("{prefix}gru_blocks.0.gru.weight_ih_l0"),
                    detail: format!("input size {} is not 8·K", g.d_input),
                });
            }
            (k, hidden) = (g.d_input / 8, g.d_hidden);
        } else if (g.d_input, g.d_hidden) != (8 * k, hidden) {
            return Err(GruLoadError::Tensor {
                path: path.to_path_buf(),
                key: format!("{prefix}gru_blocks.{s}.gru.weight_ih_l0"),
                detail: format!(
                    "GRU {}→{} differs from block 0's {}→{hidden}",
                    g.d_input,
                    g.d_hidden,
                    8 * k
                ),
            });
        }
        let fc = ck.linear::<B>(
            &format!("{prefix}gru_blocks.{s}.fc_prob."),
            hidden + 6 * k,
            2 * k,
            device,
        )?;
        blocks.push(SeedBlock {
            gru: g.to_burn(device),
            fc_prob: fc,
        });
    }
    Ok(SeedCorrector { blocks, k, hidden })
}
