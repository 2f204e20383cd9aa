//! The three promises of `segvol-atomic`, checked on real files.

use std::path::Path;

use segvol_atomic::{TMP_PREFIX, write_bytes, write_with};

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("{e}"))
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.starts_with(TMP_PREFIX))
        .collect()
}

#[test]
fn writes_the_bytes_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("out.txt");
    std::fs::write(&path, b"old contents, longer than the new").unwrap_or_else(|e| panic!("{e}"));
    write_bytes(&path, b"new").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        std::fs::read(&path).unwrap_or_else(|e| panic!("{e}")),
        b"new"
    );
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}

#[test]
fn a_failed_write_keeps_the_old_file_and_removes_the_temporary_one() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("out.nii.gz");
    std::fs::write(&path, b"old").unwrap_or_else(|e| panic!("{e}"));
    let mut seen = None;
    let r: Result<(), String> = write_with(
        &path,
        ".nii.gz",
        |tmp| {
            // Half a file, then the writer fails.
            std::fs::write(tmp, b"half").map_err(|e| e.to_string())?;
            seen = Some(tmp.to_path_buf());
            Err("the encoder failed".into())
        },
        |e| e.to_string(),
    );
    assert_eq!(r, Err("the encoder failed".to_string()));
    let tmp = seen.unwrap_or_else(|| panic!("the writer never ran"));
    // The writer saw a temporary name beside the target, ending in the suffix asked for.
    assert_eq!(tmp.parent(), Some(dir.path()));
    let name = tmp
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert!(
        name.starts_with(TMP_PREFIX) && name.ends_with(".nii.gz"),
        "{name}"
    );
    assert!(!tmp.exists(), "the temporary file is still there");
    assert_eq!(
        std::fs::read(&path).unwrap_or_else(|e| panic!("{e}")),
        b"old"
    );
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}

#[test]
fn a_missing_folder_is_an_error_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("no such folder").join("out.txt");
    let e = write_bytes(&path, b"x")
        .err()
        .unwrap_or_else(|| panic!("wrote into a missing folder"));
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    assert!(!dir.path().join("no such folder").exists());
}

/// The output's mode is what `File::create` gives in the same folder (0666 less the umask),
/// not tempfile's private 0600: the challenge's evaluator reads outputs as another user.
#[cfg(unix)]
#[test]
fn the_output_has_the_permissions_of_a_plain_create() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let plain = dir.path().join("plain.txt");
    std::fs::File::create(&plain).unwrap_or_else(|e| panic!("{e}"));
    let ours = dir.path().join("ours.txt");
    write_bytes(&ours, b"x").unwrap_or_else(|e| panic!("{e}"));
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{e}"))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&ours), mode(&plain));
}
