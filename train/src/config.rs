//! The training configuration: one TOML file (every field optional, defaults below), written
//! back resolved into the run folder.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::data::Augment;

/// Everything a training run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Seed of every random draw (samples, augmentation, clicks, rounds, initial weights).
    pub seed: u64,
    /// Threads for the base stages: the samples of a step are spread over them (one autodiff
    /// graph each, `base::parallel_grads`); 0 = one per core. The result does not depend on it.
    pub threads: usize,
    /// The model to train.
    pub model: ModelSection,
    /// Where the cases are.
    pub data: DataSection,
    /// Sampling and augmentation.
    pub augment: Augment,
    /// Stage 1: SegVol with box prompts.
    pub base_box: StageSettings,
    /// Stage 2: SegVol with box + point prompts and a boundary-weighted BCE.
    pub base_points: StageSettings,
    /// Stage 3: the GRU corrector on the frozen base model.
    pub corrector: CorrectorSettings,
    /// The final validation.
    pub validation: ValidationSettings,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            seed: 2025,
            threads: 0,
            model: ModelSection::default(),
            data: DataSection::default(),
            augment: Augment::default(),
            base_box: StageSettings::default(),
            base_points: StageSettings {
                steps: 600,
                lr: 2e-4,
                warmup: 20,
                boundary_weight: 2.0,
                ..StageSettings::default()
            },
            corrector: CorrectorSettings::default(),
            validation: ValidationSettings::default(),
        }
    }
}

/// The model section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// `tiny`, `small` or `base` (`segvol_core::SegVolConfig::preset`).
    pub preset: String,
    /// Weights to fine-tune from (any format `load_segvol` reads, e.g. the official
    /// `pytorch_model.bin` with preset `base`); none = from scratch.
    pub init: Option<PathBuf>,
    /// Add the mask prompt (`segvol_core::mask_prompt`): the previous mask and the clicks as
    /// dense prompts. Weights in `init` without it are extended (its output layers start at
    /// zero, so training starts from `init`'s predictions).
    pub mask_prompt: bool,
    /// With `mask_prompt`: the image joins its per-cell path (`mask_prompt_image`); weights
    /// without it are extended likewise.
    pub mask_prompt_image: bool,
    /// With `mask_prompt`: the box step starts from the filled box (`box_mask_prompt`; no
    /// parameters, so any weights take it).
    pub box_mask_prompt: bool,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            preset: "small".into(),
            init: None,
            mask_prompt: false,
            mask_prompt_image: false,
            box_mask_prompt: false,
        }
    }
}

/// The data section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// A folder of challenge npz with `gts` (or with an `npz/` folder and `manifest.json`, as
    /// `shared/data/train`).
    pub dir: PathBuf,
    /// Training case names (file stems); none = the manifest's split, else every file.
    pub train: Option<Vec<String>>,
    /// Validation case names; none = the manifest's split, else none.
    pub validation: Option<Vec<String>>,
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            dir: PathBuf::from("../shared/data/train"),
            train: None,
            validation: None,
        }
    }
}

