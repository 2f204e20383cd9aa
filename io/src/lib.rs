#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod atomic;
pub mod dicom;
mod error;
mod nifti_io;
pub mod npy;
mod npz;
pub mod pickle;
pub mod prompt;
mod volume;

use std::path::Path;

pub use error::{IoError, Result};
pub use nifti_io::{NiftiWritable, header_affine, nifti_bytes, read_nifti, write_nifti};
pub use npz::{
    ChallengeBox, ChallengeCase, ClassClicks, ClickKind, read_npy, read_npz, read_npz_from,
    write_npy, write_npz, write_segs,
};
pub use volume::{ShapeError, Volume, diagonal_affine};

/// Re-export of the `nifti` crate, whose header type [`Volume::header`] holds.
pub use nifti;

/// The voxel type a volume was stored with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// `uint8`
    U8,
    /// `int16`
    I16,
    /// `int32`
    I32,
    /// `float32`
    F32,
    /// `float64`
    F64,
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.nifti_name())
    }
}

/// A volume with the voxel type it was stored with.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyVolume {
    /// `uint8` voxels (masks, challenge images).
    U8(Volume<u8>),
    /// `int16` voxels (most CT).
    I16(Volume<i16>),
    /// `int32` voxels.
    I32(Volume<i32>),
    /// `float32` voxels (also any scaled integer NIfTI).
    F32(Volume<f32>),
    /// `float64` voxels.
    F64(Volume<f64>),
}

macro_rules! each {
    ($self:expr, $v:ident => $e:expr) => {
        match $self {
            AnyVolume::U8($v) => $e,
            AnyVolume::I16($v) => $e,
            AnyVolume::I32($v) => $e,
            AnyVolume::F32($v) => $e,
            AnyVolume::F64($v) => $e,
        }
    };
}

impl AnyVolume {
    /// The stored voxel type.
    pub fn dtype(&self) -> Dtype {
        match self {
            AnyVolume::U8(_) => Dtype::U8,
            AnyVolume::I16(_) => Dtype::I16,
            AnyVolume::I32(_) => Dtype::I32,
            AnyVolume::F32(_) => Dtype::F32,
            AnyVolume::F64(_) => Dtype::F64,
        }
    }

    /// Shape `[z, y, x]`.
    pub fn dims(&self) -> [usize; 3] {
        each!(self, v => v.dims)
    }

    /// Spacing `[z, y, x]` in mm.
    pub fn spacing(&self) -> [f64; 3] {
        each!(self, v => v.spacing)
    }

    /// Voxel → world affine.
    pub fn affine(&self) -> [[f64; 4]; 4] {
        each!(self, v => v.affine)
    }

    /// The values as `f32` (the model's input type), geometry kept.
    pub fn to_f32(&self) -> Volume<f32> {
        match self {
            AnyVolume::U8(v) => v.map(|&x| f32::from(x)),
            AnyVolume::I16(v) => v.map(|&x| f32::from(x)),
            AnyVolume::I32(v) => v.map(|&x| x as f32),
            AnyVolume::F32(v) => v.clone(),
            AnyVolume::F64(v) => v.map(|&x| x as f32),
        }
    }

    /// Smallest and largest value as `f64` (NaN skipped); `None` when empty or all NaN.
    pub fn min_max(&self) -> Option<(f64, f64)> {
        match self {
            AnyVolume::U8(v) => v.min_max().map(|(a, b)| (f64::from(a), f64::from(b))),
            AnyVolume::I16(v) => v.min_max().map(|(a, b)| (f64::from(a), f64::from(b))),
            AnyVolume::I32(v) => v.min_max().map(|(a, b)| (f64::from(a), f64::from(b))),
            AnyVolume::F32(v) => v.min_max().map(|(a, b)| (f64::from(a), f64::from(b))),
            AnyVolume::F64(v) => v.min_max(),
        }
    }

    /// The values as a label map: every voxel must be a whole number in 0..=255.
    ///
    /// # Errors
    /// A message naming the first voxel that is not a label.
    pub fn to_labels(&self) -> std::result::Result<Volume<u8>, String> {
        fn conv<T: Copy + Into<f64>>(v: &Volume<T>) -> std::result::Result<Volume<u8>, String> {
            let mut out = Vec::with_capacity(v.data.len());
            for (i, &x) in v.data.iter().enumerate() {
                let f: f64 = x.into();
                if f.fract() != 0.0 || !(0.0..=255.0).contains(&f) {
                    return Err(format!("voxel {i} has value {f}, not a label in 0..=255"));
                }
                out.push(f as u8);
            }
            v.with_data(out).map_err(|e| e.to_string())
        }
        match self {
            AnyVolume::U8(v) => Ok(v.clone()),
            AnyVolume::I16(v) => conv(v),
            AnyVolume::I32(v) => conv(v),
            AnyVolume::F32(v) => conv(v),
            AnyVolume::F64(v) => conv(v),
        }
    }
}

