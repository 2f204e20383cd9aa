//! DICOM in and out: a CT/MR series (a folder of slices, a DICOMDIR, or an enhanced
//! multi-frame file) read into a [`Volume`](crate::Volume) with its geometry, and a label map
//! written as a DICOM Segmentation (SEG) object that references the series it segments.
//!
//! Built on the dicom-rs crates (`dicom-object` for parsing and writing, `dicom-pixeldata`
//! for pixel decoding with pure-Rust codecs); this module adds only what is specific to
//! volumes: grouping, slice sorting and geometry checks, and the SEG IOD.

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
