//! A DICOM series (a folder of slices, or one enhanced multi-frame file) → a [`Volume`].
//!
//! Geometry follows the standard (PS3.3 C.7.6.2): a frame's pixel `(column c, row r)` lies at
//! `ImagePositionPatient + c·Δc·X + r·Δr·Y` in the patient's LPS frame, with
//! `ImageOrientationPatient = (X, Y)` and `PixelSpacing = (Δr, Δc)`. Slices are sorted along the
//! normal `X × Y` by their position, never by InstanceNumber or file name, and the slice
//! spacing comes from the positions, never from SliceThickness.
//!
//! The volume's axes are the usual ones: `x` = column, `y` = row, `z` = slice in increasing
//! order along the normal. Its affine is NIfTI's (RAS): the LPS affine with its first two rows
//! negated, the one place where LPS becomes RAS. nibabel's `nibabel.nicom` and dcm2niix (which
//! also flips rows for display) describe the same world positions for the same voxels.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions, Tag};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder};
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};

use rayon::prelude::*;

use super::{
    cross, dicom_err, dot, floats, functional_group, int_of, item, str_of, transfer_syntax,
};
use crate::AnyVolume;
use crate::error::{IoError, Result};
use crate::volume::Volume;

/// Orientation cosines that differ by more than this are "different orientations".
const ORIENTATION_TOL: f64 = 1e-4;
/// A slice gap may differ from the series' typical gap by this fraction (plus 0.01 mm, the
/// precision positions are usually written with) before the series counts as having a hole.
const GAP_TOL: f64 = 0.02;

/// The Segmentation Storage SOP class: never an image to segment.
pub(crate) const SEG_SOP_CLASS: &str = "1.2.840.10008.5.1.4.1.1.66.4";

/// The Media Storage Directory SOP class: a DICOMDIR, whatever its file is called.
const MEDIA_STORAGE_DIRECTORY: &str = "1.2.840.10008.1.3.10";

/// Which series of a folder to read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SeriesPick {
    /// The folder's only image series (an error naming them all when there are several).
    #[default]
    Only,
    /// The series with this SeriesInstanceUID.
    Uid(String),
    /// The n-th series as [`list_series`] lists them, counting from 1.
    Index(usize),
}

impl SeriesPick {
    /// `--series` as a user writes it: a number is an index from 1, anything else a UID.
    pub fn parse(s: &str) -> SeriesPick {
        let s = s.trim();
        match s.parse::<usize>() {
            Ok(n) if !s.contains('.') => SeriesPick::Index(n),
            _ => SeriesPick::Uid(s.to_string()),
        }
    }
}

/// [`SeriesPick::parse`], so that a command-line parser takes `--series` as a pick.
impl std::str::FromStr for SeriesPick {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(SeriesPick::parse(s))
    }
}

/// One series of a folder, as [`list_series`] reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSummary {
    /// Its index in the listing, from 1 (what `--series N` takes).
    pub index: usize,
    /// SeriesInstanceUID.
    pub uid: String,
    /// SeriesDescription (empty when absent).
    pub description: String,
    /// Modality (CT, MR, SEG, …).
    pub modality: String,
    /// SeriesNumber, when present.
    pub number: Option<i64>,
    /// The SOP class of its first file.
    pub sop_class_uid: String,
    /// Files in the series.
    pub files: usize,
    /// Frames (slices) in the series: one per file, or a multi-frame file's frame count.
    pub frames: usize,
    /// Rows × columns of its first frame (`None` for an object without pixels).
    pub size: Option<[usize; 2]>,
    /// Whether it is an image series that [`read_series`] can make a volume of (not a SEG,
    /// a structure set, a report…).
    pub is_image: bool,
}

/// One slice of the read volume and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceFrame {
    /// The file.
    pub file: PathBuf,
    /// Its SOPInstanceUID.
    pub sop_instance_uid: String,
    /// The frame number in that file, from 1, for a multi-frame file (`None`: a single-frame
    /// file).
    pub frame: Option<u32>,
    /// ImagePositionPatient of the frame (LPS, mm).
    pub position: [f64; 3],
}

/// What a DICOM SEG needs to know of the series it segments, besides the voxels.
#[derive(Debug, Clone)]
pub struct SeriesInfo {
    /// SeriesInstanceUID.
    pub series_uid: String,
    /// SOPClassUID of the source images (CT, MR, enhanced CT, …).
    pub sop_class_uid: String,
    /// Modality.
    pub modality: String,
    /// SeriesDescription.
    pub description: String,
    /// FrameOfReferenceUID, when present.
    pub frame_of_reference_uid: Option<String>,
    /// ImageOrientationPatient (row cosines, then column cosines).
    pub orientation: [f64; 6],
    /// PixelSpacing: (row spacing, column spacing) in mm.
    pub pixel_spacing: [f64; 2],
    /// Distance between slices along the normal, in mm.
    pub slice_spacing: f64,
    /// The volume's slices in z order.
    pub frames: Vec<SourceFrame>,
    /// The patient, study and equipment attributes of the first source file, copied into
    /// what is written about this series.
    pub(crate) context: InMemDicomObject,
}