/// One base-model stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StageSettings {
    /// Optimiser steps (0 skips the stage).
    pub steps: usize,
    /// Samples per step.
    pub batch: usize,
    /// Peak learning rate (AdamW).
    pub lr: f64,
    /// Learning rate at the end of the cosine.
    pub min_lr: f64,
    /// Linear warm-up steps.
    pub warmup: usize,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Gradient clipping by global norm (0 = off).
    pub grad_clip: f64,
    /// Quick validation every this many steps (0 = only at the end).
    pub val_every: usize,
    /// Checkpoint every this many steps.
    pub checkpoint_every: usize,
    /// Boundary-weighted BCE: weight `1 + α·exp(−d²/(2σ²))`, d = distance to the GT surface
    /// in voxels; α = 0 turns it off (stage 1).
    pub boundary_weight: f32,
    /// σ of the boundary weight, voxels.
    pub boundary_sigma: f32,
    /// Foreground voxels weigh `min(background/foreground, this)` in the BCE (1 = plain BCE).
    /// Without it a model trained from scratch settles on "no object" (the background is
    /// 95–99 % of a sample) and the Dice gradient through saturated sigmoids is too weak to
    /// leave that state.
    pub pos_weight_max: f32,
    /// Stage 2: probability that a sample with clicks has no box (clicks only).
    pub no_box_p: f64,
    /// Probability that a sample's box is widened in plane as the CVPR25 box generator widens
    /// its boxes ([`crate::data::widen_in_plane`]): the same margin on the four in-plane
    /// sides, drawn from `0..=loose_box_max` model-grid voxels. The challenge's margin is
    /// `0..=5 × dim/256` native voxels, up to 10 on a 512² CT, and the zoom-in windows run at
    /// native resolution, while the boxes of `box_prompt` grow by 0–2 (docs/model-card.md,
    /// "Loose boxes"). 0 (the default) draws nothing, so older runs replay unchanged.
    pub loose_box_p: f64,
    /// The largest in-plane margin of a widened box, in model-grid voxels.
    pub loose_box_max: usize,
    /// Stage 2: probability that a sample is a box step (no clicks), drawn before the clicks'
    /// count (`draw_rounds` gives a box step 1/28 of the time). 0 (the default) draws nothing.
    pub box_step_p: f64,
    /// Stop the stage after this many minutes of training (it then ends as if done).
    pub max_minutes: Option<f64>,
    /// End the stage after this many steps (1 ≤ n ≤ `steps`) while the learning rate keeps the
    /// schedule of `steps`: replays, step for step, a run that `max_minutes` cut short.
    pub stop_after: Option<usize>,
}

impl Default for StageSettings {
    fn default() -> Self {
        StageSettings {
            steps: 1500,
            batch: 2,
            lr: 5e-4,
            min_lr: 1e-5,
            warmup: 50,
            weight_decay: 1e-4,
            grad_clip: 1.0,
            val_every: 250,
            checkpoint_every: 50,
            boundary_weight: 0.0,
            boundary_sigma: 2.0,
            pos_weight_max: 5.0,
            no_box_p: 0.2,
            loose_box_p: 0.0,
            loose_box_max: 10,
            box_step_p: 0.0,
            max_minutes: None,
            stop_after: None,
        }
    }
}

/// The corrector stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorrectorSettings {
    /// Optimiser steps (0 skips the stage).
    pub steps: usize,
    /// Samples per step.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// End learning rate.
    pub min_lr: f64,
    /// Warm-up steps.
    pub warmup: usize,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Gradient clipping by global norm (0 = off).
    pub grad_clip: f64,
    /// Checkpoint every this many steps.
    pub checkpoint_every: usize,
    /// Rows per sampled set (K).
    pub k: usize,
    /// GRU hidden size.
    pub hidden: usize,
    /// Build the coordinate head.
    pub coord_head: bool,
    /// Largest coordinate shift, voxels.
    pub max_shift: f32,
    /// Error-set radius, voxels.
    pub radius: f64,
    /// Training samples whose image embeddings are computed once and cached (the base model
    /// is frozen).
    pub cache_samples: usize,
    /// Stage 2 of GRU_CORRECTION.md §7: each round re-decodes box + clicks before the
    /// correction (the D9 pipeline); false = stage 1 (corrections accumulate on the box logits).
    pub redecode: bool,
    /// Weight of the consistency term (λ_c).
    pub consistency: f32,
    /// Stop after this many minutes.
    pub max_minutes: Option<f64>,
    /// End after this many steps, keeping the schedule of `steps` (as in the base stages).
    pub stop_after: Option<usize>,
}

impl Default for CorrectorSettings {
    fn default() -> Self {
        CorrectorSettings {
            steps: 400,
            batch: 4,
            lr: 1e-3,
            min_lr: 1e-5,
            warmup: 20,
            weight_decay: 1e-5,
            grad_clip: 1.0,
            checkpoint_every: 50,
            k: 100,
            hidden: 128,
            coord_head: true,
            max_shift: 1.0,
            radius: 8.0,
            cache_samples: 200,
            redecode: true,
            consistency: 0.1,
            max_minutes: None,
            stop_after: None,
        }
    }
}

