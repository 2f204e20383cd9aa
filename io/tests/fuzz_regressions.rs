//! Replays, without the fuzzer, every input the fuzz targets (`fuzz/`) found a failure with,
//! and the seed corpus, through the same calls: none may panic, and each crash input must now
//! be refused cleanly. File name prefix = target (`nifti-`, `npz-`, `npy-`, `pickle-`,
//! `prompt-`); for `nifti-` the first byte picks `.nii.gz` (odd) or `.nii`, as in the target.

// Test code: a panic with the failing value is the right outcome.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

fn replay(target: &str, data: &[u8], tmp: &Path) -> Option<String> {
    match target {
        "nifti" => {
            let (&sel, body) = data.split_first()?;
            let p = tmp.join(if sel & 1 == 1 { "in.nii.gz" } else { "in.nii" });
            std::fs::write(&p, body).unwrap();
            let _ = segvol_io::peek_voxels(&p);
            segvol_io::read_nifti(&p).err().map(|e| e.to_string())
        }
        "npz" => {
            let p = tmp.join("in.npz");
            std::fs::write(&p, data).unwrap();
            let _ = segvol_io::peek_voxels(&p);
            segvol_io::ChallengeCase::read(&p)
                .err()
                .map(|e| e.to_string())
        }
        "npy" => segvol_io::npy::parse_npy(Path::new("x.npy"), "x", data)
            .err()
            .map(|e| e.to_string()),
        "pickle" => segvol_io::pickle::read_pickle(data).err().map(|e| e.detail),
        "prompt" => {
            let s = std::str::from_utf8(data).ok()?;
            let _ = segvol_io::prompt::parse_clicks(s);
            let _ = segvol_io::prompt::parse_zyx(s, "--spacing");
            segvol_io::prompt::parse_box(s, Some([7, 9, 11]))
                .err()
                .map(|e| e.0)
        }
        other => panic!("unknown target {other}"),
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn crash_inputs_are_refused_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let found = files(&dir);
    assert!(!found.is_empty());
    for f in found {
        let name = f.file_name().unwrap().to_str().unwrap().to_string();
        let target = name.split('-').next().unwrap();
        // Every input kept here once panicked or exhausted memory. Now none panics; those that
        // asked for impossible memory (`-oom-`) are refused by the check that runs before
        // anything is allocated (its own message: a refusal from reading a truncated stream
        // after the allocation would not do, since overcommit lets the allocation succeed),
        // the others may be valid.
        let err = replay(target, &std::fs::read(&f).unwrap(), tmp.path());
        if name.contains("-oom-") {
            let e = err.as_deref().unwrap_or_else(|| panic!("{name}: accepted"));
            let before_alloc = match target {
                "nifti" => e.contains("more than a") && e.contains("file can hold"),
                "npy" => e.contains("more than this reader accepts"),
                _ => false,
            };
            assert!(before_alloc, "{name}: not refused before allocating: {e}");
        }
        eprintln!("{name}: {}", err.as_deref().unwrap_or("accepted"));
    }
}

#[test]
fn seed_corpus_replays_without_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let mut n = 0;
    for target in ["nifti", "npz", "npy", "pickle", "prompt"] {
        for f in files(&seeds.join(target)) {
            let _ = replay(target, &std::fs::read(&f).unwrap(), tmp.path());
            n += 1;
        }
    }
    assert!(n >= 10, "{n} seeds");
}
