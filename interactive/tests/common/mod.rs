//! Shared by this crate's integration tests: the shared data folder and the tiny parity model
//! (and corrector) every test here runs.

// Each test binary uses its own subset of these.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use segvol_backends::Flex;
use segvol_core::{SegVol, SegVolConfig};
use segvol_gru::GruCorrector;

/// `../shared` beside the checkout, or `$SEGVOL_SHARED`.
pub fn shared() -> PathBuf {
    std::env::var_os("SEGVOL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

/// SegVol `tiny` with the PyTorch parity fixture's weights.
pub fn tiny_model() -> SegVol<Flex> {
    let device = Default::default();
    let mut model = SegVol::<Flex>::new(&SegVolConfig::tiny(), &device);
    segvol_core::weights::load_segvol(
        &mut model,
        shared().join("fixtures/segvol_tiny/weights.safetensors"),
    )
    .unwrap();
    model
}

/// The GRU corrector test fixture.
pub fn tiny_corrector() -> GruCorrector<Flex> {
    segvol_gru::load_corrector::<Flex>(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../gru-corrector/tests/data/corrector.safetensors"),
        &Default::default(),
    )
    .unwrap()
}