/// The final validation (the CVPR25 protocol on the validation cases).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationSettings {
    /// Run SegVol's zoom-in at every step.
    pub zoom_in: bool,
    /// Prompt-feedback points for variant (c).
    pub feedback: usize,
    /// Click steps after the box.
    pub click_steps: usize,
}

impl Default for ValidationSettings {
    fn default() -> Self {
        ValidationSettings {
            zoom_in: true,
            feedback: 10,
            click_steps: 5,
        }
    }
}

impl TrainConfig {
    /// Reads a TOML file (missing fields take their defaults; unknown fields are errors).
    ///
    /// # Errors
    /// [`TrainError::Config`] naming the file.
    pub fn from_file(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::Config {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        Self::from_toml(&text).map_err(|detail| TrainError::Config {
            path: path.to_path_buf(),
            detail,
        })
    }

    /// Parses TOML text.
    ///
    /// # Errors
    /// The parser's message.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let c: TrainConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.check()?;
        Ok(c)
    }

    /// The resolved config as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks values no run could use.
    ///
    /// # Errors
    /// What is wrong.
    pub fn check(&self) -> Result<(), String> {
        if segvol_core::SegVolConfig::preset(&self.model.preset).is_none() {
            return Err(format!(
                "model.preset `{}`: expected tiny, small or base",
                self.model.preset
            ));
        }
        for (name, s) in [
            ("base_box", &self.base_box),
            ("base_points", &self.base_points),
        ] {
            if s.batch == 0 || s.lr.is_nan() || s.lr <= 0.0 || s.checkpoint_every == 0 {
                return Err(format!(
                    "{name}: batch, lr and checkpoint_every must be positive"
                ));
            }
        }
        let c = &self.corrector;
        if c.batch == 0
            || c.k == 0
            || c.hidden == 0
            || c.checkpoint_every == 0
            || c.lr.is_nan()
            || c.lr <= 0.0
        {
            return Err(
                "corrector: batch, k, hidden, lr and checkpoint_every must be positive".into(),
            );
        }
        for (name, stop, steps, clock) in [
            (
                "base_box",
                self.base_box.stop_after,
                self.base_box.steps,
                self.base_box.max_minutes,
            ),
            (
                "base_points",
                self.base_points.stop_after,
                self.base_points.steps,
                self.base_points.max_minutes,
            ),
            ("corrector", c.stop_after, c.steps, c.max_minutes),
        ] {
            if let Some(n) = stop
                && !(1..=steps).contains(&n)
            {
                return Err(format!(
                    "{name}.stop_after {n}: need 1 ≤ n ≤ steps ({steps})"
                ));
            }
            // A clock would cut a replay short wherever the machine is slower.
            if stop.is_some() && clock.is_some() {
                return Err(format!(
                    "{name}: stop_after and max_minutes both set; give one (a step or a clock)"
                ));
            }
        }
        for (section, name, p) in [
            ("augment", "synthetic_p", self.augment.synthetic_p),
            ("augment", "component_p", self.augment.component_p),
            ("base_box", "loose_box_p", self.base_box.loose_box_p),
            ("base_box", "box_step_p", self.base_box.box_step_p),
            ("base_points", "loose_box_p", self.base_points.loose_box_p),
            ("base_points", "box_step_p", self.base_points.box_step_p),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{section}.{name} {p}: need 0 ≤ p ≤ 1"));
            }
        }
        let z = self.augment.zoom;
        if !(z[0] > 0.0 && z[1] >= z[0]) {
            return Err(format!("augment.zoom {z:?}: need 0 < min ≤ max"));
        }
        Ok(())
    }
}

