//! `segvol train`: argument parsing and progress output for `segvol-train`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use segvol_backends::{AutodiffTask, dispatch_autodiff};
use segvol_train::data::{load_validation, resolve_split};
use segvol_train::validate::{markdown, validate_protocol};
use segvol_train::{Progress, Run, Stage, TrainConfig};

/// `segvol train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Training config (TOML; every field optional). Without it the defaults are used.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// New run folder (must not hold files).
    #[arg(long, conflicts_with = "resume")]
    pub out: Option<PathBuf>,
    /// Continue an interrupted run from its checkpoints (its own config.toml is used; the
    /// overrides below still apply to the stages' length and time).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Training data folder (overrides data.dir).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Model preset: tiny, small or base (overrides model.preset).
    #[arg(long)]
    pub preset: Option<String>,
    /// Weights to fine-tune from (overrides model.init).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Seed (overrides seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stages to run, comma-separated: base-box, base-points, corrector (default: all).
    #[arg(long, value_delimiter = ',')]
    pub stages: Option<Vec<String>>,
    /// Steps of a stage, `STAGE=N` (repeatable).
    #[arg(long = "steps", value_name = "STAGE=N")]
    pub steps: Vec<String>,
    /// Wall-time limit of a stage in minutes, `STAGE=M` (repeatable).
    #[arg(long = "minutes", value_name = "STAGE=M")]
    pub minutes: Vec<String>,
    /// End a stage after N steps while its learning rate keeps the schedule of its `steps`,
    /// `STAGE=N` (repeatable): replays a run that a time limit stopped. It replaces the
    /// stage's clock (the config's `max_minutes`); `--minutes` for the same stage is refused.
    #[arg(long = "stop-after", value_name = "STAGE=N")]
    pub stop_after: Vec<String>,
    /// Skip the final validation (the CVPR25 protocol on the validation cases).
    #[arg(long)]
    pub no_validate: bool,
    /// Backend (default: flex). Training runs on burn's Autodiff over it.
    #[arg(long)]
    pub backend: Option<String>,
    /// Several devices for data-parallel training (e.g. cuda:0,cuda:1): not available yet;
    /// one device is accepted.
    #[arg(long, value_delimiter = ',')]
    pub devices: Option<Vec<String>>,
}

fn stage_value(items: &[String]) -> Result<Vec<(Stage, String)>> {
    items
        .iter()
        .map(|s| {
            let (st, v) = s
                .split_once('=')
                .with_context(|| format!("`{s}`: expected STAGE=VALUE"))?;
            let stage: Stage = st.parse().map_err(anyhow::Error::msg)?;
            Ok((stage, v.to_string()))
        })
        .collect()
}

fn apply_overrides(cfg: &mut TrainConfig, a: &TrainArgs) -> Result<()> {
    for (stage, v) in stage_value(&a.steps)? {
        let n: usize = v
            .parse()
            .with_context(|| format!("--steps {}={v}: not a count", stage.name()))?;
        match stage {
            Stage::BaseBox => cfg.base_box.steps = n,
            Stage::BasePoints => cfg.base_points.steps = n,
            Stage::Corrector => cfg.corrector.steps = n,
        }
    }
    for (stage, v) in stage_value(&a.minutes)? {
        let m: f64 = v
            .parse()
            .with_context(|| format!("--minutes {}={v}: not a number", stage.name()))?;
        match stage {
            Stage::BaseBox => cfg.base_box.max_minutes = Some(m),
            Stage::BasePoints => cfg.base_points.max_minutes = Some(m),
            Stage::Corrector => cfg.corrector.max_minutes = Some(m),
        }
    }
    let clocked: Vec<Stage> = stage_value(&a.minutes)?
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    for (stage, v) in stage_value(&a.stop_after)? {
        let n: usize = v
            .parse()
            .with_context(|| format!("--stop-after {}={v}: not a count", stage.name()))?;
        if clocked.contains(&stage) {
            bail!(
                "--stop-after {0}={n} and --minutes {0}=…: give one (a step to stop at, or a clock)",
                stage.name()
            );
        }
        match stage {
            Stage::BaseBox => (cfg.base_box.stop_after, cfg.base_box.max_minutes) = (Some(n), None),
            Stage::BasePoints => {
                (cfg.base_points.stop_after, cfg.base_points.max_minutes) = (Some(n), None);
            }
            Stage::Corrector => {
                (cfg.corrector.stop_after, cfg.corrector.max_minutes) = (Some(n), None);
            }
        }
    }
    cfg.check().map_err(anyhow::Error::msg)
}

struct TrainTask {
    run: Run,
    stages: Vec<Stage>,
    validate: bool,
}

