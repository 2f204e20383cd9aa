//! Training for segvol-rs (`segvol train`): SegVol from scratch or fine-tuned, in the seed's two
//! stages (box prompts, then box + point prompts), then the GRU corrector on the frozen model;
//! one run folder per run ([`run`]), each stage resumable from its last checkpoint, validation
//! on held-out volumes ([`validate`]).
//!
//! The loop is written here on burn's optimiser, gradient clipping and recorders rather than
//! burn-train's `Learner`: a SegVol step is not a batch of tensors through one forward (a sample
//! is one class of one volume with its own prompts, and stage 2 decodes several times per
//! sample to simulate clicks), and the corrector's rounds run host-side click simulation between
//! GRU steps; neither fits the `TrainStep` / batcher shape without hiding that logic.
#![deny(missing_docs)]

pub mod base;
pub mod bench;
pub mod config;
pub mod corrector;
pub mod data;
pub mod optim;
pub mod plot;
pub mod run;
pub mod synth;
pub mod validate;

use std::path::PathBuf;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use segvol_core::{SegVol, SegVolConfig};

pub use config::TrainConfig;
pub use run::{Run, Stage, StageState};

/// Why training stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The config file is unreadable or invalid.
    #[error("{}: {detail}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A data file or folder is unusable.
    #[error("{}: {detail}", path.display())]
    Data {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Reading or writing the run folder failed.
    #[error("{}: {detail}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The model or corrector rejected something.
    #[error("{0}")]
    Model(String),
    /// A weights file (`model.init`, a stage's weights) does not load; the error names it.
    #[error(transparent)]
    Weights(#[from] segvol_core::weights::WeightsError),
    /// The caller asked to stop (the progress callback returned `false`); the stage's
    /// checkpoint holds this step, and `--resume` continues from it.
    #[error("stopped in stage {stage} after step {step}; resume the run to continue")]
    Stopped {
        /// The stage.
        stage: &'static str,
        /// Steps done.
        step: usize,
    },
    /// The loss became NaN or infinite.
    #[error("stage {stage}: the loss is not finite at step {step} (lower the learning rate)")]
    Diverged {
        /// The stage.
        stage: &'static str,
        /// The step.
        step: usize,
    },
}

/// What the loop reports after each step (the CLI draws a progress bar from it). The
/// callback returns whether to go on: `false` checkpoints and stops with
/// [`TrainError::Stopped`].
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// The stage.
    pub stage: Stage,
    /// Steps done.
    pub step: usize,
    /// Steps planned.
    pub steps: usize,
    /// The step's loss.
    pub loss: f32,
    /// Samples per second of the step.
    pub samples_per_s: f64,
    /// A status line (validation, caching), when there is one.
    pub message: Option<String>,
}

/// The model config a run trains.
///
/// # Errors
/// [`TrainError::Model`] for an unknown preset.
pub fn model_config(run: &Run) -> Result<SegVolConfig, TrainError> {
    config_model(&run.config)
}

/// The model config `config` trains ([`model_config`] before the run exists).
fn config_model(config: &TrainConfig) -> Result<SegVolConfig, TrainError> {
    SegVolConfig::named(&config.model.preset)
        .map(|c| {
            c.with_mask_prompt(config.model.mask_prompt)
                .with_mask_prompt_image(config.model.mask_prompt_image)
                .with_box_mask_prompt(config.model.box_mask_prompt)
        })
        .map_err(|e| TrainError::Model(e.to_string()))
}

fn load_bpk<B: burn::tensor::backend::Backend>(
    config: &SegVolConfig,
    path: &std::path::Path,
    device: &B::Device,
) -> Result<SegVol<B>, TrainError> {
    let mut m = SegVol::<B>::new(config, device);
    segvol_core::weights::load_segvol(&mut m, path)?;
    Ok(m)
}

