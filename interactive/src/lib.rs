//! The interactive loop of segvol-rs as a library: [`SegVolPredictor`] runs SegVol (and
//! optionally the GRU corrector) under the CVPR 2025 protocol with one encoder pass per case and
//! one re-decode per click; [`corrected_logits`] and [`decode`] are the pieces it is made of,
//! for tools that drive their own loop (`segvol segment`, `segvol eval`, `segvol train`'s
//! validation).
#![deny(missing_docs)]

pub mod engine;
pub mod honour;
pub mod intensity;
pub mod latency;
pub mod options;
mod predictor;
mod session;
pub mod smoothing;

pub use honour::{
    DEFAULT_CLICK_RADIUS_MM, DEFAULT_GROW_RADIUS_MM, DEFAULT_NEGATIVE_REACH_MM, GROW_FLOOR,
    GROW_TOLERANCE_SD, NEGATIVE_REACH_FLOOR, NEGATIVE_REACH_LOGIT, clear_negative_clicks,
    grow_clicks, grow_clicks_until, honour_clicks,
};
pub use intensity::{
    BOX_INTENSITY_CONFIDENCE, BoxIntensity, CLICK_TEACH_WEIGHT, FitOptions, SURE_BACKGROUND_SHARE,
    SURE_OBJECT_SHARE, SURROUND_VOXELS,
};
pub use options::SessionOptions;
pub use smoothing::{
    BOX_SMOOTHING_PASSES, BOX_SMOOTHING_WEIGHT, smooth_box, smooth_box_in, smooth_box_logits,
};

pub use engine::{
    DecodeOptions, ImageRef, ObjectPrompts, StepLog, corrected_logits, decode, object_logits,
    object_mask,
};
pub use predictor::{SegVolPredictor, click_sequence};
pub use session::{
    InteractiveSession, Prompts, SessionError, Update, VoxelBox, diff_box, union_box,
};
