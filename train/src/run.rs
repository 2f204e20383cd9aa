//! The run folder: the resolved config, the split, a JSON-lines log, one folder per stage with
//! its latest checkpoint (model + optimiser + step, replaced atomically) and, once the stage is
//! done, its final weights.
//!
//! ```text
//! RUN/config.toml            the resolved config
//! RUN/split.json             which cases trained and which validated
//! RUN/log.jsonl              one JSON object per line: steps, validations, stage ends
//! RUN/<stage>/checkpoint/    model.mpk, optim.mpk, state.json (resume from here)
//! RUN/<stage>/final.bpk      the stage's weights (base stages; burnpack)
//! RUN/corrector/final.safetensors
//! RUN/loss.png               loss curves
//! RUN/validation.json, validation.md   the final validation table
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::config::TrainConfig;
use crate::data::Split;

/// The stages, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// SegVol with box prompts.
    BaseBox,
    /// SegVol with box + point prompts.
    BasePoints,
    /// The GRU corrector.
    Corrector,
}

impl Stage {
    /// All stages in order.
    pub const ALL: [Stage; 3] = [Stage::BaseBox, Stage::BasePoints, Stage::Corrector];

    /// Its folder and log name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::BaseBox => "base-box",
            Stage::BasePoints => "base-points",
            Stage::Corrector => "corrector",
        }
    }

    /// A number for seeding.
    pub fn id(self) -> u64 {
        self as u64
    }
}

impl std::str::FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Stage::ALL
            .into_iter()
            .find(|st| st.name() == s)
            .ok_or_else(|| format!("stage `{s}`: expected base-box, base-points or corrector"))
    }
}

/// Where a stage stands, saved with every checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageState {
    /// Steps done.
    pub step: usize,
    /// Wall seconds spent training so far.
    pub elapsed_s: f64,
    /// Samples seen so far.
    pub samples: usize,
    /// Whether the stage is complete (its final weights exist).
    pub done: bool,
}

pub use crate::optim::adamw;

type Rec = NamedMpkFileRecorder<FullPrecisionSettings>;

/// An open run folder.
#[derive(Debug)]
pub struct Run {
    /// The folder.
    pub dir: PathBuf,
    /// The resolved config.
    pub config: TrainConfig,
    /// The split.
    pub split: Split,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder, then renames.
///
/// # Errors
/// [`TrainError::Io`] naming the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    segvol_atomic::write_bytes(path, bytes).map_err(|e| io_err(path, e))
}

