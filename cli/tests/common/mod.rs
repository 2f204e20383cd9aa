//! What several test binaries of the CLI share: the shared data folder and the tiny parity
//! fixture's `forward` run against the PyTorch logits.
// Each test binary uses part of this.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

/// `../shared` beside the repository, or `$SEGVOL_SHARED`.
pub fn shared() -> PathBuf {
    std::env::var_os("SEGVOL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

/// The arguments of `segvol forward` on the tiny parity fixture (box + points, the v1
/// weights), writing its logits to `out`.
pub fn forward_tiny_args(out: &Path) -> Vec<String> {
    let f = shared().join("fixtures/segvol_tiny");
    let s = |n: &str| f.join(n).to_str().unwrap().to_string();
    [
        "forward",
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
    ]
    .map(String::from)
    .to_vec()
}

/// Largest |ours − PyTorch| between the logits in `out` and the fixture's
/// `box_points_logits.npy` (same shape, all finite, asserted).
pub fn max_diff_to_pytorch(out: &Path) -> f64 {
    let got = segvol_io::read_npy(out).unwrap();
    let want =
        segvol_io::read_npy(shared().join("fixtures/segvol_tiny/box_points_logits.npy")).unwrap();
    assert_eq!(got.shape, want.shape);
    let (g, w) = (got.to_f64().unwrap(), want.to_f64().unwrap());
    assert!(g.iter().all(|v| v.is_finite()), "non-finite logits");
    g.iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}
