#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod config;
pub mod image_encoder;
pub mod weights;

pub use config::{ConfigError, SegVolConfig};
