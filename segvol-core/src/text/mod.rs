//! SegVol's text prompt: the frozen CLIP ViT-B/32 text tower (`transformers.CLIPTextModel(
//! CLIPTextConfig())`, SEGVOL.md §7) followed by `dim_align` (Linear 512 → hidden), and, with the
//! `text` cargo feature, CLIP's tokenizer and SegVol's prompt template.
//!
//! Module paths follow the checkpoint's key names (`text_encoder.clip_text_model.text_model.…`,
//! `text_encoder.dim_align.…`), so the official weights load with no renaming beyond the prefix
//! rules of [`crate::weights`].
//!
//! One deliberate choice: a name is encoded on its own, not padded in a batch as SegVol does.
//! The padding follows the end-of-text token, which the causal mask hides from it, so the
//! pooled output is the same (the test compares with SegVol's batched run); a name's embedding
//! can then be cached on its own.

mod attention;
mod embeddings;
mod layer;
#[cfg(feature = "text")]
mod tokenizer;

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

pub use attention::ClipAttention;
pub use embeddings::ClipTextEmbeddings;
pub use layer::{ClipEncoderLayer, ClipMlp};
#[cfg(feature = "text")]
pub use tokenizer::ClipTokenizer;

/// The process's one tokenizer (built on first use, about 30 ms).
#[cfg(feature = "text")]
pub fn tokenizer() -> &'static ClipTokenizer {
    static T: std::sync::OnceLock<ClipTokenizer> = std::sync::OnceLock::new();
    T.get_or_init(ClipTokenizer::new)
}

/// CLIP token ids of SegVol's prompt for `name` (start and end tokens included).
///
/// # Errors
/// [`TextError::NoTokenizer`] in a build without the `text` feature.
pub fn tokenize_prompt(name: &str) -> Result<Vec<u32>, TextError> {
    #[cfg(feature = "text")]
    {
        Ok(tokenizer().encode(&prompt(name)))
    }
    #[cfg(not(feature = "text"))]
    {
        let _ = name;
        Err(TextError::NoTokenizer)
    }
}

/// SegVol's prompt template (`TextEncoder.organ2tokens` in the original `network/model.py`).
pub const TEMPLATE: &str = "A computerized tomography of a {}.";

/// The prompt SegVol makes of a structure's name.
pub fn prompt(name: &str) -> String {
    TEMPLATE.replacen("{}", name, 1)
}

/// Shape of the text tower. [`TextConfig::clip_b32`] is `CLIPTextConfig()`'s defaults, what
/// SegVol builds; smaller ones serve tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextConfig {
    /// Vocabulary (49 408).
    pub vocab_size: usize,
    /// Width (512).
    pub width: usize,
    /// MLP width (2 048).
    pub mlp_dim: usize,
    /// Encoder layers (12).
    pub layers: usize,
    /// Attention heads (8).
    pub heads: usize,
    /// Positions (77): the longest token sequence the tower takes.
    pub max_positions: usize,
    /// The end-of-text id (49 407): the pooled output is the hidden state at its first
    /// occurrence.
    pub eos_token_id: u32,
    /// LayerNorm epsilon (1e-5).
    pub layer_norm_eps: f64,
    /// `dim_align`'s output: the SegVol model's width (768 for the released model).
    pub out_dim: usize,
}

impl TextConfig {
    /// `CLIPTextConfig()` with `dim_align` to `out_dim` (SEGVOL.md §7.1).
    pub fn clip_b32(out_dim: usize) -> Self {
        TextConfig {
            vocab_size: 49_408,
            width: 512,
            mlp_dim: 2048,
            layers: 12,
            heads: 8,
            max_positions: 77,
            eos_token_id: 49_407,
            layer_norm_eps: 1e-5,
            out_dim,
        }
    }
}

/// Why a text prompt could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    /// The loaded weights have no text tower.
    #[error(
        "{weights}: these weights carry no text tower (keys text_encoder.clip_text_model.text_model.* \
         and text_encoder.dim_align.* are missing); text prompts need SegVol's official \
         checkpoint (or a .bpk converted from it)"
    )]
    NotLoaded {
        /// The weights the model was loaded from.
        weights: String,
    },
    /// More tokens than the tower has positions. SegVol's code does not truncate (transformers
    /// would fail on the position lookup); segvol-rs refuses with this error instead.
    #[error(
        "text prompt {name:?} is {tokens} tokens long with SegVol's template; the text tower takes at most {max}"
    )]
    TooLong {
        /// The name.
        name: String,
        /// Its token count, start and end included.
        tokens: usize,
        /// The tower's positions.
        max: usize,
    },
    /// segvol-core was built without its `text` feature (CLIP's tokenizer): only token ids
    /// ([`crate::SegVol::embed_text_ids`]) can be encoded.
    #[error(
        "this build has no CLIP tokenizer (segvol-core's `text` cargo feature is off): names cannot be encoded"
    )]
    NoTokenizer,
    /// A token id outside the vocabulary, or no end-of-text token.
    #[error("token ids {ids:?} are not a CLIP sequence: {why}")]
    BadIds {
        /// The ids (first 16).
        ids: Vec<u32>,
        /// What is wrong.
        why: &'static str,
    },
}

