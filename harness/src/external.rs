//! [`ExternalPredictor`]: any program as a model under the CVPR 2025 protocol, run exactly the
//! way the official evaluator (`CVPR25_iter_eval.py`, commit 748e862) runs a team's container:
//! a workspace with `inputs/` and `outputs/`, the case npz in `inputs/` (the original file at
//! the box step; from the first click on, rewritten with `imgs`, `spacing`, `clicks`,
//! `clicks_order`, `prev_pred` and `boxes` when the case has them), the command run in the
//! workspace, and `outputs/<case>.npz`'s `segs` read back. So any tool can be scored by our
//! evaluator without Docker.
//!
//! Deliberate differences from the official loop, none of which changes a metric:
//! - each case gets a fresh workspace (the official one keeps `outputs/` for the whole run, so
//!   earlier cases' outputs are still there; it removes each case's input when the case ends);
//! - the step time is the wall time of the command alone, as there, but our runner also counts
//!   the writing of the input npz (the official loop writes it before starting the clock).
//!
//! As there, the command's exit status is not an error, a missing output counts as an all-zero
//! prediction, and `outputs/` is not cleared between steps (a step that writes nothing reuses
//! the previous file). A `segs` of the wrong shape is an error (the official loop would crash).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use segvol_eval::protocol::{PredictRequest, Predictor};
use segvol_io::{ChallengeCase, ClassClicks, ClickKind, Volume};