/// Whether a stage ends before its last step, after `step` steps: its clock (`max_minutes`,
/// counted from `started`) ran out, or it reached `stop_after`.
pub(crate) fn ends_early(
    max_minutes: Option<f64>,
    stop_after: Option<usize>,
    started: std::time::Instant,
    step: usize,
) -> bool {
    max_minutes.is_some_and(|m| started.elapsed().as_secs_f64() > m * 60.0)
        || stop_after.is_some_and(|n| step >= n)
}

/// Warm-up then cosine: linear from 0 to `lr` over `warmup` steps, then cosine from `lr` to
/// `min_lr` at the last step.
///
/// # Examples
/// ```
/// use segvol_train::config::lr_at;
/// assert_eq!(lr_at(0, 100, 10, 1.0, 0.0), 0.1);          // first warm-up step
/// assert_eq!(lr_at(9, 100, 10, 1.0, 0.0), 1.0);          // end of warm-up
/// assert!((lr_at(99, 100, 10, 1.0, 0.0)).abs() < 1e-12); // end of the cosine
/// ```
pub fn lr_at(step: usize, steps: usize, warmup: usize, lr: f64, min_lr: f64) -> f64 {
    if step < warmup {
        return lr * (step + 1) as f64 / warmup as f64;
    }
    let span = steps.saturating_sub(warmup).saturating_sub(1).max(1);
    let t = ((step - warmup) as f64 / span as f64).min(1.0);
    min_lr + 0.5 * (lr - min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let c = TrainConfig::default();
        let back = TrainConfig::from_toml(&c.to_toml()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn partial_files_take_defaults_and_typos_are_errors() {
        let c = TrainConfig::from_toml("seed = 7\n[base_box]\nsteps = 10\n").unwrap();
        assert_eq!(c.seed, 7);
        assert_eq!(c.base_box.steps, 10);
        assert_eq!(c.base_box.batch, StageSettings::default().batch);
        let e = TrainConfig::from_toml("[base_box]\nstpes = 10\n").unwrap_err();
        assert!(e.contains("stpes"), "{e}");
        let e = TrainConfig::from_toml("[model]\npreset = \"huge\"\n").unwrap_err();
        assert!(e.contains("huge"), "{e}");
    }

    #[test]
    fn probabilities_outside_zero_one_are_refused_by_name() {
        for (section, key) in [
            ("augment", "synthetic_p"),
            ("augment", "component_p"),
            ("base_box", "loose_box_p"),
            ("base_box", "box_step_p"),
            ("base_points", "loose_box_p"),
            ("base_points", "box_step_p"),
        ] {
            let toml = |v: &str| format!("[{section}]\n{key} = {v}\n");
            let ok = TrainConfig::from_toml(&toml("1.0"));
            assert!(ok.is_ok(), "{section}.{key} = 1: {ok:?}");
            let e = TrainConfig::from_toml(&toml("1.5")).unwrap_err();
            assert!(
                e.contains(section) && e.contains(key) && e.contains("1.5"),
                "{e}"
            );
            let e = TrainConfig::from_toml(&toml("-0.1")).unwrap_err();
            assert!(e.contains(section) && e.contains(key), "{e}");
        }
    }

    #[test]
    fn stop_after_must_fall_within_the_schedule() {
        for section in ["base_box", "base_points", "corrector"] {
            let ok = TrainConfig::from_toml(&format!("[{section}]\nsteps = 10\nstop_after = 10\n"));
            assert!(ok.is_ok(), "{section}: {ok:?}");
            for bad in [0, 11] {
                let e = TrainConfig::from_toml(&format!(
                    "[{section}]\nsteps = 10\nstop_after = {bad}\n"
                ))
                .unwrap_err();
                assert!(e.contains(section) && e.contains("stop_after"), "{e}");
            }
            let e = TrainConfig::from_toml(&format!(
                "[{section}]\nsteps = 10\nstop_after = 5\nmax_minutes = 3.0\n"
            ))
            .unwrap_err();
            assert!(e.contains(section) && e.contains("max_minutes"), "{e}");
        }
    }
}
