//! Write-then-rename through `segvol-atomic` (the workspace's one atomic writer), with its own
//! I/O failures reported as [`IoError`]s naming the target.

use std::path::Path;

use crate::error::{IoError, Result};

/// Runs `write` on a fresh temporary path beside `path` (ending in `suffix`, which some
/// writers use to choose compression), then renames it onto `path`; see
/// [`segvol_atomic::write_with`].
pub(crate) fn write_atomically(
    path: &Path,
    suffix: &str,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    segvol_atomic::write_with(path, suffix, write, |e| IoError::os(path, e))
}
