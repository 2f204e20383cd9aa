//! Determinism (issue 15): the same inputs give bit-identical masks and logits across runs and
//! across CPU thread counts (the shipped model, zoom-in on, the corrector on for the clicks).

// Test code: a panic with the failing value is the right outcome.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::shared;

/// Segments with `threads` worker threads; returns (mask file bytes, logits file bytes).
fn segment(dir: &Path, tag: &str, threads: &str) -> (Vec<u8>, Vec<u8>) {
    let (mask, logits) = (
        dir.join(format!("{tag}.nii.gz")),
        dir.join(format!("{tag}.npy")),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_segvol"))
        .args(["segment", "--image"])
        .arg(shared().join("data/nifti/mr_abdomen_multi3_img.nii.gz"))
        .args([
            "--box",
            "4,30,30,15,80,100",
            "--points",
            "10,60,60,fg;8,70,50,bg",
        ])
        .args(["--corrector", "shipped", "--out"])
        .arg(&mask)
        .arg("--logits")
        .arg(&logits)
        .env("RAYON_NUM_THREADS", threads)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (std::fs::read(mask).unwrap(), std::fs::read(logits).unwrap())
}

#[test]
fn masks_are_bit_identical_across_runs_and_thread_counts() {
    let dir = tempfile::tempdir().unwrap();
    let a = segment(dir.path(), "a", "2");
    let b = segment(dir.path(), "b", "2");
    let one = segment(dir.path(), "one", "1");
    let three = segment(dir.path(), "three", "3");
    assert!(a.0 == b.0 && a.1 == b.1, "two runs differ");
    assert!(a.0 == one.0 && a.1 == one.1, "1 thread differs from 2");
    assert!(a.0 == three.0 && a.1 == three.1, "3 threads differ from 2");
}