impl AutodiffTask for TrainTask {
    type Output = Result<()>;
    fn run<B: AutodiffBackend>(self, device: &B::Device) -> Result<()> {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {pos}/{len} {msg} (elapsed {elapsed}, ETA {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(250));
        let mut on_progress = |p: &Progress| {
            bar.set_prefix(p.stage.name());
            bar.set_length(p.steps as u64);
            bar.set_position(p.step as u64);
            match &p.message {
                Some(m) => bar.set_message(m.clone()),
                None => bar.set_message(format!(
                    "loss {:.4}, {:.2} samples/s",
                    p.loss, p.samples_per_s
                )),
            }
            true
        };
        segvol_train::train_stages::<B>(&self.run, &self.stages, device, &mut on_progress)?;
        bar.finish_and_clear();
        let lines = self.run.log_lines();
        for stage in &self.stages {
            if let Some(done) = lines
                .iter()
                .rev()
                .find(|l| l["stage"] == stage.name() && l["event"] == "done")
            {
                out!(
                    "{}: {} steps, {} samples in {:.1} min",
                    stage.name(),
                    done["step"],
                    done["samples"],
                    done["elapsed_s"].as_f64().unwrap_or(0.0) / 60.0
                );
            }
        }
        if !self.validate {
            return Ok(());
        }
        let dir = self.run.config.data.dir.clone();
        let val = load_validation(&dir, &self.run.split)?;
        if val.is_empty() {
            out!("no validation cases: final validation skipped");
            return Ok(());
        }
        let Some(model) = segvol_train::trained_base::<B::InnerBackend>(&self.run, device)? else {
            return Ok(());
        };
        let cpath = self.run.final_weights(Stage::Corrector);
        let corrector = cpath
            .is_file()
            .then(|| segvol_gru::load_corrector::<B::InnerBackend>(&cpath, device))
            .transpose()?;
        let spin = crate::case::spinner();
        let reports = validate_protocol(
            &model,
            corrector.as_ref(),
            &val,
            &self.run.config.validation,
            device,
            &mut |m| spin.set_message(format!("validating {m}")),
        )?;
        spin.finish_and_clear();
        let md = markdown(&reports);
        segvol_train::run::write_atomic(&self.run.dir.join("validation.md"), md.as_bytes())?;
        segvol_train::run::write_atomic(
            &self.run.dir.join("validation.json"),
            serde_json::to_string_pretty(&reports)?.as_bytes(),
        )?;
        out!("{md}");
        Ok(())
    }
}

/// Runs `segvol train`.
pub fn run(a: &TrainArgs) -> Result<()> {
    if let Some(d) = &a.devices
        && d.len() > 1
    {
        bail!(
            "--devices {}: data-parallel training over several devices is not available yet; \
             give one device (or --backend)",
            d.join(",")
        );
    }
    let backend_name = a
        .devices
        .as_ref()
        .and_then(|d| d.first().cloned())
        .or_else(|| a.backend.clone());
    let kind = crate::case::backend_kind(backend_name.as_deref())?;
    let run = if let Some(dir) = &a.resume {
        let mut run = Run::open(dir)?;
        apply_overrides(&mut run.config, a)?;
        run
    } else {
        let Some(out) = &a.out else {
            bail!("give --out RUN_DIR for a new run, or --resume RUN_DIR");
        };
        let mut cfg = match &a.config {
            Some(p) => TrainConfig::from_file(p)?,
            None => TrainConfig::default(),
        };
        if let Some(d) = &a.data {
            cfg.data.dir = d.clone();
        }
        if let Some(p) = &a.preset {
            cfg.model.preset = p.clone();
        }
        if let Some(i) = &a.init {
            cfg.model.init = Some(i.clone());
        }
        if let Some(s) = a.seed {
            cfg.seed = s;
        }
        apply_overrides(&mut cfg, a)?;
        // Before the run folder exists: a missing start leaves no half-made run behind.
        if let Some(init) = &cfg.model.init
            && !init.is_file()
        {
            bail!(
                "model.init {}: no such file (the weights this run starts from)",
                init.display()
            );
        }
        // …and one that does not load (truncated, another model's): loaded once on the CPU.
        segvol_train::check_init::<segvol_backends::Flex>(&cfg, &Default::default())
            .context("model.init (the weights this run starts from) does not load")?;
        let split = resolve_split(
            &cfg.data.dir,
            cfg.data.train.as_deref(),
            cfg.data.validation.as_deref(),
        )?;
        out!(
            "split ({}): {} training cases, {} validation cases",
            split.source,
            split.train.len(),
            split.validation.len()
        );
        Run::create(out, cfg, split)?
    };
    let stages: Vec<Stage> = match &a.stages {
        Some(s) => s
            .iter()
            .map(|x| x.parse::<Stage>().map_err(anyhow::Error::msg))
            .collect::<Result<_>>()?,
        None => Stage::ALL.to_vec(),
    };
    out!("run folder: {}  backend: {kind}", run.dir.display());
    dispatch_autodiff(
        kind,
        TrainTask {
            run,
            stages,
            validate: !a.no_validate,
        },
    )
}
