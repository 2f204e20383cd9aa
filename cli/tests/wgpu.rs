//! The `wgpu` backend really run (issue 23): `segvol forward --backend wgpu` on the tiny parity
//! fixture against the logits the original PyTorch code wrote. Built only with `--features
//! wgpu`; CI runs it on Mesa's software Vulkan (lavapipe, `mesa-vulkan-drivers`), so it needs
//! no GPU:
//!
//! ```text
//! cargo test -p segvol-cli --features wgpu --test wgpu
//! ```
#![cfg(feature = "wgpu")]
// Test code: a panic with the failing value is the right outcome.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn shared() -> PathBuf {
    std::env::var_os("SEGVOL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

/// Largest |ours − PyTorch| over the logits of one `forward` run on `backend`.
fn forward_max_diff(backend: &str, dir: &Path) -> f64 {
    let f = shared().join("fixtures/segvol_tiny");
    let s = |n: &str| f.join(n).to_str().unwrap().to_string();
    let out = dir.join(format!("logits_{backend}.npy"));
    let t = std::time::Instant::now();
    let res = Command::new(env!("CARGO_BIN_EXE_segvol"))
        .args([
            "forward",
            "--backend",
            backend,
            "--weights",
            &s("weights_v1.pth"),
            "--config",
            "tiny",
            "--image",
            &s("image.npy"),
            "--box",
            &s("box.npy"),
            "--points",
            &s("points.npy"),
            "--labels",
            &s("labels.npy"),
            "--logits",
            out.to_str().unwrap(),
        ])
        // Vulkan loaders complain without one; any private folder does.
        .env("XDG_RUNTIME_DIR", dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "forward --backend {backend}: {err}");
    // The run says which backend computed the logits: no silent CPU fallback.
    let said = String::from_utf8_lossy(&res.stdout);
    assert!(said.contains(&format!("(backend {backend})")), "{said}");
    eprintln!(
        "forward --backend {backend}: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let got = segvol_io::read_npy(&out).unwrap();
    let want = segvol_io::read_npy(f.join("box_points_logits.npy")).unwrap();
    assert_eq!(got.shape, want.shape);
    let (g, w) = (got.to_f64().unwrap(), want.to_f64().unwrap());
    assert!(
        g.iter().all(|v| v.is_finite()),
        "non-finite logits on {backend}"
    );
    g.iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

#[test]
fn wgpu_reproduces_the_pytorch_logits() {
    let dir = tempfile::tempdir().unwrap();
    let max = forward_max_diff("wgpu", dir.path());
    eprintln!("wgpu vs PyTorch: max abs diff {max:.3e}");
    // Measured on lavapipe (Mesa 22.3, 2 cores): 1.3e-7 (docs/backends.md); the bound leaves
    // room for other drivers' float orderings and is ten times tighter than the CPU forward
    // test's.
    assert!(max <= 1e-5, "wgpu: max abs diff {max}");
}
