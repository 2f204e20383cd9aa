//! Model hyper-parameters, with the two presets the project uses.

use burn::config::Config;

/// Hyper-parameters of SegVol; every tensor shape in the model is derived from these.
///
/// Create with [`SegVolConfig::base`] (the released `BAAI/SegVol` weights) or
/// [`SegVolConfig::tiny`] (the parity fixture in `shared/fixtures/segvol_tiny`), and check with
/// [`SegVolConfig::validate`].
#[derive(Config, Debug, PartialEq)]
pub struct SegVolConfig {
    /// Model grid `[D, H, W]` (32×256×256 for SegVol).
    pub image_size: [usize; 3],
    /// Patch size `[pd, ph, pw]` (4×16×16).
    pub patch_size: [usize; 3],
    /// Encoder width (768 for ViT-B).
    pub hidden_size: usize,
    /// Encoder MLP width (3072).
    pub mlp_dim: usize,
    /// Encoder blocks (12).
    pub num_layers: usize,
    /// Encoder attention heads (12).
    pub num_heads: usize,
    /// Two-way transformer layers in the mask decoder (2).
    #[config(default = 2)]
    pub decoder_depth: usize,
    /// Decoder attention heads (8).
    #[config(default = 8)]
    pub decoder_heads: usize,
    /// Decoder MLP width (2048 in SegVol).
    #[config(default = 2048)]
    pub decoder_mlp_dim: usize,
    /// IoU head hidden width (256).
    #[config(default = 256)]
    pub iou_head_hidden: usize,
    /// LayerNorm epsilon (PyTorch default).
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
    /// Normalise sparse prompt coordinates in the frame of the dense image PE,
    /// `((h+0.5)/H, (d+0.5)/D, (w+0.5)/W)`, instead of SegVol's swapped
    /// `((d+0.5)/H, (h+0.5)/D, (w+0.5)/W)` (SEGVOL.md §5.3). Off for the released weights, which
    /// learned the swap; on for models segvol-rs trains from scratch, where the swap left box
    /// prompts unrelated to image positions and the model stuck at "no object".
    #[config(default = false)]
    pub aligned_prompt_coords: bool,
    /// Also give the prompts as a dense map added to the image embedding (segvol-rs's
    /// addition, off for the released weights): per token, a learned "box" vector times the
    /// fraction of the token inside the box, and learned "positive" / "negative" vectors at the
    /// tokens holding clicks. It adds `3·C` parameters (`prompt_encoder.dense_prompt_embed`)
    /// and gives a model trained from a few thousand samples direct access to where the prompt
    /// is, which SAM's sparse tokens alone teach only over far more data.
    #[config(default = false)]
    pub dense_prompts: bool,
    /// Give the previous mask (`Prompts::mask`) and the clicks to the model densely, at the
    /// token grid and at the decoder's mask resolution (segvol-rs's addition, off for the
    /// released weights; `crate::mask_prompt`). Needs patch sides that are multiples of 4.
    #[config(default = false)]
    pub mask_prompt: bool,
    /// With `mask_prompt`: the image itself (mean and spread per mask cell) joins the per-cell
    /// MLP, a light high-resolution path so masks can follow the image below the token size
    /// (segvol-rs's addition; `Prompts::image` carries the model-grid image).
    #[config(default = false)]
    pub mask_prompt_image: bool,
    /// With `mask_prompt`: a decode with a box and no previous mask (the box step) gives the
    /// mask prompt the box itself, filled, as the mask to start from (segvol-rs's addition,
    /// off for the released weights; `crate::mask_prompt::box_mask`). The model then refines
    /// the box instead of drawing the object from nothing; nnInteractive likewise gives its
    /// box as a filled channel. It adds no parameters.
    #[config(default = false)]
    pub box_mask_prompt: bool,
}

/// A configuration that cannot build a model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A preset name that is not `tiny`, `small` or `base`.
    #[error("unknown model preset `{name}`: expected base, small or tiny")]
    UnknownPreset {
        /// The name asked for.
        name: String,
    },
    /// `mask_prompt_image` without `mask_prompt`, the path it joins.
    #[error("mask_prompt_image needs mask_prompt")]
    MaskPromptImageAlone,
    /// `box_mask_prompt` without `mask_prompt`, the path it feeds.
    #[error("box_mask_prompt needs mask_prompt")]
    BoxMaskPromptAlone,
    /// `mask_prompt` with a patch side that is not a multiple of 4: the decoder's mask cells
    /// (4 per token per axis) would not be whole voxels.
    #[error("mask_prompt needs patch sides that are multiples of 4; axis {axis} has {patch}")]
    MaskPromptPatch {
        /// Axis 0 (D), 1 (H) or 2 (W).
        axis: usize,
        /// The patch size on that axis.
        patch: usize,
    },
    /// `hidden_size` is not a multiple of `num_heads` (MONAI's `ViT` check).
    #[error("hidden_size {hidden} is not divisible by num_heads {heads}")]
    HeadsDoNotDivide {
        /// The width.
        hidden: usize,
        /// The heads.
        heads: usize,
    },
    /// An image axis is not a multiple of the patch (MONAI's `PatchEmbeddingBlock` check).
    #[error("image axis {axis} of size {size} is not divisible by patch size {patch}")]
    PatchDoesNotDivide {
        /// Axis 0 (D), 1 (H) or 2 (W).
        axis: usize,
        /// The image size on that axis.
        size: usize,
        /// The patch size on that axis.
        patch: usize,
    },
    /// A size that must be positive is zero.
    #[error("`{field}` must be positive")]
    Zero {
        /// The field.
        field: &'static str,
    },
}

