//! DICOM in and out: a CT/MR series (a folder of slices, a DICOMDIR, or an enhanced
//! multi-frame file) read into a [`Volume`](crate::Volume) with its geometry, and a label map
//! written as a DICOM Segmentation (SEG) object that references the series it segments.
//!
//! Built on the dicom-rs crates (`dicom-object` for parsing and writing, `dicom-pixeldata`
//! for pixel decoding with pure-Rust codecs); this module adds only what is specific to
//! volumes: grouping, slice sorting and geometry checks, and the SEG IOD.

use std::path::Path;

use dicom_object::{DefaultDicomObject, InMemDicomObject, Tag};

use crate::error::IoError;

mod series;

pub use series::{
    DicomSeries, SeriesInfo, SeriesPick, SeriesSummary, SourceFrame, is_dicom_input, list_series,
    read_series,
};

mod seg;

pub use seg::{
    ALTERED_STRUCTURE, ANATOMICAL_STRUCTURE, Code, ReadSeg, SegOptions, SegSegment, TISSUE,
    codes_for, default_color, new_uid, read_seg, srgb_to_dicom_lab, write_seg,
};

// Attribute access shared by the series reader and the SEG reader.

fn dicom_err(path: &Path, detail: impl Into<String>) -> IoError {
    IoError::Dicom {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

/// A text attribute, padding (NUL, spaces) trimmed; `None` when absent or empty.
fn str_of(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let s = obj.get(tag)?.to_str().ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!s.is_empty()).then(|| s.to_string())
}

fn floats(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    obj.get(tag)?.to_multi_float64().ok()
}

fn int_of(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    obj.get(tag)?.to_int::<i64>().ok()
}

/// The first item of sequence `tag` in `obj`.
fn item(obj: &InMemDicomObject, tag: Tag) -> Option<&InMemDicomObject> {
    obj.get(tag)?.items()?.first()
}

/// Functional group `seq` of one frame of a multi-frame object: the frame's own, else the
/// shared one (PS3.3 C.7.6.16).
fn functional_group<'a>(
    frame: &'a InMemDicomObject,
    shared: Option<&'a InMemDicomObject>,
    seq: Tag,
) -> Option<&'a InMemDicomObject> {
    item(frame, seq).or_else(|| shared.and_then(|s| item(s, seq)))
}

/// The file's transfer syntax UID, padding trimmed.
fn transfer_syntax(obj: &DefaultDicomObject) -> &str {
    obj.meta().transfer_syntax().trim_end_matches('\0')
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// The slice normal (row direction × column direction) of an ImageOrientationPatient.
fn normal_of(o: &[f64; 6]) -> [f64; 3] {
    cross([o[0], o[1], o[2]], [o[3], o[4], o[5]])
}