pub(crate) fn is_gz(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().to_ascii_lowercase().ends_with(".gz"))
}

/// The kinds of file [`read_image`] understands, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `.nii` or `.nii.gz`.
    Nifti,
    /// `.npz` (challenge case).
    Npz,
    /// `.npy` (one array).
    Npy,
    /// DICOM: a folder of slices, a `DICOMDIR`, or a `.dcm` file (for an output, a DICOM SEG).
    Dicom,
}

impl FileKind {
    /// The kind of `path` from its extension (case-insensitive); otherwise a folder, a
    /// `DICOMDIR`, a `.dcm` / `.dicom` name or a file with the DICOM marker is
    /// [`FileKind::Dicom`].
    ///
    /// # Errors
    /// [`IoError::UnknownFormat`].
    pub fn of(path: &Path) -> Result<FileKind> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        // The NIfTI / numpy names first: a folder called `x.nii.gz` is a mistaken NIfTI path
        // (its error says "directory"), not a DICOM folder.
        if name.ends_with(".nii") || name.ends_with(".nii.gz") {
            Ok(FileKind::Nifti)
        } else if name.ends_with(".npz") {
            Ok(FileKind::Npz)
        } else if name.ends_with(".npy") {
            Ok(FileKind::Npy)
        } else if dicom::is_dicom_input(path) {
            Ok(FileKind::Dicom)
        } else {
            Err(IoError::UnknownFormat {
                path: path.to_path_buf(),
            })
        }
    }
}

/// Reads one 3-D array from a `.npy` file (any numeric dtype), with unit spacing.
///
/// # Errors
/// [`IoError::BadNpy`] when the file is not a 3-D numeric array.
pub fn read_npy_volume(path: impl AsRef<Path>) -> Result<AnyVolume> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| IoError::os(path, e))?;
    let key = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let a = npy::parse_npy(path, &key, &bytes)?;
    // Accept (D,H,W) and singleton-led (1,D,H,W) / (1,1,D,H,W) model tensors.
    let squeezed: Vec<usize> = {
        let mut s = a.shape.clone();
        while s.len() > 3 && s[0] == 1 {
            s.remove(0);
        }
        s
    };
    if squeezed.len() != 3 {
        return Err(IoError::npy(
            path,
            &key,
            format!("expected a 3-D array, found shape {:?}", a.shape),
        ));
    }
    let dims = [squeezed[0], squeezed[1], squeezed[2]];
    let vals = a.to_f64().ok_or_else(|| {
        IoError::npy(
            path,
            &key,
            format!("expected numbers, found {}", a.dtype_name()),
        )
    })?;
    let mk = |e: ShapeError| IoError::npy(path, &key, e.to_string());
    Ok(match a.data {
        npy::NpyData::U8(v) => AnyVolume::U8(Volume::new(v, dims, [1.0; 3]).map_err(mk)?),
        npy::NpyData::I16(v) => AnyVolume::I16(Volume::new(v, dims, [1.0; 3]).map_err(mk)?),
        npy::NpyData::I32(v) => AnyVolume::I32(Volume::new(v, dims, [1.0; 3]).map_err(mk)?),
        npy::NpyData::F32(v) => AnyVolume::F32(Volume::new(v, dims, [1.0; 3]).map_err(mk)?),
        _ => AnyVolume::F64(Volume::new(vals, dims, [1.0; 3]).map_err(mk)?),
    })
}

/// Reads an image from NIfTI (`.nii`, `.nii.gz`), a challenge `.npz` (its `imgs`), a 3-D
/// `.npy`, or DICOM (a folder, DICOMDIR or file holding one image series), by extension.
///
/// # Errors
/// See [`read_nifti`], [`ChallengeCase::read`] and [`dicom::read_series`];
/// [`IoError::MissingKey`] for an `.npz` without `imgs`.
pub fn read_image(path: impl AsRef<Path>) -> Result<AnyVolume> {
    read_image_series(path, &dicom::SeriesPick::Only)
}

/// [`read_image`], choosing which series of a DICOM folder to read (ignored for other
/// formats).
///
/// # Errors
/// As [`read_image`].
pub fn read_image_series(path: impl AsRef<Path>, pick: &dicom::SeriesPick) -> Result<AnyVolume> {
    Ok(read_image_source(path, pick)?.0)
}

/// [`read_image_series`], with where a DICOM image came from (what a DICOM SEG of it
/// references); `None` for the other formats.
///
/// # Errors
/// As [`read_image`].
pub fn read_image_source(
    path: impl AsRef<Path>,
    pick: &dicom::SeriesPick,
) -> Result<(AnyVolume, Option<dicom::SeriesInfo>)> {
    let path = path.as_ref();
    let volume = match FileKind::of(path)? {
        FileKind::Dicom => {
            let s = dicom::read_series(path, pick)?;
            return Ok((s.volume, Some(s.info)));
        }
        FileKind::Nifti => read_nifti(path),
        FileKind::Npy => read_npy_volume(path),
        FileKind::Npz => ChallengeCase::read(path)?
            .imgs
            .ok_or_else(|| IoError::MissingKey {
                path: path.to_path_buf(),
                key: "imgs".into(),
            }),
    }?;
    Ok((volume, None))
}