/// `config`'s model with the weights of `init`; weights saved without the mask prompt are
/// extended with it when `config` has it.
fn init_model<B: burn::tensor::backend::Backend>(
    config: &SegVolConfig,
    init: &std::path::Path,
    device: &B::Device,
) -> Result<SegVol<B>, TrainError> {
    let is_bpk = init
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("bpk"));
    let stored = if is_bpk {
        segvol_core::weights::stored_config(init)?
    } else {
        None
    };
    // Build what the file holds, load it, then add what the config asks for and it lacks.
    let (mp, mpi) = stored
        .as_ref()
        .map_or((config.mask_prompt, config.mask_prompt_image), |s| {
            (
                config.mask_prompt && s.mask_prompt,
                config.mask_prompt_image && s.mask_prompt_image,
            )
        });
    let build = config
        .clone()
        .with_mask_prompt(mp)
        .with_mask_prompt_image(mpi);
    let mut m = SegVol::<B>::new(&build, device);
    segvol_core::weights::load_segvol(&mut m, init)?;
    if config.mask_prompt_image && !mpi {
        m = m.with_mask_prompt_image(device);
    } else if config.mask_prompt && !mp {
        m = m.with_mask_prompt(device);
    }
    Ok(m)
}

/// Loads `config`'s `model.init` (when it has one) into its model once, on `device`, so that
/// a file that does not load is refused before a run folder is made. The model is dropped.
///
/// # Errors
/// [`TrainError::Model`] for an unknown preset, [`TrainError::Weights`] naming the file.
pub fn check_init<B: burn::tensor::backend::Backend>(
    config: &TrainConfig,
    device: &B::Device,
) -> Result<(), TrainError> {
    let Some(init) = &config.model.init else {
        return Ok(());
    };
    init_model::<B>(&config_model(config)?, init, device).map(drop)
}

/// The base model a run has produced so far: the last finished base stage's weights.
pub fn trained_base<B: burn::tensor::backend::Backend>(
    run: &Run,
    device: &B::Device,
) -> Result<Option<SegVol<B>>, TrainError> {
    let config = model_config(run)?;
    for stage in [Stage::BasePoints, Stage::BaseBox] {
        let p = run.final_weights(stage);
        if p.is_file() {
            return Ok(Some(load_bpk(&config, &p, device)?));
        }
    }
    Ok(None)
}

/// Runs the `stages` of a run in order, skipping finished ones and resuming interrupted ones.
/// A base stage starts from the previous base stage's weights, else from `model.init`, else
/// from seeded random weights.
///
/// # Errors
/// [`TrainError`] from data loading, a stage, or checkpoint I/O.
pub fn train_stages<B: AutodiffBackend>(
    run: &Run,
    stages: &[Stage],
    device: &B::Device,
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<(), TrainError> {
    let config = model_config(run)?;
    let dir = run.config.data.dir.clone();
    let data = data::load_train(&dir, &run.split)?;
    let val = data::load_validation(&dir, &run.split)?;
    let mut model: Option<SegVol<B>> = None;
    for stage in [Stage::BaseBox, Stage::BasePoints] {
        let finished =
            run.state(stage).is_some_and(|s| s.done) && run.final_weights(stage).is_file();
        if finished {
            model = Some(load_bpk(&config, &run.final_weights(stage), device)?);
            continue;
        }
        let steps = match stage {
            Stage::BaseBox => run.config.base_box.steps,
            _ => run.config.base_points.steps,
        };
        if !stages.contains(&stage) || steps == 0 {
            continue;
        }
        let start = match model.take() {
            Some(m) => m,
            None => {
                B::seed(device, run.config.seed);
                match &run.config.model.init {
                    Some(init) => init_model(&config, init, device)?,
                    None => SegVol::<B>::new(&config, device),
                }
            }
        };
        model = Some(base::train_base(
            run, stage, &config, start, &data, &val, device, progress,
        )?);
    }
    if stages.contains(&Stage::Corrector) && run.config.corrector.steps > 0 {
        let finished = run.state(Stage::Corrector).is_some_and(|s| s.done)
            && run.final_weights(Stage::Corrector).is_file();
        if !finished {
            let base = match model {
                Some(m) => m.valid(),
                None => trained_base::<B::InnerBackend>(run, device)?.ok_or_else(|| {
                    TrainError::Model(
                        "the corrector stage needs a trained base model (run base-box first)"
                            .into(),
                    )
                })?,
            };
            corrector::train_corrector::<B>(run, &base, &data, device, progress)?;
        }
    }
    let _ = plot::loss_curves(run);
    Ok(())
}
