//! The harness's one error type.

use std::path::{Path, PathBuf};

use crate::ExternalError;

/// What can go wrong in the harness. Every variant that concerns a file names it.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A file or folder that cannot be read, listed, made or written, or whose contents are
    /// not what the harness expects.
    #[error("{}: {detail}", path.display())]
    File {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// Options or inputs that do not fit together (`--shard 4/4`, shards of two splits).
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing a volume or case file (boxed: the reader's error is large).
    #[error(transparent)]
    Io(Box<segvol_io::IoError>),
    /// An external predictor's workspace or output.
    #[error(transparent)]
    External(Box<ExternalError>),
    /// The protocol failed on a case (a shape mismatch, or the predictor failed at a step).
    #[error("evaluating {case}: {source}")]
    Protocol {
        /// The case's file name.
        case: String,
        /// What failed.
        #[source]
        source: segvol_eval::protocol::ProtocolError,
    },
    /// The caller's model failed outside the protocol (loading it, making a predictor).
    #[error("{0}")]
    Model(Box<dyn std::error::Error + Send + Sync>),
}

impl From<segvol_io::IoError> for HarnessError {
    fn from(e: segvol_io::IoError) -> HarnessError {
        HarnessError::Io(Box::new(e))
    }
}

impl From<ExternalError> for HarnessError {
    fn from(e: ExternalError) -> HarnessError {
        HarnessError::External(Box::new(e))
    }
}

impl HarnessError {
    /// A [`HarnessError::File`] naming `path`.
    pub fn file(path: &Path, detail: impl std::fmt::Display) -> HarnessError {
        HarnessError::File {
            path: path.to_path_buf(),
            detail: detail.to_string(),
        }
    }
}

/// Writes `bytes` to `path` atomically (temporary file, then rename).
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), HarnessError> {
    segvol_atomic::write_bytes(path, bytes)
        .map_err(|e| HarnessError::file(path, format!("cannot write: {e}")))
}

/// Creates `dir` and its parents.
pub(crate) fn create_dir(dir: &Path) -> Result<(), HarnessError> {
    std::fs::create_dir_all(dir).map_err(|e| HarnessError::file(dir, format!("cannot create: {e}")))
}
