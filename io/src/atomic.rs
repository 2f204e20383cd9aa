//! Write-then-rename, so a reader never sees half a file and a failed write leaves nothing.

use std::path::Path;

use crate::error::{IoError, Result};

/// Runs `write` on a fresh temporary path in `path`'s folder (ending in `suffix`, which some
/// writers use to choose compression), then renames it onto `path`. On any error the
/// temporary file is removed and `path` is untouched.
pub(crate) fn write_atomically(
    path: &Path,
    suffix: &str,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut b = tempfile::Builder::new();
    b.prefix(".segvol-tmp-").suffix(suffix);
    // A temporary file is private (0600); the output is not: the usual 0644 less the umask,
    // as a plain `File::create` would give (the challenge reads outputs as another user).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let tmp = b.tempfile_in(dir).map_err(|e| IoError::os(path, e))?;
    write(tmp.path())?;
    tmp.persist(path).map_err(|e| IoError::os(path, e.error))?;
    Ok(())
}
