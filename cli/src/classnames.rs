//! `segvol eval --text-from-class-names`: each case's class names (read by
//! [`segvol_harness::classnames`]) as SegVol text embeddings.

use anyhow::Result;
use segvol_backends::Backend;
use segvol_core::SegVol;
pub use segvol_harness::classnames::{ClassNames, manifest_path, read_class_names};

/// The text embeddings of `case`'s classes (`case` is the file name; its stem is looked up).
///
/// # Errors
/// The case is not in the manifest; the model has no text tower.
pub fn class_texts<B: Backend>(
    model: &SegVol<B>,
    names: &ClassNames,
    case: &str,
) -> Result<Vec<Option<Vec<f32>>>> {
    segvol_harness::classnames::names_of(names, case)?
        .iter()
        .map(|n| Ok(Some(model.embed_text(n)?)))
        .collect()
}