/// A series read into a volume.
#[derive(Debug, Clone)]
pub struct DicomSeries {
    /// The voxels: `int16` when every stored value maps to a whole number in that range
    /// (CT in HU, most MR), else `float32`; rescale slope and intercept applied.
    pub volume: AnyVolume,
    /// Where each slice came from.
    pub info: SeriesInfo,
}

/// Whether `path` is a DICOM file or folder: a folder, a `DICOMDIR`, or a file with the `DICM`
/// magic (or a `.dcm` name). Commands use it to choose the DICOM reader over NIfTI/npz.
pub fn is_dicom_input(path: &Path) -> bool {
    if path.is_dir() {
        return true;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    name == "dicomdir" || name.ends_with(".dcm") || name.ends_with(".dicom") || has_dicm_magic(path)
}

fn has_dicm_magic(path: &Path) -> bool {
    use std::io::Read as _;
    let mut head = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head[128..132] == b"DICM"
}

/// The files a DICOM input stands for: a folder's files (recursively, in name order), a
/// DICOMDIR's folder, or the file itself.
fn input_files(input: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(input).map_err(|e| IoError::os(input, e))?;
    let is_dicomdir = input
        .file_name()
        .is_some_and(|n| n.to_string_lossy().eq_ignore_ascii_case("DICOMDIR"));
    let root = if meta.is_dir() {
        input.to_path_buf()
    } else if is_dicomdir {
        // A DICOMDIR indexes files below its own folder: read those (the index itself only
        // repeats what the files say).
        input
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    } else {
        return Ok(vec![input.to_path_buf()]);
    };
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| IoError::os(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                stack.push(p);
            } else if !p.file_name().is_some_and(|n| {
                // DICOMDIR indexes (and copies named DICOMDIR-…) repeat what the files say.
                n.to_string_lossy()
                    .to_ascii_uppercase()
                    .starts_with("DICOMDIR")
            }) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The header of one file (everything before its pixel data).
struct Header {
    path: PathBuf,
    obj: DefaultDicomObject,
}

impl Header {
    fn str(&self, tag: Tag) -> Option<String> {
        str_of(&self.obj, tag)
    }
}

fn read_header(path: &Path) -> Result<Option<Header>> {
    if !has_dicm_magic(path) {
        // Not a DICOM Part 10 file (a README, a thumbnail, .DS_Store): not ours to read.
        return Ok(None);
    }
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| dicom_err(path, format!("not a readable DICOM file: {e}")))?;
    Ok(Some(Header {
        path: path.to_path_buf(),
        obj,
    }))
}

fn is_image_header(h: &Header) -> bool {
    let sop = sop_class(h);
    sop != SEG_SOP_CLASS && h.obj.get(tags::ROWS).is_some() && h.obj.get(tags::COLUMNS).is_some()
}

fn sop_class(h: &Header) -> String {
    h.str(tags::SOP_CLASS_UID).unwrap_or_else(|| {
        h.obj
            .meta()
            .media_storage_sop_class_uid()
            .trim_end_matches('\0')
            .to_string()
    })
}

struct Scan {
    /// Series UID → its files' headers, in the order series are first met (by file name).
    series: Vec<(String, Vec<Header>)>,
}

impl Scan {
    /// Each series' summary, numbered from 1 in scan order.
    fn summaries(&self) -> Vec<SeriesSummary> {
        self.series
            .iter()
            .enumerate()
            .map(|(i, (uid, hs))| summary(i + 1, uid, hs))
            .collect()
    }
}

fn scan(input: &Path) -> Result<Scan> {
    let files = input_files(input)?;
    let files_seen = files.len();
    let mut series: Vec<(String, Vec<Header>)> = Vec::new();
    let mut at: BTreeMap<String, usize> = BTreeMap::new();
    for f in &files {
        let Some(h) = read_header(f)? else { continue };
        if sop_class(&h) == MEDIA_STORAGE_DIRECTORY {
            // Another DICOMDIR (an index, under any file name): it holds no image.
            continue;
        }
        let uid = h
            .str(tags::SERIES_INSTANCE_UID)
            .ok_or_else(|| dicom_err(f, "no SeriesInstanceUID: not an image of a series"))?;
        match at.get(&uid) {
            Some(&i) => series[i].1.push(h),
            None => {
                at.insert(uid.clone(), series.len());
                series.push((uid, vec![h]));
            }
        }
    }
    if series.is_empty() {
        return Err(dicom_err(
            input,
            if files_seen == 0 {
                "no file here".to_string()
            } else {
                format!(
                    "none of its {files_seen} file(s) is a DICOM file (no `DICM` marker at byte 128)"
                )
            },
        ));
    }
    Ok(Scan { series })
}

fn summary(index: usize, uid: &str, hs: &[Header]) -> SeriesSummary {
    let h = &hs[0];
    let frames = hs
        .iter()
        .map(|h| int_of(&h.obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as usize)
        .sum();
    let size = match (int_of(&h.obj, tags::ROWS), int_of(&h.obj, tags::COLUMNS)) {
        (Some(r), Some(c)) => Some([r.max(0) as usize, c.max(0) as usize]),
        _ => None,
    };
    SeriesSummary {
        index,
        uid: uid.to_string(),
        description: h.str(tags::SERIES_DESCRIPTION).unwrap_or_default(),
        modality: h.str(tags::MODALITY).unwrap_or_default(),
        number: int_of(&h.obj, tags::SERIES_NUMBER),
        sop_class_uid: sop_class(h),
        files: hs.len(),
        frames,
        size,
        is_image: hs.iter().all(is_image_header),
    }
}

/// The series in a DICOM folder (or DICOMDIR, or file), in the order of their first file's
/// name: what `segvol info DIR` prints and `--series N` counts.
///
/// # Errors
/// [`IoError::Dicom`] for a file with the DICOM marker that does not parse, or a folder with
/// no DICOM file.
pub fn list_series(input: impl AsRef<Path>) -> Result<Vec<SeriesSummary>> {
    Ok(scan(input.as_ref())?.summaries())
}

fn describe(list: &[SeriesSummary]) -> String {
    list.iter()
        .map(|s| {
            format!(
                "\n  {}: {} {} \"{}\", {} frame(s){} — {}",
                s.index,
                s.modality,
                s.size
                    .map(|[r, c]| format!("{r}×{c}"))
                    .unwrap_or_else(|| "no image".into()),
                s.description,
                s.frames,
                if s.is_image {
                    ""
                } else {
                    " (not an image series)"
                },
                s.uid
            )
        })
        .collect()
}

/// One frame to place: its header, its frame index in the file, its geometry.
struct Frame<'a> {
    h: &'a Header,
    frame: Option<u32>,
    sop_instance_uid: String,
    position: [f64; 3],
    orientation: [f64; 6],
    spacing: [f64; 2],
    rescale: (f64, f64),
}

fn arr<const N: usize>(v: Option<Vec<f64>>) -> Option<[f64; N]> {
    let v = v?;
    (v.len() >= N && v.iter().take(N).all(|x| x.is_finite())).then(|| {
        let mut a = [0.0; N];
        a.copy_from_slice(&v[..N]);
        a
    })
}

fn frames_of(h: &Header) -> Result<Vec<Frame<'_>>> {
    let obj: &InMemDicomObject = &h.obj;
    let sop_instance_uid = h
        .str(tags::SOP_INSTANCE_UID)
        .ok_or_else(|| dicom_err(&h.path, "no SOPInstanceUID"))?;
    let n = int_of(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
    let rescale_of = |o: &InMemDicomObject| {
        (
            floats(o, tags::RESCALE_SLOPE).and_then(|v| v.first().copied()),
            floats(o, tags::RESCALE_INTERCEPT).and_then(|v| v.first().copied()),
        )
    };
    let shared = item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let per_frame = obj
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items());
    if per_frame.is_none() {
        if n > 1 {
            return Err(dicom_err(
                &h.path,
                format!(
                    "a multi-frame image ({n} frames) without per-frame functional groups: \
                     where each frame lies is not recorded"
                ),
            ));
        }
        let position = arr::<3>(floats(obj, tags::IMAGE_POSITION_PATIENT))
            .ok_or_else(|| dicom_err(&h.path, "no usable ImagePositionPatient (0020,0032)"))?;
        let orientation = arr::<6>(floats(obj, tags::IMAGE_ORIENTATION_PATIENT))
            .ok_or_else(|| dicom_err(&h.path, "no usable ImageOrientationPatient (0020,0037)"))?;
        let spacing = arr::<2>(floats(obj, tags::PIXEL_SPACING))
            .ok_or_else(|| dicom_err(&h.path, "no usable PixelSpacing (0028,0030)"))?;
        let (s, i) = rescale_of(obj);
        return Ok(vec![Frame {
            h,
            frame: None,
            sop_instance_uid,
            position,
            orientation,
            spacing,
            rescale: (s.unwrap_or(1.0), i.unwrap_or(0.0)),
        }]);
    }
    let per_frame = per_frame.unwrap_or_default();
    if per_frame.len() as i64 != n {
        return Err(dicom_err(
            &h.path,
            format!(
                "NumberOfFrames is {n} but the per-frame functional groups hold {}",
                per_frame.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(per_frame.len());
    for (k, pf) in per_frame.iter().enumerate() {
        let find = |seq: Tag| functional_group(pf, shared, seq);
        let position = find(tags::PLANE_POSITION_SEQUENCE)
            .and_then(|g| arr::<3>(floats(g, tags::IMAGE_POSITION_PATIENT)))
            .ok_or_else(|| {
                dicom_err(
                    &h.path,
                    format!("frame {}: no PlanePositionSequence position", k + 1),
                )
            })?;
        let orientation = find(tags::PLANE_ORIENTATION_SEQUENCE)
            .and_then(|g| arr::<6>(floats(g, tags::IMAGE_ORIENTATION_PATIENT)))
            .ok_or_else(|| {
                dicom_err(
                    &h.path,
                    format!("frame {}: no PlaneOrientationSequence", k + 1),
                )
            })?;
        let spacing = find(tags::PIXEL_MEASURES_SEQUENCE)
            .and_then(|g| arr::<2>(floats(g, tags::PIXEL_SPACING)))
            .ok_or_else(|| {
                dicom_err(
                    &h.path,
                    format!("frame {}: no PixelMeasuresSequence spacing", k + 1),
                )
            })?;
        let (s, i) = find(tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE)
            .map(rescale_of)
            .unwrap_or_else(|| rescale_of(obj));
        out.push(Frame {
            h,
            frame: Some(k as u32 + 1),
            sop_instance_uid: sop_instance_uid.clone(),
            position,
            orientation,
            spacing,
            rescale: (s.unwrap_or(1.0), i.unwrap_or(0.0)),
        });
    }
    Ok(out)
}

/// Patient and study attributes carried from the source into a SEG (PS3.3 C.7.1.1, C.7.2.1).
pub(crate) const CONTEXT_TAGS: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::ISSUER_OF_PATIENT_ID,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_SEX,
    tags::PATIENT_AGE,
    tags::STUDY_INSTANCE_UID,
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::STUDY_ID,
    tags::ACCESSION_NUMBER,
    tags::STUDY_DESCRIPTION,
    tags::FRAME_OF_REFERENCE_UID,
    tags::POSITION_REFERENCE_INDICATOR,
];

fn pick_series(input: &Path, list: &[SeriesSummary], pick: &SeriesPick) -> Result<usize> {
    let listing = describe(list);
    let idx = match pick {
        SeriesPick::Only => {
            let images: Vec<usize> = list
                .iter()
                .filter(|s| s.is_image)
                .map(|s| s.index - 1)
                .collect();
            match images.as_slice() {
                [one] => *one,
                [] => {
                    return Err(dicom_err(
                        input,
                        format!("no image series here; found:{listing}"),
                    ));
                }
                _ => {
                    return Err(dicom_err(
                        input,
                        format!(
                            "{} image series here: choose one with --series N (or --series UID); \
                             `segvol info` lists them:{listing}",
                            images.len()
                        ),
                    ));
                }
            }
        }
        SeriesPick::Uid(uid) => list
            .iter()
            .position(|s| &s.uid == uid)
            .ok_or_else(|| dicom_err(input, format!("no series {uid} here; found:{listing}")))?,
        SeriesPick::Index(n) => {
            if *n == 0 || *n > list.len() {
                return Err(dicom_err(
                    input,
                    format!(
                        "there is no series {n} (series count from 1; {} here):{listing}",
                        list.len()
                    ),
                ));
            }
            n - 1
        }
    };
    if !list[idx].is_image {
        return Err(dicom_err(
            input,
            format!(
                "series {} is not an image series (SOP class {}, modality {}): nothing to \
                 segment; found:{listing}",
                list[idx].index, list[idx].sop_class_uid, list[idx].modality
            ),
        ));
    }
    Ok(idx)
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn name(p: &Path) -> String {
    p.display().to_string()
}

fn frame_name(f: &Frame<'_>) -> String {
    match f.frame {
        Some(k) => format!("{} (frame {k})", name(&f.h.path)),
        None => name(&f.h.path),
    }
}

/// Refuses, by name, a transfer syntax whose pixel data this build cannot decode.
fn check_transfer_syntax(path: &Path, obj: &DefaultDicomObject) -> Result<()> {
    let uid = transfer_syntax(obj);
    match TransferSyntaxRegistry.get(uid) {
        Some(ts) if ts.can_decode_all() => Ok(()),
        Some(ts) => Err(dicom_err(
            path,
            format!(
                "its pixel data is in transfer syntax {} ({uid}), which segvol-rs cannot decode \
                 (pure-Rust decoders: uncompressed, deflate, RLE, JPEG baseline/extended/\
                 lossless, JPEG 2000); convert it first, e.g. `gdcmconv --raw`",
                ts.name()
            ),
        )),
        None => Err(dicom_err(
            path,
            format!("unknown transfer syntax {uid}: its pixel data cannot be decoded"),
        )),
    }
}

/// Opens a whole file (pixel data included) and checks it holds pixels this build decodes.
fn open_image_file(path: &Path) -> Result<DefaultDicomObject> {
    let obj = OpenFileOptions::new()
        .open_file(path)
        .map_err(|e| dicom_err(path, format!("not a readable DICOM file: {e}")))?;
    if obj.get(tags::PIXEL_DATA).is_none() {
        return Err(dicom_err(path, "no Pixel Data (7FE0,0010): not an image"));
    }
    check_transfer_syntax(path, &obj)?;
    Ok(obj)
}

/// Transfer syntaxes whose Pixel Data element holds the samples as they are, little-endian.
const NATIVE_LE: [&str; 3] = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.1.99",
];

/// A voxel type the reader fills: `f32`, or `i16` when the headers promise whole values in
/// its range.
trait Sample: Copy + Default + Send + Sync {
    fn from_f64(v: f64) -> Self;
}

impl Sample for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl Sample for i16 {
    fn from_f64(v: f64) -> Self {
        v as i16
    }
}

/// Whether frame `f`'s stored values, rescaled, are whole numbers in int16's range whatever
/// they are: whole slope and intercept, and the range its BitsStored and PixelRepresentation
/// allow mapped inside int16.
fn fits_i16(f: &Frame<'_>) -> bool {
    let (slope, intercept) = f.rescale;
    let obj: &InMemDicomObject = &f.h.obj;
    let bits = int_of(obj, tags::BITS_ALLOCATED).unwrap_or(16);
    let stored = int_of(obj, tags::BITS_STORED).unwrap_or(bits).clamp(1, 32);
    let (lo, hi) = if int_of(obj, tags::PIXEL_REPRESENTATION) == Some(1) {
        (
            -(2f64.powi(stored as i32 - 1)),
            2f64.powi(stored as i32 - 1) - 1.0,
        )
    } else {
        (0.0, 2f64.powi(stored as i32) - 1.0)
    };
    let (a, b) = (lo * slope + intercept, hi * slope + intercept);
    slope.fract() == 0.0
        && intercept.fract() == 0.0
        && a.min(b) >= f64::from(i16::MIN)
        && a.max(b) <= f64::from(i16::MAX)
}

/// Frame `k` of `obj` rescaled into `out` (rows × columns values).
fn frame_values<T: Sample>(
    obj: &DefaultDicomObject,
    k: u32,
    (slope, intercept): (f64, f64),
    [rows, cols]: [usize; 2],
    out: &mut [T],
) -> std::result::Result<(), String> {
    let per = rows * cols;
    let attr = |t: Tag| int_of(obj, t);
    let spp = attr(tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    if spp != 1 {
        return Err(format!(
            "a colour image ({spp} samples per pixel): only greyscale CT/MR/PET can be \
             segmented"
        ));
    }
    let ts = transfer_syntax(obj);
    let decoded;
    let all;
    let (bytes, bits, stored, signed): (&[u8], i64, i64, bool) = if NATIVE_LE.contains(&ts) {
        let bits = attr(tags::BITS_ALLOCATED).unwrap_or(16);
        let stored = attr(tags::BITS_STORED).unwrap_or(bits);
        let signed = attr(tags::PIXEL_REPRESENTATION) == Some(1);
        all = obj
            .get(tags::PIXEL_DATA)
            .ok_or("no Pixel Data")?
            .to_bytes()
            .map_err(|e| format!("its pixel data is not plain bytes: {e}"))?;
        let fb = per * (bits.max(8) as usize / 8);
        let at = k as usize * fb;
        let frame = all.get(at..at + fb).ok_or_else(|| {
            format!(
                "its pixel data holds {} bytes, short of frame {} ({fb} bytes from byte {at})",
                all.len(),
                k + 1
            )
        })?;
        (frame, bits, stored, signed)
    } else if obj
        .get(tags::PIXEL_DATA)
        .is_some_and(|e| e.value().fragments().is_some())
    {
        decoded = obj
            .decode_pixel_data_frame(k)
            .map_err(|e| format!("cannot decode its pixel data: {e}"))?;
        if decoded.samples_per_pixel() != 1 {
            return Err(format!(
                "a colour image ({} samples per pixel): only greyscale CT/MR/PET can be \
                 segmented",
                decoded.samples_per_pixel()
            ));
        }
        let bits = i64::from(decoded.bits_allocated());
        (
            decoded.data(),
            bits,
            i64::from(decoded.bits_stored()),
            decoded.pixel_representation() == dicom_pixeldata::PixelRepresentation::Signed,
        )
    } else {
        // Anything else (big endian): dicom-pixeldata's own conversion, slower but general.
        let d = obj
            .decode_pixel_data_frame(k)
            .map_err(|e| format!("cannot decode its pixel data: {e}"))?;
        let raw = ConvertOptions::new().with_modality_lut(ModalityLutOption::None);
        let v: Vec<f64> = d
            .to_vec_frame_with_options(0, &raw)
            .map_err(|e| format!("cannot convert its pixel data: {e}"))?;
        if v.len() != per {
            return Err(format!(
                "its pixel data holds {} values for a {rows}×{cols} frame",
                v.len()
            ));
        }
        for (o, x) in out.iter_mut().zip(v) {
            *o = T::from_f64(x * slope + intercept);
        }
        return Ok(());
    };
    let width = match bits {
        8 => 1,
        16 => 2,
        32 => 4,
        b => return Err(format!("{b} bits allocated per sample: not a CT/MR image")),
    };
    if bytes.len() < per * width {
        return Err(format!(
            "its pixel data holds {} bytes for a {rows}×{cols} frame of {bits}-bit samples",
            bytes.len()
        ));
    }
    let stored = stored.clamp(1, bits) as u32;
    let shift = 64 - stored;
    // A stored value: the low `stored` bits, sign-extended when signed (PS3.5 8.1.1).
    let sample = |c: &[u8]| -> i64 {
        let mut w = 0u64;
        for (i, b) in c.iter().enumerate() {
            w |= u64::from(*b) << (8 * i);
        }
        if signed {
            ((w << shift) as i64) >> shift
        } else {
            ((w << shift) >> shift) as i64
        }
    };
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(width)) {
        *o = T::from_f64(sample(c) as f64 * slope + intercept);
    }
    Ok(())
}

/// What the pixel pass needs: the sorted frames, the multi-frame files opened once.
struct Decode<'a, 'h> {
    frames: &'a [Frame<'h>],
    shared: &'a HashMap<&'h Path, DefaultDicomObject>,
    input: &'a Path,
    size: [usize; 2],
}

impl Decode<'_, '_> {
    /// Every frame's pixels, rescaled, in slice order: one rayon task per slice, each writing
    /// its own part of the volume.
    fn decode<T: Sample>(&self) -> Result<Vec<T>> {
        let [rows, cols] = self.size;
        let per = rows * cols;
        let n = self.frames.len();
        let total = per
            .checked_mul(n)
            .ok_or_else(|| dicom_err(self.input, "the series' size overflows"))?;
        let mut data: Vec<T> = Vec::new();
        // Only the headers vouch for this size so far: ask, rather than abort, when it is
        // absurd.
        data.try_reserve_exact(total).map_err(|_| {
            dicom_err(
                self.input,
                format!("{n} slices of {rows}×{cols} do not fit in memory"),
            )
        })?;
        data.resize(total, T::default());
        data.par_chunks_mut(per)
            .zip(self.frames.par_iter())
            .try_for_each(|(out, f)| {
                let path = &f.h.path;
                let owned;
                let obj = match self.shared.get(path.as_path()) {
                    Some(o) => o,
                    None => {
                        owned = open_image_file(path)?;
                        &owned
                    }
                };
                let k = f.frame.map_or(0, |k| k - 1);
                check_rle_fragment(path, obj, k)?;
                // dicom-rs' decoders still index past the end of some malformed streams (a
                // short RLE segment, found by tests/dicom.rs' damaged files): such a panic is
                // caught here and reported as this file's error, so a bad file never brings
                // the program down.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    frame_values(obj, k, f.rescale, [rows, cols], out)
                }))
                .unwrap_or_else(|_| {
                    Err("its pixel data is malformed (the decoder failed on it)".into())
                })
                .map_err(|e| dicom_err(path, e))
            })?;
        Ok(data)
    }
}

