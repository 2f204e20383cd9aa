//! Challenge cases (`.npz`, the CVPR 2025 layout) read and checked for the protocol: every box
//! and click inside the image, `gts` the image's shape, the image as the challenge's uint8.

use std::path::Path;

use segvol_eval::protocol::{Box3, Clicks};
use segvol_io::{AnyVolume, ChallengeCase, ClickKind, Volume};

use crate::HarnessError;

type Result<T> = std::result::Result<T, HarnessError>;

/// What the protocol needs from a case file.
pub struct CaseInput {
    /// The image, uint8 (other types are clamped to 0..=255, as the challenge stores them).
    pub image: Vec<u8>,
    /// The image as float with its geometry (for previews and writing).
    pub volume: Volume<f32>,
    /// Shape `[z, y, x]`.
    pub dims: [usize; 3],
    /// Spacing as stored (1 mm when absent).
    pub spacing: [f64; 3],
    /// One box per class, when the case has boxes.
    pub boxes: Option<Vec<Box3>>,
    /// Clicks per class with their order.
    pub clicks: Vec<Clicks>,
    /// Ground truth, when present.
    pub gts: Option<Volume<u8>>,
    /// The previous prediction, when present.
    pub prev_pred: Option<Vec<u8>>,
}

/// Reads `path` and checks every box and click lies inside the image.
pub fn read_case(path: &Path, max_voxels: u64) -> Result<CaseInput> {
    check_voxels(path, max_voxels)?;
    case_input(ChallengeCase::read(path)?, path)
}

/// [`read_case`] on the bytes of an `.npz` (the demo's embedded sample); `name` stands for the
/// file in messages.
pub fn read_case_bytes(bytes: &[u8], name: &Path) -> Result<CaseInput> {
    case_input(ChallengeCase::from_npz_bytes(bytes, name)?, name)
}

/// Checks every box and click of `case` (read from `path`) lies inside the image.
fn case_input(case: ChallengeCase, path: &Path) -> Result<CaseInput> {
    let imgs = case
        .imgs
        .as_ref()
        .ok_or_else(|| HarnessError::file(path, "no `imgs`"))?;
    let dims = imgs.dims();
    let volume = imgs.to_f32();
    segvol_io::check_image(path, dims, &volume.data)?;
    let image: Vec<u8> = match imgs {
        AnyVolume::U8(v) => v.data.clone(),
        _ => volume
            .data
            .iter()
            .map(|&v| v.clamp(0.0, 255.0) as u8)
            .collect(),
    };
    let boxes = case
        .boxes
        .as_ref()
        .map(|bs| {
            bs.iter()
                .enumerate()
                .map(|(i, b)| {
                    let (lo, hi) = b.zyx_inclusive();
                    if !(0..3).all(|a| lo[a] >= 0 && lo[a] <= hi[a] && (hi[a] as usize) < dims[a]) {
                        return Err(HarnessError::file(
                            path,
                            format!(
                                "box {} ({lo:?}..={hi:?}) is outside the volume {dims:?}",
                                i + 1
                            ),
                        ));
                    }
                    Ok(Box3 {
                        lo: lo.map(|v| v as usize),
                        hi: hi.map(|v| v as usize),
                    })
                })
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    let clicks: Vec<Clicks> = case
        .clicks
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if let Some(zyx) =
                c.fg.iter()
                    .chain(&c.bg)
                    .find(|zyx| (0..3).any(|a| zyx[a] >= dims[a]))
            {
                return Err(HarnessError::file(
                    path,
                    format!(
                        "class {} click {zyx:?} is outside the volume {dims:?}",
                        i + 1
                    ),
                ));
            }
            let order = case
                .clicks_order
                .as_ref()
                .and_then(|o| o.get(i))
                .map(|o| o.iter().map(|k| k.map(|k| k == ClickKind::Fg)).collect())
                .unwrap_or_default();
            Ok(Clicks {
                fg: c.fg.clone(),
                bg: c.bg.clone(),
                order,
            })
        })
        .collect::<Result<_>>()?;
    if let Some(g) = &case.gts
        && g.dims != dims
    {
        return Err(HarnessError::file(
            path,
            format!("`imgs` {dims:?} and `gts` {:?} differ in shape", g.dims),
        ));
    }
    Ok(CaseInput {
        image,
        volume,
        dims,
        spacing: case.spacing.unwrap_or([1.0; 3]),
        boxes,
        clicks,
        gts: case.gts,
        prev_pred: case.prev_pred.map(|v| v.data),
    })
}

/// Refuses `path` when its header declares more than `max` voxels, before anything is read
/// (the message names the CLI's `--max-voxels`, the limit's name wherever the harness runs).
pub fn check_voxels(path: &Path, max: u64) -> Result<()> {
    if let Some(n) = segvol_io::peek_voxels(path)
        && n > max
    {
        return Err(HarnessError::file(
            path,
            format!(
                "{n} voxels, more than --max-voxels {max}; crop or resample it, or raise \
                 --max-voxels if this machine has the memory (about 15 bytes per voxel)"
            ),
        ));
    }
    Ok(())
}