impl SegVolConfig {
    /// The released SegVol (`BAAI/SegVol` `config.json`: spatial 32×256×256, patch 4×16×16,
    /// ViT-B 768/12 layers/12 heads/3072).
    pub fn base() -> Self {
        SegVolConfig::new([32, 256, 256], [4, 16, 16], 768, 3072, 12, 12)
    }

    /// The configuration of the parity fixture (SEGVOL.md §13): 32×64×64, patch 4×16×16,
    /// hidden 96, MLP 384, 2 layers, 4 heads; decoder depth 2, 8 heads, MLP 256, IoU hidden 32.
    pub fn tiny() -> Self {
        SegVolConfig::new([32, 64, 64], [4, 16, 16], 96, 384, 2, 4)
            .with_decoder_mlp_dim(256)
            .with_iou_head_hidden(32)
    }

    /// The model segvol-rs trains and ships (`docs/model-card.md`): a 32×64×64 grid with
    /// 4×8×8 patches (8×8×8 = 512 tokens, as many as base has per 8×16×8 of its grid), ViT
    /// 192 wide, 768 MLP, 4 blocks, 6 heads; decoder depth 2, 8 heads, MLP 512, IoU hidden 64.
    /// Prompt coordinates are aligned with the image PE (`aligned_prompt_coords`) and prompts
    /// are also given densely (`dense_prompts`).
    /// Low-resolution logits are 32×32×32, upsampled ×2 in plane. Sized for training on a
    /// 2-core CPU within an hour: about 3.6 M parameters.
    pub fn small() -> Self {
        SegVolConfig::new([32, 64, 64], [4, 8, 8], 192, 768, 4, 6)
            .with_decoder_mlp_dim(512)
            .with_iou_head_hidden(64)
            .with_aligned_prompt_coords(true)
            .with_dense_prompts(true)
    }

    /// A preset by name: `tiny`, `small` or `base`.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "tiny" => Some(Self::tiny()),
            "small" => Some(Self::small()),
            "base" => Some(Self::base()),
            _ => None,
        }
    }

    /// [`Self::preset`], or an error that names the presets.
    ///
    /// # Errors
    /// [`ConfigError::UnknownPreset`] for a name that is not `tiny`, `small` or `base`.
    pub fn named(name: &str) -> Result<Self, ConfigError> {
        Self::preset(name).ok_or_else(|| ConfigError::UnknownPreset {
            name: name.to_string(),
        })
    }

    /// Token grid `[D/pd, H/ph, W/pw]` (8×16×16 for base).
    pub fn grid(&self) -> [usize; 3] {
        [0, 1, 2].map(|i| self.image_size[i] / self.patch_size[i].max(1))
    }

    /// Number of image tokens (2048 for base).
    pub fn num_tokens(&self) -> usize {
        self.grid().iter().product()
    }

    /// Length of one flattened patch (`pd·ph·pw`, 1024).
    pub fn patch_dim(&self) -> usize {
        self.patch_size.iter().product()
    }

    /// Checks what MONAI checks before building, plus positivity.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, v) in [
            ("hidden_size", self.hidden_size),
            ("mlp_dim", self.mlp_dim),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("decoder_heads", self.decoder_heads),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_heads) {
            return Err(ConfigError::HeadsDoNotDivide {
                hidden: self.hidden_size,
                heads: self.num_heads,
            });
        }
        for axis in 0..3 {
            let (size, patch) = (self.image_size[axis], self.patch_size[axis]);
            if patch == 0 {
                return Err(ConfigError::Zero {
                    field: "patch_size",
                });
            }
            if size == 0 || !size.is_multiple_of(patch) {
                return Err(ConfigError::PatchDoesNotDivide { axis, size, patch });
            }
            if self.mask_prompt_image && !self.mask_prompt {
                return Err(ConfigError::MaskPromptImageAlone);
            }
            if self.box_mask_prompt && !self.mask_prompt {
                return Err(ConfigError::BoxMaskPromptAlone);
            }
            if self.mask_prompt && !patch.is_multiple_of(4) {
                return Err(ConfigError::MaskPromptPatch { axis, patch });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_the_documented_shapes() {
        let b = SegVolConfig::base();
        b.validate().unwrap();
        assert_eq!(b.grid(), [8, 16, 16]);
        assert_eq!(b.num_tokens(), 2048);
        assert_eq!(b.patch_dim(), 1024);
        let t = SegVolConfig::tiny();
        t.validate().unwrap();
        assert_eq!(t.grid(), [8, 4, 4]);
        assert_eq!(t.num_tokens(), 128);
        let s = SegVolConfig::small();
        s.validate().unwrap();
        assert_eq!(s.grid(), [8, 8, 8]);
        assert_eq!(s.patch_dim(), 256);
        assert_eq!(SegVolConfig::preset("small"), Some(s));
        assert_eq!(SegVolConfig::preset("huge"), None);
    }

    #[test]
    fn bad_configs_are_rejected() {
        let c = SegVolConfig::new([32, 256, 256], [4, 16, 16], 768, 3072, 12, 7);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::HeadsDoNotDivide { .. })
        ));
        let c = SegVolConfig::new([30, 256, 256], [4, 16, 16], 768, 3072, 12, 12);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::PatchDoesNotDivide { axis: 0, .. })
        ));
    }
}