/// `CLIPEncoder`: the layer stack.
#[derive(Module, Debug)]
pub struct ClipEncoder<B: Backend> {
    pub(crate) layers: Vec<ClipEncoderLayer<B>>,
}

/// `CLIPTextTransformer`: embeddings, encoder, final LayerNorm.
#[derive(Module, Debug)]
pub struct ClipTextTransformer<B: Backend> {
    pub(crate) embeddings: ClipTextEmbeddings<B>,
    pub(crate) encoder: ClipEncoder<B>,
    pub(crate) final_layer_norm: LayerNorm<B>,
}

/// `CLIPTextModel`: holds the transformer under `text_model` (the checkpoint's key level).
#[derive(Module, Debug)]
pub struct ClipTextModel<B: Backend> {
    pub(crate) text_model: ClipTextTransformer<B>,
}

/// SegVol's `TextEncoder`: the CLIP tower and `dim_align`.
#[derive(Module, Debug)]
pub struct TextEncoder<B: Backend> {
    pub(crate) clip_text_model: ClipTextModel<B>,
    pub(crate) dim_align: Linear<B>,
    vocab_size: usize,
    max_positions: usize,
    eos_token_id: u32,
}

impl<B: Backend> TextEncoder<B> {
    /// A tower of shape `c` (random values; load real ones with
    /// [`crate::weights::load_text_encoder`] or [`crate::weights::load_segvol`]).
    pub fn new(c: &TextConfig, device: &B::Device) -> Self {
        TextEncoder {
            clip_text_model: ClipTextModel {
                text_model: ClipTextTransformer {
                    embeddings: ClipTextEmbeddings::new(c, device),
                    encoder: ClipEncoder {
                        layers: (0..c.layers)
                            .map(|_| ClipEncoderLayer::new(c, device))
                            .collect(),
                    },
                    final_layer_norm: LayerNormConfig::new(c.width)
                        .with_epsilon(c.layer_norm_eps)
                        .init(device),
                },
            },
            dim_align: LinearConfig::new(c.width, c.out_dim).init(device),
            vocab_size: c.vocab_size,
            max_positions: c.max_positions,
            eos_token_id: c.eos_token_id,
        }
    }

    /// The pooled output (`pooler_output`: the final-LayerNorm hidden state at the first
    /// end-of-text token), `[1, width]`, and its `dim_align` projection, `[1, out_dim]`.
    ///
    /// # Errors
    /// [`TextError::BadIds`] for an id outside the vocabulary or no end-of-text id;
    /// [`TextError::TooLong`] past `max_positions`.
    pub fn forward_ids(&self, ids: &[u32]) -> Result<(Tensor<B, 2>, Tensor<B, 2>), TextError> {
        let bad = |why| TextError::BadIds {
            ids: ids.iter().take(16).copied().collect(),
            why,
        };
        if ids.len() > self.max_positions {
            return Err(TextError::TooLong {
                name: String::new(),
                tokens: ids.len(),
                max: self.max_positions,
            });
        }
        if ids.iter().any(|&i| i as usize >= self.vocab_size) {
            return Err(bad("an id is outside the vocabulary"));
        }
        let eos = ids
            .iter()
            .position(|&i| i == self.eos_token_id)
            .ok_or_else(|| bad("no end-of-text token"))?;
        let device = self.dim_align.weight.device();
        let t = Tensor::<B, 2, Int>::from_data(
            TensorData::new(ids.iter().map(|&i| i64::from(i)).collect(), [1, ids.len()]),
            &device,
        );
        let tm = &self.clip_text_model.text_model;
        let mut x = tm.embeddings.forward(t);
        for layer in &tm.encoder.layers {
            x = layer.forward(x);
        }
        let x = tm.final_layer_norm.forward(x);
        let width = x.dims()[2];
        let pooled = x.narrow(1, eos, 1).reshape([1, width]);
        let aligned = self.dim_align.forward(pooled.clone());
        Ok((pooled, aligned))
    }

    /// SegVol's text embedding of one token sequence (`dim_align(pooler_output)`), as values.
    ///
    /// # Errors
    /// As [`TextEncoder::forward_ids`].
    pub fn embed_ids(&self, ids: &[u32]) -> Result<Vec<f32>, TextError> {
        let (_, aligned) = self.forward_ids(ids)?;
        Ok(aligned
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap_or_default())
    }
}
