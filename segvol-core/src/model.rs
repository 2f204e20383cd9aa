//! The whole model: encoder, prompt encoder, decoder, final upsampling (SEGVOL.md §3).

use burn::module::Module;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Tensor, backend::Backend};

use crate::SegVolConfig;
use crate::image_encoder::ImageEncoder;
use crate::mask_decoder::MaskDecoder;
use crate::prompt_encoder::{PromptEncoder, Prompts};

/// SegVol without the text tower. Create with [`SegVol::new`], then load weights with
/// [`crate::weights::load_segvol`].
#[derive(Module, Debug)]
pub struct SegVol<B: Backend> {
    pub(crate) image_encoder: ImageEncoder<B>,
    pub(crate) prompt_encoder: PromptEncoder<B>,
    pub(crate) mask_decoder: MaskDecoder<B>,
    image_size: [usize; 3],
}

/// Every intermediate of one decode, for parity checks and debugging.
#[derive(Debug, Clone)]
pub struct DecodeOutput<B: Backend> {
    /// `[1, T, C]`
    pub sparse: Tensor<B, 3>,
    /// `[1, C, gd, gh, gw]`
    pub dense: Tensor<B, 5>,
    /// Upscaled embedding `[1, C/8, 4gd, 4gh, 4gw]`.
    pub upscaled: Tensor<B, 5>,
    /// `[1, 1, 4gd, 4gh, 4gw]`
    pub low_res_logits: Tensor<B, 5>,
    /// `[1, 1, D, H, W]` on the model grid.
    pub logits: Tensor<B, 5>,
}

impl<B: Backend> SegVol<B> {
    /// A model for `config` with random weights.
    pub fn new(config: &SegVolConfig, device: &B::Device) -> Self {
        SegVol {
            image_encoder: ImageEncoder::new(config, device),
            prompt_encoder: PromptEncoder::new(config, device),
            mask_decoder: MaskDecoder::new(config, device),
            image_size: config.image_size,
        }
    }

    /// The model grid `[D, H, W]`.
    pub fn image_size(&self) -> [usize; 3] {
        self.image_size
    }

    /// The expensive step, once per volume: `[1, 1, D, H, W]` → `[1, C, gd, gh, gw]`.
    pub fn embed(&self, image: Tensor<B, 5>) -> Tensor<B, 5> {
        self.image_encoder.forward(image)
    }

    /// The dense positional encoding of the token grid, `[1, C, gd, gh, gw]`.
    pub fn image_pe(&self, device: &B::Device) -> Tensor<B, 5> {
        self.prompt_encoder.dense_pe(device)
    }

    /// The cheap step, per prompt: decode `prompts` against a cached embedding.
    pub fn decode(&self, embedding: Tensor<B, 5>, prompts: &Prompts) -> DecodeOutput<B> {
        let device = embedding.device();
        let (sparse, dense) = self.prompt_encoder.forward(prompts, &device);
        let pe = self.prompt_encoder.dense_pe(&device);
        let (upscaled, low) =
            self.mask_decoder
                .forward(embedding, pe, sparse.clone(), dense.clone());
        let logits = upsample_trilinear(low.clone(), self.image_size);
        DecodeOutput {
            sparse,
            dense,
            upscaled,
            low_res_logits: low,
            logits,
        }
    }
}

/// `F.interpolate(x, size, mode="trilinear", align_corners=False)` for a one-channel volume
/// whose depth does not change (SegVol's case: the low-res D equals the model D, so the D axis
/// is the identity and the operation is per-slice bilinear, SEGVOL.md §6.8).
///
/// # Panics
/// When the depth would change (a general 3-D resize is not written yet).
pub fn upsample_trilinear<B: Backend>(x: Tensor<B, 5>, size: [usize; 3]) -> Tensor<B, 5> {
    let [b, c, d, h, w] = x.dims();
    assert_eq!(
        d, size[0],
        "trilinear resize along D is not implemented; depth must stay {d}"
    );
    let slices = x.reshape([b * c * d, 1, h, w]);
    let up = interpolate(
        slices,
        [size[1], size[2]],
        InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false),
    );
    up.reshape([b, c, d, size[1], size[2]])
}
