//! The model segvol-rs ships as its default: SegVol with the `small` preset and its GRU
//! corrector, trained on `shared/data/train` by `segvol train`: the chain of
//! `train/configs/shipped.toml`, `v2`, `v3`, `v4` and `v4c` (data, commands, seeds, hardware,
//! time and validation numbers in `docs/model-card.md`). Both are embedded in the binary, so
//! `segvol segment`, `eval` and `demo` work with no file; `--weights` / `--corrector` still
//! override them.
//!
//! The SegVol weights are stored as f16 (burnpack) and cast to f32 on load; the corrector is
//! f32 safetensors in PyTorch's layout. Together about 11 MB.
#![deny(missing_docs)]

use burn::tensor::backend::Backend;
use segvol_core::weights::{LoadReport, WeightsError, load_segvol_static};
use segvol_core::{SegVol, SegVolConfig};
use segvol_gru::{GruCorrector, GruLoadError, load_corrector_bytes};

/// The shipped SegVol weights (burnpack, f16).
pub const SEGVOL_BPK: &[u8] = include_bytes!("../weights/segvol-small.bpk");

/// The shipped GRU corrector (safetensors, PyTorch layout).
pub const CORRECTOR_SAFETENSORS: &[u8] = include_bytes!("../weights/corrector.safetensors");

/// Whether `demo`, `segment`, `predict`, `serve`, `view` and `bench --interactive` run the
/// shipped GRU corrector when no `--corrector` is named (one default for every command;
/// `docs/model-card.md` has the validation that chose it).
pub const CORRECTOR_BY_DEFAULT: bool = false;

/// The name errors and reports give the embedded SegVol weights.
pub const SEGVOL_NAME: &str = "<shipped segvol-small.bpk>";

/// The name errors give the embedded corrector.
pub const CORRECTOR_NAME: &str = "<shipped corrector.safetensors>";

/// The shipped model's configuration: the one its burnpack stores (the `small` preset, with
/// the flags it was trained with), `small` itself for a file without one.
pub fn config() -> SegVolConfig {
    segvol_core::weights::stored_config_bytes(SEGVOL_BPK, SEGVOL_NAME)
        .ok()
        .flatten()
        .unwrap_or_else(SegVolConfig::small)
}

/// The shipped SegVol, ready to use.
///
/// # Errors
/// [`WeightsError`] if the embedded weights do not fit the model (a build error, in practice:
/// a test checks it).
pub fn segvol<B: Backend>(device: &B::Device) -> Result<(SegVol<B>, LoadReport), WeightsError> {
    segvol_with(&config(), device)
}

/// The shipped SegVol under `config`: [`config`] with its run-time flags changed (e.g.
/// `box_mask_prompt`, which has no weights); a config the weights do not fit is refused.
///
/// # Errors
/// [`WeightsError`] when `config` does not fit the shipped weights.
pub fn segvol_with<B: Backend>(
    config: &SegVolConfig,
    device: &B::Device,
) -> Result<(SegVol<B>, LoadReport), WeightsError> {
    let mut m = SegVol::<B>::new(config, device);
    let r = load_segvol_static(&mut m, SEGVOL_BPK, SEGVOL_NAME)?;
    Ok((m, r))
}

/// The shipped GRU corrector.
///
/// # Errors
/// [`GruLoadError`] if the embedded file is broken (a test checks it is not).
pub fn corrector<B: Backend>(device: &B::Device) -> Result<GruCorrector<B>, GruLoadError> {
    load_corrector_bytes(CORRECTOR_SAFETENSORS, CORRECTOR_NAME, device)
}