impl Run {
    /// Creates a new run folder (it must not exist, or be empty).
    ///
    /// # Errors
    /// [`TrainError::Io`] when the folder holds files or cannot be written.
    pub fn create(dir: &Path, config: TrainConfig, split: Split) -> Result<Run, TrainError> {
        if dir.exists()
            && std::fs::read_dir(dir)
                .map_err(|e| io_err(dir, e))?
                .next()
                .is_some()
        {
            return Err(io_err(
                dir,
                "the run folder already holds files (use --resume to continue it)",
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        write_atomic(&dir.join("config.toml"), config.to_toml().as_bytes())?;
        let split_json = serde_json::to_string_pretty(&split).unwrap_or_default();
        write_atomic(&dir.join("split.json"), split_json.as_bytes())?;
        Ok(Run {
            dir: dir.to_path_buf(),
            config,
            split,
        })
    }

    /// Opens an existing run folder for `--resume`.
    ///
    /// # Errors
    /// [`TrainError`] naming the missing or broken file.
    pub fn open(dir: &Path) -> Result<Run, TrainError> {
        let config = TrainConfig::from_file(&dir.join("config.toml"))?;
        let sp = dir.join("split.json");
        let text = std::fs::read_to_string(&sp).map_err(|e| io_err(&sp, e))?;
        let split: Split = serde_json::from_str(&text).map_err(|e| io_err(&sp, e))?;
        Ok(Run {
            dir: dir.to_path_buf(),
            config,
            split,
        })
    }

    /// Appends one JSON object to `log.jsonl`.
    ///
    /// # Errors
    /// [`TrainError::Io`].
    pub fn log(&self, value: &serde_json::Value) -> Result<(), TrainError> {
        let path = self.dir.join("log.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        writeln!(f, "{value}").map_err(|e| io_err(&path, e))
    }

    /// Every line of the log.
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("log.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// `RUN/<stage>`.
    pub fn stage_dir(&self, stage: Stage) -> PathBuf {
        self.dir.join(stage.name())
    }

    /// `RUN/<stage>/checkpoint`.
    pub fn checkpoint_dir(&self, stage: Stage) -> PathBuf {
        self.stage_dir(stage).join("checkpoint")
    }

    /// The stage's final weights file.
    pub fn final_weights(&self, stage: Stage) -> PathBuf {
        match stage {
            Stage::Corrector => self.stage_dir(stage).join("final.safetensors"),
            _ => self.stage_dir(stage).join("final.bpk"),
        }
    }

    /// The stage's saved state, if it has a checkpoint.
    pub fn state(&self, stage: Stage) -> Option<StageState> {
        let text = std::fs::read_to_string(self.checkpoint_dir(stage).join("state.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The stage's model, optimiser and state from its checkpoint, when it has one (else the
    /// given ones and a fresh state).
    ///
    /// # Errors
    /// [`TrainError::Io`] naming the checkpoint file that does not load.
    pub fn resume<B, M, O>(
        &self,
        stage: Stage,
        model: M,
        optim: O,
        device: &B::Device,
    ) -> Result<(M, O, StageState), TrainError>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
        O: Optimizer<M, B>,
    {
        let Some(state) = self.state(stage) else {
            return Ok((model, optim, StageState::default()));
        };
        let ck = self.checkpoint_dir(stage);
        let rec = Rec::new();
        let model = model
            .load_file(ck.join("model"), &rec, device)
            .map_err(|e| io_err(&ck.join("model.mpk"), e))?;
        let orec = rec
            .load(ck.join("optim"), device)
            .map_err(|e| io_err(&ck.join("optim.mpk"), e))?;
        Ok((model, optim.load_record(orec), state))
    }

    /// Writes `model`, `optim` and `state` as the stage's checkpoint ([`Run::save_checkpoint`]).
    ///
    /// # Errors
    /// [`TrainError::Io`].
    pub fn checkpoint<B, M, O>(
        &self,
        stage: Stage,
        state: &StageState,
        model: &M,
        optim: &O,
    ) -> Result<(), TrainError>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
        O: Optimizer<M, B>,
    {
        self.save_checkpoint(stage, state, |dir| {
            let rec = Rec::new();
            model
                .clone()
                .save_file(dir.join("model"), &rec)
                .map_err(|e| io_err(&dir.join("model.mpk"), e))?;
            rec.record(optim.to_record(), dir.join("optim"))
                .map_err(|e| io_err(&dir.join("optim.mpk"), e))
        })
    }

    /// Replaces the stage's checkpoint: `write` fills a fresh folder, which then takes the
    /// place of the old one (so a crash leaves the previous checkpoint whole).
    ///
    /// # Errors
    /// [`TrainError::Io`], or what `write` returns.
    pub fn save_checkpoint(
        &self,
        stage: Stage,
        state: &StageState,
        write: impl FnOnce(&Path) -> Result<(), TrainError>,
    ) -> Result<(), TrainError> {
        let sd = self.stage_dir(stage);
        std::fs::create_dir_all(&sd).map_err(|e| io_err(&sd, e))?;
        let tmp = tempfile::Builder::new()
            .prefix(".checkpoint-")
            .tempdir_in(&sd)
            .map_err(|e| io_err(&sd, e))?;
        write(tmp.path())?;
        let st = serde_json::to_string_pretty(state).unwrap_or_default();
        write_atomic(&tmp.path().join("state.json"), st.as_bytes())?;
        let dst = self.checkpoint_dir(stage);
        let old = sd.join(".checkpoint-old");
        let _ = std::fs::remove_dir_all(&old);
        if dst.exists() {
            std::fs::rename(&dst, &old).map_err(|e| io_err(&dst, e))?;
        }
        let kept = tmp.keep();
        std::fs::rename(&kept, &dst).map_err(|e| io_err(&dst, e))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }
}
