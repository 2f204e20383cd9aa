//! Write-then-rename: the one way segvol-rs writes an output file.
//!
//! Every writer in the workspace (NIfTI, npz, DICOM SEG, weights, corrector files, run folders,
//! reports, previews) goes through [`write_with`] or [`write_bytes`], so all of them share three
//! promises:
//!
//! - a reader never sees half a file: the bytes go to a fresh temporary file in the target's
//!   folder (same file system), which is then renamed onto the target in one step;
//! - a failed write leaves nothing: on any error the temporary file is removed and an existing
//!   target is untouched;
//! - the output has the permissions a plain [`std::fs::File::create`] would give (0666 less the
//!   umask), not the temporary file's private 0600: the challenge reads outputs as another user.
//!
//! `tempfile` gives the unique name and the removal on drop; nothing in it (or in a crate we can
//! build offline) fixes the permissions and the folder choice for us, hence these few lines.

use std::io::Write as _;
use std::path::Path;

/// Prefix of the temporary files; a leftover one (after a crash or a kill) is safe to delete.
pub const TMP_PREFIX: &str = ".segvol-tmp-";

/// Runs `write` on a fresh temporary path in `path`'s folder (its name ends in `suffix`, which
/// some writers use to choose a format or compression), then renames it onto `path`.
///
/// `io` turns the errors of this function's own steps (creating the temporary file, the final
/// rename) into the caller's error type, which usually names `path`.
///
/// # Errors
/// Whatever `write` returns, or `io` of a failure to create or rename the temporary file. On
/// any error the temporary file is gone and `path` is as it was.
pub fn write_with<E>(
    path: &Path,
    suffix: &str,
    write: impl FnOnce(&Path) -> Result<(), E>,
    io: impl Fn(std::io::Error) -> E,
) -> Result<(), E> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut b = tempfile::Builder::new();
    b.prefix(TMP_PREFIX).suffix(suffix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Passed to open(2), so the umask applies as it would to `File::create`.
        b.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let tmp = b.tempfile_in(dir).map_err(&io)?;
    write(tmp.path())?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Writes `bytes` to `path` atomically (see [`write_with`]).
///
/// # Errors
/// The I/O error of creating, writing or renaming the temporary file; `path` is then untouched.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with(
        path,
        "",
        |tmp| std::fs::File::create(tmp)?.write_all(bytes),
        |e| e,
    )
}