/// The RLE Lossless transfer syntax.
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// Checks the header of frame `k`'s RLE fragment (PS3.5 G.3.1: 64 bytes, at most 15
/// segments, offsets inside the fragment) before dicom-rs reads it: its decoder allocates a
/// table of the declared segment count and slices by the declared offsets unchecked.
fn check_rle_fragment(path: &Path, obj: &DefaultDicomObject, k: u32) -> Result<()> {
    if transfer_syntax(obj) != RLE_LOSSLESS {
        return Ok(());
    }
    let bad = |d: String| dicom_err(path, format!("malformed RLE pixel data: {d}"));
    let frags = obj
        .get(tags::PIXEL_DATA)
        .and_then(|e| e.value().fragments())
        .ok_or_else(|| bad("no encapsulated fragments".into()))?;
    let frag = frags
        .get(k as usize)
        .ok_or_else(|| bad(format!("no fragment for frame {}", k + 1)))?;
    if frag.len() < 64 {
        return Err(bad(format!(
            "a {}-byte fragment is shorter than its 64-byte header",
            frag.len()
        )));
    }
    let word = |i: usize| u32::from_le_bytes([frag[i], frag[i + 1], frag[i + 2], frag[i + 3]]);
    let n = word(0) as usize;
    if n == 0 || n > 15 {
        return Err(bad(format!("{n} segments (1 to 15 allowed)")));
    }
    let mut offsets = Vec::with_capacity(n + 1);
    for i in 0..n {
        let off = word(4 + 4 * i) as usize;
        if off < offsets.last().copied().unwrap_or(64) || off > frag.len() {
            return Err(bad(format!(
                "segment {} starts at byte {off}, outside the {}-byte fragment or before the \
                 previous one",
                i + 1,
                frag.len()
            )));
        }
        offsets.push(off);
    }
    offsets.push(frag.len());
    // Every segment must unpack to a whole frame plane: dicom-rs copies rows × columns bytes
    // out of each without checking how many it got.
    let plane = match (int_of(obj, tags::ROWS), int_of(obj, tags::COLUMNS)) {
        (Some(r), Some(c)) if r > 0 && c > 0 => (r * c) as usize,
        _ => return Err(bad("no usable Rows/Columns".into())),
    };
    for i in 0..n {
        let got = packbits_len(&frag[offsets[i]..offsets[i + 1]]);
        if got < plane {
            return Err(bad(format!(
                "segment {} of frame {} unpacks to {got} bytes, a frame plane needs {plane}",
                i + 1,
                k + 1
            )));
        }
    }
    Ok(())
}

