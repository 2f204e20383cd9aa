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

mod common;

use std::path::Path;
use std::process::Command;

/// Largest |ours − PyTorch| over the logits of one `forward` run on `backend`.
fn forward_max_diff(backend: &str, dir: &Path) -> f64 {
    let out = dir.join(format!("logits_{backend}.npy"));
    let t = std::time::Instant::now();
    let res = Command::new(env!("CARGO_BIN_EXE_segvol"))
        .args(common::forward_tiny_args(&out))
        .args(["--backend", backend])
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
    common::max_diff_to_pytorch(&out)
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