/// Reads a label map (segmentation) from NIfTI, `.npy`, or an `.npz` key (`key`, default
/// `segs`, then `gts`, then `prev_pred`).
///
/// # Errors
/// As [`read_image`]; [`IoError::Invalid`] when a voxel is not a whole number in 0..=255.
pub fn read_labels(path: impl AsRef<Path>, key: Option<&str>) -> Result<Volume<u8>> {
    let path = path.as_ref();
    match FileKind::of(path)? {
        FileKind::Dicom => Err(IoError::Dicom {
            path: path.to_path_buf(),
            detail: "a DICOM SEG is read onto the grid of its image series: give the image \
                     series too (segvol_io::dicom::read_seg)"
                .into(),
        }),
        FileKind::Nifti | FileKind::Npy => {
            let v = read_image(path)?;
            v.to_labels().map_err(|d| IoError::invalid(path, d))
        }
        FileKind::Npz => {
            let case = ChallengeCase::read(path)?;
            let pick = |k: &str| match k {
                "segs" => case.segs.clone(),
                "gts" => case.gts.clone(),
                "prev_pred" => case.prev_pred.clone(),
                _ => None,
            };
            let found = match key {
                Some(k) => pick(k),
                None => ["segs", "gts", "prev_pred"].iter().find_map(|k| pick(k)),
            };
            found.ok_or_else(|| IoError::MissingKey {
                path: path.to_path_buf(),
                key: key.unwrap_or("segs").to_string(),
            })
        }
    }
}

/// Checks that an image can be segmented: no zero-sized axis, no NaN or infinite voxel, and
/// not one constant value (no structure to find: SegVol's normalisation would divide by a zero
/// spread). Every model command calls it on what it read from `path`.
///
/// # Errors
/// [`IoError::Invalid`] naming `path` and the problem.
pub fn check_image(path: &Path, dims: [usize; 3], data: &[f32]) -> Result<()> {
    if dims.contains(&0) {
        return Err(IoError::invalid(
            path,
            format!("the image has shape {dims:?}: an axis of size 0 holds no voxel"),
        ));
    }
    if let Some(first) = data.iter().position(|v| !v.is_finite()) {
        let bad = data.iter().filter(|v| !v.is_finite()).count();
        return Err(IoError::invalid(
            path,
            format!(
                "the image holds {bad} NaN or infinite voxels (the first at flat index \
                 {first}); fix or mask them before segmenting"
            ),
        ));
    }
    if let Some(&v0) = data.first()
        && data.iter().all(|&v| v == v0)
    {
        return Err(IoError::invalid(
            path,
            format!("every voxel of the image is {v0}: a constant image has nothing to segment"),
        ));
    }
    Ok(())
}

/// The number of voxels of the image in `path`, read from its header alone (the NIfTI header;
/// the `.npy` header; the header of an `.npz`'s `imgs` member; for DICOM, the largest image
/// series' rows × columns × frames from the files' headers): what a command can check before
/// it allocates the volume. `None` when the header does not say (the full read then reports
/// the problem).
pub fn peek_voxels(path: impl AsRef<Path>) -> Option<u64> {
    use std::io::Read as _;
    let path = path.as_ref();
    let from_npy = |r: &mut dyn std::io::Read| -> Option<u64> {
        let mut head = Vec::new();
        r.take(70_000).read_to_end(&mut head).ok()?;
        let h = npy::parse_header(&head).ok()?;
        h.shape
            .iter()
            .try_fold(1u64, |a, &b| a.checked_mul(b as u64))
    };
    match FileKind::of(path).ok()? {
        FileKind::Nifti => {
            let h = nifti::NiftiHeader::from_file(path).ok()?;
            let n = usize::from(h.dim[0].min(7));
            h.dim[1..=n]
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(u64::from(d)))
        }
        FileKind::Npy => from_npy(&mut std::fs::File::open(path).ok()?),
        // The largest image series (headers only): what any --series pick can hold at most.
        FileKind::Dicom => dicom::list_series(path)
            .ok()?
            .iter()
            .filter(|s| s.is_image)
            .filter_map(|s| {
                let [r, c] = s.size?;
                (r as u64)
                    .checked_mul(c as u64)?
                    .checked_mul(s.frames as u64)
            })
            .max(),
        FileKind::Npz => {
            let f = std::fs::File::open(path).ok()?;
            let mut zip = zip::ZipArchive::new(std::io::BufReader::new(f)).ok()?;
            let mut m = zip.by_name("imgs.npy").ok()?;
            from_npy(&mut m)
        }
    }
}