/// How many bytes a PackBits stream (RLE's segment coding, PS3.5 G.3.1) unpacks to, counting
/// only what the stream really holds. A validator only: dicom-rs does the decoding.
fn packbits_len(seg: &[u8]) -> usize {
    let (mut i, mut out) = (0usize, 0usize);
    while i < seg.len() {
        let n = seg[i] as i8;
        i += 1;
        if n >= 0 {
            let take = (n as usize + 1).min(seg.len() - i);
            out += take;
            i += take;
        } else if n != -128 && i < seg.len() {
            out += (1 - i32::from(n)) as usize;
            i += 1;
        }
    }
    out
}

/// Reads one series of a DICOM folder (recursively), DICOMDIR or file into a volume.
///
/// # Errors
/// [`IoError::Dicom`] naming the file or folder and the problem: several image series and
/// none picked (the listing included), a file that does not parse, mixed sizes or
/// orientations, gantry tilt, two slices at one position, a missing slice (uneven gaps, with
/// where), no pixel data, a colour image, a transfer syntax that cannot be decoded.
pub fn read_series(input: impl AsRef<Path>, pick: &SeriesPick) -> Result<DicomSeries> {
    let input = input.as_ref();
    let scan = scan(input)?;
    let list = scan.summaries();
    let idx = pick_series(input, &list, pick)?;
    let (series_uid, headers) = &scan.series[idx];
    let first = &headers[0];

    // Every file of the series: one size.
    let size_of = |h: &Header| -> Result<[usize; 2]> {
        match (int_of(&h.obj, tags::ROWS), int_of(&h.obj, tags::COLUMNS)) {
            (Some(r), Some(c)) if r > 0 && c > 0 => Ok([r as usize, c as usize]),
            _ => Err(dicom_err(&h.path, "no usable Rows/Columns")),
        }
    };
    let size = size_of(first)?;
    for h in headers {
        let s = size_of(h)?;
        if s != size {
            return Err(dicom_err(
                input,
                format!(
                    "series {series_uid} mixes image sizes: {} is {}×{}, {} is {}×{}",
                    name(&first.path),
                    size[0],
                    size[1],
                    name(&h.path),
                    s[0],
                    s[1]
                ),
            ));
        }
    }

    let mut frames = Vec::new();
    for h in headers {
        frames.extend(frames_of(h)?);
    }
    let o = frames[0].orientation;
    for f in &frames {
        if f.orientation
            .iter()
            .zip(&o)
            .any(|(a, b)| (a - b).abs() > ORIENTATION_TOL)
        {
            return Err(dicom_err(
                input,
                format!(
                    "series {series_uid} mixes orientations: {} has ImageOrientationPatient \
                     {:?}, {} has {:?} (a localiser, or several stacks in one series)",
                    frame_name(&frames[0]),
                    o,
                    frame_name(f),
                    f.orientation
                ),
            ));
        }
        if f.spacing
            .iter()
            .zip(&frames[0].spacing)
            .any(|(a, b)| (a - b).abs() > 1e-4 * (1.0 + a.abs()))
        {
            return Err(dicom_err(
                input,
                format!(
                    "series {series_uid} mixes pixel spacings: {} has {:?} mm, {} has {:?} mm",
                    frame_name(&frames[0]),
                    frames[0].spacing,
                    frame_name(f),
                    f.spacing
                ),
            ));
        }
    }
    let x = [o[0], o[1], o[2]];
    let y = [o[3], o[4], o[5]];
    let nx = dot(x, x).sqrt();
    let ny = dot(y, y).sqrt();
    if (nx - 1.0).abs() > 1e-3 || (ny - 1.0).abs() > 1e-3 || dot(x, y).abs() > 1e-3 {
        return Err(dicom_err(
            &first.path,
            format!(
                "ImageOrientationPatient {o:?} is not two perpendicular unit vectors: the \
                 image plane is undefined"
            ),
        ));
    }
    let x = x.map(|v| v / nx);
    let y = y.map(|v| v / ny);
    let normal = cross(x, y);

    // Sort along the normal; equal positions keep file order, then are refused below.
    frames.sort_by(|a, b| dot(a.position, normal).total_cmp(&dot(b.position, normal)));
    let along: Vec<f64> = frames.iter().map(|f| dot(f.position, normal)).collect();
    let n = frames.len();
    let gaps: Vec<f64> = along.windows(2).map(|w| w[1] - w[0]).collect();
    let slice_spacing = if n > 1 {
        for (k, &gap) in gaps.iter().enumerate() {
            if gap < 1e-3 {
                return Err(dicom_err(
                    input,
                    format!(
                        "two slices at the same position ({:.3} mm along the normal): {} and \
                         {} (several acquisitions, echoes or phases in one series?)",
                        along[k],
                        frame_name(&frames[k]),
                        frame_name(&frames[k + 1])
                    ),
                ));
            }
            let d = sub(frames[k + 1].position, frames[k].position);
            let in_plane = sub(d, normal.map(|v| v * gap));
            let off = dot(in_plane, in_plane).sqrt();
            if off > 0.01 + 1e-3 * gap {
                return Err(dicom_err(
                    input,
                    format!(
                        "the slices are not stacked along their normal (gantry tilt or a \
                         sheared stack): from {} to {} the position moves {:.3} mm within the \
                         image plane for {:.3} mm along the normal; resample it to a regular \
                         grid first (e.g. dcm2niix's tilt correction)",
                        frame_name(&frames[k]),
                        frame_name(&frames[k + 1]),
                        off,
                        gap
                    ),
                ));
            }
        }
        let mut sorted = gaps.clone();
        sorted.sort_by(f64::total_cmp);
        let typical = sorted[sorted.len() / 2];
        for (k, &gap) in gaps.iter().enumerate() {
            if (gap - typical).abs() > GAP_TOL * typical + 0.01 {
                return Err(dicom_err(
                    input,
                    format!(
                        "uneven slice gaps: {:.3} mm between {} (at {:.3} mm) and {} (at \
                         {:.3} mm), where the series' other gaps are {:.3} mm: a slice is \
                         missing there, or the series mixes stacks",
                        gap,
                        frame_name(&frames[k]),
                        along[k],
                        frame_name(&frames[k + 1]),
                        along[k + 1],
                        typical
                    ),
                ));
            }
        }
        (along[n - 1] - along[0]) / (n - 1) as f64
    } else {
        floats(&first.obj, tags::SPACING_BETWEEN_SLICES)
            .or_else(|| floats(&first.obj, tags::SLICE_THICKNESS))
            .and_then(|v| v.first().copied())
            .filter(|v| v.is_finite() && *v > 0.0)
            .unwrap_or(1.0)
    };

    // Pixels (Decode::decode); a multi-frame file is opened once, shared by its frames' tasks.
    let [rows, cols] = size;
    let mut shared: HashMap<&Path, DefaultDicomObject> = HashMap::new();
    for f in frames.iter().filter(|f| f.frame.is_some()) {
        if !shared.contains_key(f.h.path.as_path()) {
            shared.insert(&f.h.path, open_image_file(&f.h.path)?);
        }
    }
    let ctx = Decode {
        frames: &frames,
        shared: &shared,
        input,
        size,
    };
    let dims = [n, rows, cols];
    let spacing = [slice_spacing, frames[0].spacing[0], frames[0].spacing[1]];
    let mk = |e: crate::volume::ShapeError| dicom_err(input, e.to_string());
    let mut volume = if frames.iter().all(fits_i16) {
        AnyVolume::I16(Volume::new(ctx.decode::<i16>()?, dims, spacing).map_err(mk)?)
    } else {
        AnyVolume::F32(Volume::new(ctx.decode::<f32>()?, dims, spacing).map_err(mk)?)
    };

    let p0 = frames[0].position;
    let step = if n > 1 {
        sub(frames[n - 1].position, p0).map(|v| v / (n - 1) as f64)
    } else {
        normal.map(|v| v * slice_spacing)
    };
    let (dr, dc) = (frames[0].spacing[0], frames[0].spacing[1]);
    // LPS affine, columns (x = column, y = row, z = slice, offset); RAS negates rows 0 and 1.
    let mut affine = [[0.0; 4]; 4];
    for r in 0..3 {
        let sign = if r < 2 { -1.0 } else { 1.0 };
        affine[r] = [
            sign * x[r] * dc,
            sign * y[r] * dr,
            sign * step[r],
            sign * p0[r],
        ];
    }
    affine[3] = [0.0, 0.0, 0.0, 1.0];
    match &mut volume {
        AnyVolume::I16(v) => v.affine = affine,
        AnyVolume::F32(v) => v.affine = affine,
        _ => {}
    }

    let mut context = InMemDicomObject::new_empty();
    for &t in CONTEXT_TAGS {
        if let Some(e) = first.obj.get(t) {
            context.put(e.clone());
        }
    }
    let info = SeriesInfo {
        series_uid: series_uid.clone(),
        sop_class_uid: sop_class(first),
        modality: first.str(tags::MODALITY).unwrap_or_default(),
        description: first.str(tags::SERIES_DESCRIPTION).unwrap_or_default(),
        frame_of_reference_uid: first.str(tags::FRAME_OF_REFERENCE_UID),
        orientation: [x[0], x[1], x[2], y[0], y[1], y[2]],
        pixel_spacing: frames[0].spacing,
        slice_spacing,
        frames: frames
            .iter()
            .map(|f| SourceFrame {
                file: f.h.path.clone(),
                sop_instance_uid: f.sop_instance_uid.clone(),
                frame: f.frame,
                position: f.position,
            })
            .collect(),
        context,
    };
    Ok(DicomSeries { volume, info })
}
