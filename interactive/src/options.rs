//! One set of engine settings for every front end: the CVPR25 predictor ([`crate::SegVolPredictor`])
//! and the interactive session ([`crate::InteractiveSession`]) both take a [`SessionOptions`], and
//! `segvol eval`, `predict`, `segment`, `demo` (batch) and `view`, `serve` (live) build theirs
//! from [`SessionOptions::batch`] and [`SessionOptions::live`] with their flags on top.

use segvol_core::pipeline::VoxelClick;

use crate::{
    DEFAULT_CLICK_RADIUS_MM, DEFAULT_GROW_RADIUS_MM, DEFAULT_NEGATIVE_REACH_MM, FitOptions,
};

/// How the engine answers prompts, beyond the model and corrector it was given.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionOptions {
    /// SegVol's zoom-in (SEGVOL.md §9.2–9.3) at every prediction: the ROI is re-encoded in
    /// windows at native resolution (finer, and several encoder passes per click instead of a
    /// re-decode of the cached embedding).
    pub zoom_in: bool,
    /// Clicks that stick ([`crate::honour`]): after the model answers, each click fixes its
    /// voxel and the wrong-labelled voxels connected to it within this radius (mm); `None`
    /// keeps the model's answer as it is.
    pub click_radius_mm: Option<f64>,
    /// Positive clicks that reach ([`crate::grow_clicks`]): after the model answers, each
    /// positive click adds the intensity-similar voxels connected to it within this radius
    /// (mm) and the box; `None` keeps the model's answer as it is.
    pub click_grow_mm: Option<f64>,
    /// Positive clicks that stop where the model is sure ([`crate::GROW_FLOOR`]): a grown
    /// region ([`Self::click_grow_mm`]) takes no voxel whose logit (with the box's
    /// intensities) is at or below −2, nor passes through one; `false`: intensity alone
    /// bounds it.
    pub grow_floor: bool,
    /// Negative clicks that reach ([`crate::clear_negative_clicks`]): after the model
    /// answers, each negative click clears the voxels connected to it that the model is
    /// unsure of, within this radius (mm) and the box; `None` keeps the model's answer.
    pub negative_reach_mm: Option<f64>,
    /// The box's own intensities ([`crate::BoxIntensity`]): with a box, the intensity model
    /// the model's sure voxels teach moves every voxel's logit in the box before the
    /// threshold; `false` keeps the model's answer.
    pub box_intensity: bool,
    /// Clicks that teach ([`crate::FitOptions::clicks`]): each click's
    /// neighbourhood joins the box's intensity model on its side (with
    /// [`Self::box_intensity`] only); `false`: the model's sure voxels alone teach it.
    pub click_teach: bool,
    /// The box's surround ([`crate::FitOptions::surround`]): the box's intensities against
    /// those just outside it join the box's intensity model (with [`Self::box_intensity`]
    /// only); `false`: the model's sure voxels (and the clicks) alone teach it.
    pub box_surround: bool,
    /// Sure voxels by rank ([`crate::FitOptions::by_rank`]): the box's top tenth of logits
    /// (above 0) and bottom 40 % (below 0) teach the box's intensity model; `false`: every
    /// voxel beyond ±[`crate::BOX_INTENSITY_CONFIDENCE`] (the rule before).
    pub sure_by_rank: bool,
    /// The box's smoothness ([`crate::smooth_box`]): with a box, mean-field passes let each
    /// voxel's logit in the box lean towards its neighbours' side before the threshold;
    /// `false` keeps each voxel's own.
    pub box_smoothing: bool,
    /// Prompt feedback (GRU_CORRECTION.md §6, D9), with a corrector only: after a correction,
    /// up to this many corrected voxels whose side changed go back to SegVol as point prompts;
    /// 0 = off (the corrector's write-back alone). Off everywhere by default
    /// (docs/model-card.md measures it).
    pub feedback: usize,
}

impl SessionOptions {
    /// For a person waiting on each click (`segvol view`, `segvol serve`): zoom-in off, clicks
    /// stick within [`DEFAULT_CLICK_RADIUS_MM`], positive clicks grow within
    /// [`DEFAULT_GROW_RADIUS_MM`] up to where the model is sure of background, negative
    /// clicks clear within
    /// [`DEFAULT_NEGATIVE_REACH_MM`], the box's intensities on (sure voxels by rank) and
    /// taught by the clicks and the box's surround, the box's smoothness on, no prompt
    /// feedback. The engines start with these ([`Default`]).
    pub const fn live() -> Self {
        SessionOptions {
            zoom_in: false,
            click_radius_mm: Some(DEFAULT_CLICK_RADIUS_MM),
            click_grow_mm: Some(DEFAULT_GROW_RADIUS_MM),
            grow_floor: true,
            negative_reach_mm: Some(DEFAULT_NEGATIVE_REACH_MM),
            box_intensity: true,
            click_teach: true,
            box_surround: true,
            sure_by_rank: true,
            box_smoothing: true,
            feedback: 0,
        }
    }

    /// For runs over cases (`segvol eval`, `predict`, `segment`, `demo`): as [`Self::live`]
    /// with the zoom-in on, the more accurate answer at the cost of time per click.
    pub const fn batch() -> Self {
        SessionOptions {
            zoom_in: true,
            ..Self::live()
        }
    }

    /// What teaches the box's intensity model ([`crate::BoxIntensity::fit_with`]) under these
    /// options: `clicks` when [`Self::click_teach`] is on (none otherwise), the surround and
    /// the ranks as [`Self::box_surround`] and [`Self::sure_by_rank`] say. The one mapping
    /// every front end uses (`object_mask`, `segvol segment`'s one-shot box).
    pub fn intensity_fit<'c>(&self, clicks: &'c [VoxelClick]) -> FitOptions<'c> {
        FitOptions {
            clicks: if self.click_teach { clicks } else { &[] },
            surround: self.box_surround,
            by_rank: self.sure_by_rank,
        }
    }
}

impl Default for SessionOptions {
    /// [`SessionOptions::live`].
    fn default() -> Self {
        Self::live()
    }
}
