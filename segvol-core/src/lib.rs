#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod bbox;
mod config;
pub mod fast;
pub mod image_encoder;
pub mod mask_decoder;
pub mod mask_prompt;
pub mod model;
pub mod pipeline;
pub mod prompt_encoder;
pub mod resize;
pub mod text;
pub mod weights;
mod windows;
pub mod zoom;

pub use config::{ConfigError, SegVolConfig};
pub use model::{DecodeOutput, SegVol};
pub use prompt_encoder::Prompts;