/// Errors of an external predictor.
#[derive(Debug, thiserror::Error)]
pub enum ExternalError {
    /// Reading or writing a case file.
    #[error(transparent)]
    Io(#[from] segvol_io::IoError),
    /// The workspace could not be made, or the command could not be started.
    #[error("{}: {detail}", path.display())]
    Workspace {
        /// The folder or program.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The predictor wrote a `segs` that does not fit the case.
    #[error("{}: {detail}", path.display())]
    BadOutput {
        /// The output file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
}

/// One step's record of the command.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandRun {
    /// Protocol step (1 = box).
    pub step: usize,
    /// Wall time of the command alone, seconds.
    pub seconds: f64,
    /// Its exit code (`None` when killed by a signal).
    pub exit_code: Option<i32>,
    /// Whether `outputs/<case>` existed after it.
    pub wrote_output: bool,
}

/// A shell command (`sh -c`) as a protocol predictor for one case.
pub struct ExternalPredictor {
    command: String,
    work: PathBuf,
    name: String,
    original: PathBuf,
    base: ChallengeCase,
    keep_gts: bool,
    /// Every command run of this case, in order.
    pub runs: Vec<CommandRun>,
}

impl ExternalPredictor {
    /// A predictor for the case file `case` that runs `command` in a fresh workspace `work`
    /// (created; emptied when it exists). `keep_gts`: pass `gts` on to the predictor, as the
    /// official loop does for training cases whose GT sits in the case file.
    ///
    /// # Errors
    /// [`ExternalError::Io`] when the case cannot be read, [`ExternalError::Workspace`] when
    /// the workspace cannot be made.
    pub fn new(
        command: &str,
        work: &Path,
        case: &Path,
        keep_gts: bool,
    ) -> Result<ExternalPredictor, ExternalError> {
        let base = ChallengeCase::read(case)?;
        let ws = |e: std::io::Error| ExternalError::Workspace {
            path: work.to_path_buf(),
            detail: e.to_string(),
        };
        if work.exists() {
            std::fs::remove_dir_all(work).map_err(ws)?;
        }
        std::fs::create_dir_all(work.join("inputs")).map_err(ws)?;
        std::fs::create_dir_all(work.join("outputs")).map_err(ws)?;
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "case.npz".into());
        Ok(ExternalPredictor {
            command: command.to_string(),
            work: work.to_path_buf(),
            name,
            original: case.to_path_buf(),
            base,
            keep_gts,
            runs: Vec::new(),
        })
    }

    /// The workspace folder.
    pub fn workspace(&self) -> &Path {
        &self.work
    }

    fn write_input(&self, req: &PredictRequest<'_>) -> Result<(), ExternalError> {
        let input = self.work.join("inputs").join(&self.name);
        if req.step == 1 {
            // The box step gets the case file as it is (the official loop copies it).
            std::fs::copy(&self.original, &input).map_err(|e| ExternalError::Workspace {
                path: input.clone(),
                detail: format!("cannot copy the case: {e}"),
            })?;
            return Ok(());
        }
        let dims = req.dims;
        let prev = req
            .prev_pred
            .map_or_else(|| vec![0u8; dims.iter().product()], <[u8]>::to_vec);
        let prev = Volume::new(prev, dims, [1.0; 3]).map_err(|e| ExternalError::Workspace {
            path: input.clone(),
            detail: e.to_string(),
        })?;
        let clicks: Vec<ClassClicks> = req
            .clicks
            .iter()
            .map(|c| ClassClicks {
                fg: c.fg.clone(),
                bg: c.bg.clone(),
            })
            .collect();
        let order: Vec<Vec<Option<ClickKind>>> = req
            .clicks
            .iter()
            .map(|c| {
                c.order
                    .iter()
                    .map(|o| o.map(|fg| if fg { ClickKind::Fg } else { ClickKind::Bg }))
                    .collect()
            })
            .collect();
        let has_boxes = self.base.boxes.is_some();
        let mut keys = vec!["imgs"];
        if self.keep_gts && self.base.gts.is_some() {
            keys.push("gts");
        }
        keys.extend(["spacing", "clicks", "clicks_order", "prev_pred"]);
        if has_boxes {
            keys.push("boxes");
        }
        let case = ChallengeCase {
            imgs: self.base.imgs.clone(),
            gts: if self.keep_gts {
                self.base.gts.clone()
            } else {
                None
            },
            prev_pred: Some(prev),
            segs: None,
            spacing: Some(self.base.spacing.unwrap_or(req.spacing)),
            boxes: self.base.boxes.clone(),
            clicks: Some(clicks),
            clicks_order: Some(order),
            keys: keys.into_iter().map(String::from).collect(),
        };
        case.write(&input)?;
        Ok(())
    }

    fn read_output(&self, dims: [usize; 3]) -> Result<Vec<u8>, ExternalError> {
        let out = self.work.join("outputs").join(&self.name);
        if !out.is_file() {
            return Ok(vec![0; dims.iter().product()]);
        }
        let case = ChallengeCase::read(&out)?;
        let segs = case.segs.ok_or_else(|| ExternalError::BadOutput {
            path: out.clone(),
            detail: "no `segs` member".into(),
        })?;
        if segs.dims != dims {
            return Err(ExternalError::BadOutput {
                path: out,
                detail: format!("`segs` has shape {:?}, the image {dims:?}", segs.dims),
            });
        }
        Ok(segs.data)
    }
}

impl Predictor for ExternalPredictor {
    fn predict(
        &mut self,
        req: &PredictRequest<'_>,
    ) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
        self.write_input(req)?;
        let t = Instant::now();
        let status = Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .current_dir(&self.work)
            .status()
            .map_err(|e| ExternalError::Workspace {
                path: PathBuf::from("sh"),
                detail: format!("cannot start `{}`: {e}", self.command),
            })?;
        let seconds = t.elapsed().as_secs_f64();
        let wrote_output = self.work.join("outputs").join(&self.name).is_file();
        self.runs.push(CommandRun {
            step: req.step,
            seconds,
            exit_code: status.code(),
            wrote_output,
        });
        Ok(self.read_output(req.dims)?)
    }
}

/// A predictor that keeps every mask it returns (for `--save-masks`: the official evaluator
/// stores them as `all_segs`).
pub struct Recording<'a> {
    /// The predictor.
    pub inner: &'a mut dyn Predictor,
    /// The masks in step order (no entry for a skipped box step).
    pub masks: Vec<Vec<u8>>,
}

impl<'a> Recording<'a> {
    /// Wraps `inner`.
    pub fn new(inner: &'a mut dyn Predictor) -> Recording<'a> {
        Recording {
            inner,
            masks: Vec::new(),
        }
    }
}

impl Predictor for Recording<'_> {
    fn predict(
        &mut self,
        req: &PredictRequest<'_>,
    ) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
        let m = self.inner.predict(req)?;
        self.masks.push(m.clone());
        Ok(m)
    }
}
