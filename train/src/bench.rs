//! Training throughput (`segvol bench --train`): a base stage run for a few steps in a
//! scratch run folder, its samples per second read back from the run's log.

use std::path::PathBuf;

use burn::tensor::backend::AutodiffBackend;
use segvol_core::SegVol;

use crate::data::{load_train, resolve_split};
use crate::run::{Run, Stage};
use crate::{Progress, TrainConfig, TrainError, model_config};

/// What one throughput run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Throughput {
    /// Threads the step's samples were spread over (0 = one per core).
    pub threads: usize,
    /// Steps timed (after the warm-up steps).
    pub steps: usize,
    /// Median samples per second over the timed steps.
    pub median: f64,
    /// Samples per second over the timed steps as a whole.
    pub mean: f64,
    /// Median seconds per step spent after the samples' passes: the sum of their gradients
    /// and the optimizer's update, on one thread while the lanes wait.
    pub update_s: f64,
}

/// A scratch folder under the system's temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `stage` of `config` (its data, model, batch and augmentation; no validation, no
/// checkpoints but the last) from fresh weights for `warmup + steps` steps on `threads`
/// threads, and reports the samples per second of the last `steps`.
///
/// # Errors
/// [`TrainError`] from the data or the stage.
pub fn throughput<B: AutodiffBackend>(
    config: &TrainConfig,
    stage: Stage,
    warmup: usize,
    steps: usize,
    threads: usize,
    device: &B::Device,
) -> Result<Throughput, TrainError> {
    let mut cfg = config.clone();
    cfg.threads = threads;
    cfg.model.init = None;
    let total = warmup + steps;
    for s in [&mut cfg.base_box, &mut cfg.base_points] {
        s.steps = total;
        s.max_minutes = None;
        s.val_every = 0;
        s.checkpoint_every = total.max(1);
    }
    let split = resolve_split(
        &cfg.data.dir,
        cfg.data.train.as_deref(),
        cfg.data.validation.as_deref(),
    )?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir =
        std::env::temp_dir().join(format!("segvol-bench-train-{}-{nanos}", std::process::id()));
    let scratch = Scratch(dir);
    let run = Run::create(&scratch.0, cfg, split)?;
    let data = load_train(&run.config.data.dir, &run.split)?;
    let model_cfg = model_config(&run)?;
    B::seed(device, run.config.seed);
    let model = SegVol::<B>::new(&model_cfg, device);
    let mut quiet = |_: &Progress| true;
    crate::base::train_base(
        &run,
        stage,
        &model_cfg,
        model,
        &data,
        &[],
        device,
        &mut quiet,
    )?;
    let lines = run.log_lines();
    let timed = |key: &str| -> Vec<f64> {
        lines
            .iter()
            .filter(|l| l["stage"] == stage.name())
            .filter_map(|l| l[key].as_f64())
            .skip(warmup)
            .collect()
    };
    let rates = timed("samples_per_s");
    let median = median_of(&rates);
    // Samples over time: each step's batch divided by its rate is its duration.
    let batch = match stage {
        Stage::BaseBox => run.config.base_box.batch,
        _ => run.config.base_points.batch,
    } as f64;
    let secs: f64 = rates.iter().map(|r| batch / r).sum();
    Ok(Throughput {
        threads,
        steps: rates.len(),
        median,
        mean: batch * rates.len() as f64 / secs,
        update_s: median_of(&timed("update_s")),
    })
}

/// The upper median (NaN for none).
fn median_of(v: &[f64]) -> f64 {
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}
