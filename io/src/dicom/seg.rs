//! A label map as a DICOM Segmentation (SEG, PS3.3 A.51): a binary multi-frame object, one
//! frame per (segment, source slice) that holds any voxel, each frame referencing the source
//! instance it lies on; and the reverse, a SEG (ours or anyone's) read onto a series' grid.
//!
//! The attribute set follows the IOD's modules (Patient, General Study, General Series,
//! Segmentation Series, Frame of Reference, General and Enhanced General Equipment, General
//! Image, Image Pixel, Segmentation Image, Multi-frame Functional Groups, Multi-frame
//! Dimension, Common Instance Reference, SOP Common); the CI checks each file with dciodvfy
//! and reads it back with highdicom and pydicom (io/tests/dicom/check_dicom.py).

use std::path::Path;

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, VR, dicom_value};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject, OpenFileOptions, Tag};

use super::series::{SEG_SOP_CLASS, SeriesInfo};
use super::{dicom_err, dot, floats, functional_group, int_of, item, normal_of, str_of};
use crate::atomic::write_atomically;
use crate::error::Result;
use crate::volume::Volume;

/// A coded concept (code value, coding scheme, meaning), as DICOM's code sequences hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    /// Code value.
    pub value: &'static str,
    /// Coding scheme designator (`SCT`: SNOMED CT; `DCM`: DICOM's own).
    pub scheme: &'static str,
    /// Code meaning.
    pub meaning: &'static str,
}

const fn sct(value: &'static str, meaning: &'static str) -> Code {
    Code {
        value,
        scheme: "SCT",
        meaning,
    }
}

/// Category "Tissue" (SCT 85756007), for a segment of unknown kind.
pub const TISSUE: Code = sct("85756007", "Tissue");
/// Category "Anatomical Structure" (SCT 123037004), for a named organ.
pub const ANATOMICAL_STRUCTURE: Code = sct("123037004", "Anatomical Structure");
/// Category "Morphologically Altered Structure" (SCT 49755003), for a lesion.
pub const ALTERED_STRUCTURE: Code = sct("49755003", "Morphologically Altered Structure");

/// SNOMED CT codes of structures by the names users type (lower case, `_` or space), for the
/// segment's property type; a name not here is coded as generic tissue.
const KNOWN: &[(&str, Code, Code)] = &[
    ("liver", ANATOMICAL_STRUCTURE, sct("10200004", "Liver")),
    ("spleen", ANATOMICAL_STRUCTURE, sct("78961009", "Spleen")),
    ("kidney", ANATOMICAL_STRUCTURE, sct("64033007", "Kidney")),
    ("aorta", ANATOMICAL_STRUCTURE, sct("15825003", "Aorta")),
    (
        "pancreas",
        ANATOMICAL_STRUCTURE,
        sct("15776009", "Pancreas"),
    ),
    (
        "gallbladder",
        ANATOMICAL_STRUCTURE,
        sct("28231008", "Gallbladder"),
    ),
    ("stomach", ANATOMICAL_STRUCTURE, sct("69695003", "Stomach")),
    (
        "esophagus",
        ANATOMICAL_STRUCTURE,
        sct("32849002", "Esophagus"),
    ),
    ("heart", ANATOMICAL_STRUCTURE, sct("80891009", "Heart")),
    ("lung", ANATOMICAL_STRUCTURE, sct("39607008", "Lung")),
    ("brain", ANATOMICAL_STRUCTURE, sct("12738006", "Brain")),
    (
        "bladder",
        ANATOMICAL_STRUCTURE,
        sct("89837001", "Urinary bladder"),
    ),
    (
        "urinary bladder",
        ANATOMICAL_STRUCTURE,
        sct("89837001", "Urinary bladder"),
    ),
    (
        "prostate",
        ANATOMICAL_STRUCTURE,
        sct("41216001", "Prostate"),
    ),
    (
        "duodenum",
        ANATOMICAL_STRUCTURE,
        sct("38848004", "Duodenum"),
    ),
    ("colon", ANATOMICAL_STRUCTURE, sct("71854001", "Colon")),
    ("rectum", ANATOMICAL_STRUCTURE, sct("34402009", "Rectum")),
    (
        "inferior vena cava",
        ANATOMICAL_STRUCTURE,
        sct("64131007", "Inferior vena cava"),
    ),
    (
        "adrenal gland",
        ANATOMICAL_STRUCTURE,
        sct("23451007", "Adrenal gland"),
    ),
    ("tumor", ALTERED_STRUCTURE, sct("108369006", "Neoplasm")),
    ("tumour", ALTERED_STRUCTURE, sct("108369006", "Neoplasm")),
    ("lesion", ALTERED_STRUCTURE, sct("52988006", "Lesion")),
];

/// The (category, type) codes for a segment named `name`: the structure's SNOMED CT code
/// when the name (or its last word after "left"/"right") is known, else generic tissue.
pub fn codes_for(name: &str) -> (Code, Code) {
    let n = name.trim().to_ascii_lowercase().replace('_', " ");
    let stripped = n
        .trim_start_matches("left ")
        .trim_start_matches("right ")
        .trim_end_matches(" left")
        .trim_end_matches(" right")
        .to_string();
    for key in [&n, &stripped] {
        if let Some((_, c, t)) = KNOWN.iter().find(|(k, _, _)| k == key) {
            return (*c, *t);
        }
    }
    for (k, c, t) in KNOWN {
        if n.contains(k) && (*k == "tumor" || *k == "tumour" || *k == "lesion") {
            return (*c, *t);
        }
    }
    (TISSUE, TISSUE)
}

/// One segment of a SEG: which label value of the map it is, and how it is described.
#[derive(Debug, Clone, PartialEq)]
pub struct SegSegment {
    /// The label value in the map (1..=255); it is also the segment number.
    pub label: u8,
    /// Segment label (a name a viewer shows).
    pub name: String,
    /// Display colour (sRGB), written as CIELab.
    pub color: [u8; 3],
}

/// What a SEG says about how it was made.
#[derive(Debug, Clone, PartialEq)]
pub struct SegOptions {
    /// The segments; empty: one per label value present, named `label N`.
    pub segments: Vec<SegSegment>,
    /// The algorithm's name (e.g. `SegVol`).
    pub algorithm_name: String,
    /// The algorithm's version (e.g. the weights' name).
    pub algorithm_version: String,
    /// SeriesDescription of the new series.
    pub series_description: String,
    /// SeriesNumber of the new series.
    pub series_number: i32,
}

impl Default for SegOptions {
    fn default() -> Self {
        SegOptions {
            segments: Vec::new(),
            algorithm_name: "SegVol".into(),
            algorithm_version: env!("CARGO_PKG_VERSION").into(),
            series_description: "segvol-rs segmentation".into(),
            series_number: 901,
        }
    }
}

/// Distinct colours for labels 1, 2, … (then repeated).
const PALETTE: [[u8; 3]; 8] = [
    [230, 25, 75],
    [60, 180, 75],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [210, 245, 60],
];

/// The default colour of label `l`.
pub fn default_color(l: u8) -> [u8; 3] {
    PALETTE[(usize::from(l).max(1) - 1) % PALETTE.len()]
}

/// A new UID under the `2.25` root (a UUID as a decimal integer, ITU-T X.667), as DICOM allows
/// without a registered root.
pub fn new_uid() -> String {
    format!("2.25.{}", uuid::Uuid::new_v4().as_u128())
}

/// A decimal string of at most 16 characters (DICOM's DS limit), as precise as fits.
fn ds(v: f64) -> String {
    let v = if v == 0.0 { 0.0 } else { v }; // no "-0"
    let plain = format!("{v}");
    if plain.len() <= 16 {
        return plain;
    }
    for p in (0..=12).rev() {
        let s = format!("{v:.p$}");
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        };
        if s.len() <= 16 {
            return s;
        }
    }
    format!("{v:.6e}")
}

fn ds_multi(vs: &[f64]) -> PrimitiveValue {
    PrimitiveValue::Strs(vs.iter().map(|&v| ds(v)).collect())
}

/// sRGB (0–255) → DICOM's scaled CIELab (PS3.3 C.10.7.1.1: L* 0..100 and a*, b* -128..127
/// onto 0..65535), through CIE XYZ with the D65 white point.
pub fn srgb_to_dicom_lab(rgb: [u8; 3]) -> [u16; 3] {
    let lin = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let (r, g, b) = (lin(rgb[0]), lin(rgb[1]), lin(rgb[2]));
    let x = 0.4124564 * r + 0.3575761 * g + 0.1804375 * b;
    let y = 0.2126729 * r + 0.7151522 * g + 0.0721750 * b;
    let z = 0.0193339 * r + 0.1191920 * g + 0.9503041 * b;
    let (xn, yn, zn) = (0.95047, 1.0, 1.08883);
    let f = |t: f64| {
        if t > (6.0f64 / 29.0).powi(3) {
            t.cbrt()
        } else {
            t / (3.0 * (6.0f64 / 29.0).powi(2)) + 4.0 / 29.0
        }
    };
    let (fx, fy, fz) = (f(x / xn), f(y / yn), f(z / zn));
    let l = 116.0 * fy - 16.0;
    let a = 500.0 * (fx - fy);
    let bb = 200.0 * (fy - fz);
    let scale = |v: f64, lo: f64, hi: f64| {
        (((v - lo) / (hi - lo)).clamp(0.0, 1.0) * 65535.0).round() as u16
    };
    [
        scale(l, 0.0, 100.0),
        scale(a, -128.0, 127.0),
        scale(bb, -128.0, 127.0),
    ]
}

/// Today's UTC date and time as DICOM DA / TM.
fn now() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let tod = secs % 86_400;
    // Days since 1970-01-01 → civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}{m:02}{d:02}"),
        format!("{:02}{:02}{:02}", tod / 3600, (tod / 60) % 60, tod % 60),
    )
}

fn el(tag: Tag, vr: VR, v: impl Into<PrimitiveValue>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, v.into())
}

fn seq(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

fn code_item(c: Code) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        el(tags::CODE_VALUE, VR::SH, c.value),
        el(tags::CODING_SCHEME_DESIGNATOR, VR::SH, c.scheme),
        el(tags::CODE_MEANING, VR::LO, c.meaning),
    ])
}

fn code_seq(tag: Tag, c: Code) -> DataElement<InMemDicomObject> {
    seq(tag, vec![code_item(c)])
}

const DCM_AI: Code = Code {
    value: "123110",
    scheme: "DCM",
    meaning: "Artificial Intelligence",
};
const DCM_SOURCE_IMAGE: Code = Code {
    value: "121322",
    scheme: "DCM",
    meaning: "Source image for image processing operation",
};
const DCM_SEGMENTATION: Code = Code {
    value: "113076",
    scheme: "DCM",
    meaning: "Segmentation",
};

/// Writes `labels` (on the grid of the series `source` was read from) as a binary DICOM SEG at
/// `path`: one segment per entry of `opts.segments` (or per label value present), frames only
/// where a segment has voxels. Returns the number of frames written. Written to a temporary
/// file and renamed, so a failure leaves nothing.
///
/// # Errors
/// [`IoError::Dicom`](crate::IoError::Dicom) when the map is not on the series' grid, a named label is 0, or nothing
/// is labelled (a SEG needs at least one frame); [`IoError::Os`](crate::IoError::Os) on a write failure.
pub fn write_seg(
    path: impl AsRef<Path>,
    labels: &Volume<u8>,
    source: &SeriesInfo,
    opts: &SegOptions,
) -> Result<usize> {
    let path = path.as_ref();
    let [nz, rows, cols] = labels.dims;
    if nz != source.frames.len() {
        return Err(dicom_err(
            path,
            format!(
                "the mask has {nz} slices but the source series {} has {}: not its grid",
                source.series_uid,
                source.frames.len()
            ),
        ));
    }
    if rows > usize::from(u16::MAX) || cols > usize::from(u16::MAX) {
        return Err(dicom_err(
            path,
            format!("a {rows}×{cols} slice is too large for DICOM"),
        ));
    }
    let segments: Vec<SegSegment> = if opts.segments.is_empty() {
        labels
            .labels_present()
            .into_iter()
            .filter(|(l, _)| *l > 0)
            .map(|(l, _)| SegSegment {
                label: l,
                name: format!("label {l}"),
                color: default_color(l),
            })
            .collect()
    } else {
        opts.segments.clone()
    };
    if let Some(s) = segments.iter().find(|s| s.label == 0) {
        return Err(dicom_err(
            path,
            format!("segment {:?} has label 0, the background", s.name),
        ));
    }
    let per = rows * cols;
    // Frames: segment-major, slices in z order, only slices where the segment has a voxel.
    let mut frames: Vec<(u8, usize)> = Vec::new();
    for s in &segments {
        for z in 0..nz {
            if labels.data[z * per..(z + 1) * per].contains(&s.label) {
                frames.push((s.label, z));
            }
        }
    }
    if frames.is_empty() {
        return Err(dicom_err(
            path,
            "the mask is empty: a DICOM SEG holds at least one frame (write NIfTI instead)",
        ));
    }

    let (date, time) = now();
    let sop_instance = new_uid();
    let mut o = InMemDicomObject::new_empty();
    // Patient and study: copied from the source; the Type 2 ones present even when empty.
    for e in source.context.iter() {
        o.put(e.clone());
    }
    for (tag, vr) in [
        (tags::PATIENT_NAME, VR::PN),
        (tags::PATIENT_ID, VR::LO),
        (tags::PATIENT_BIRTH_DATE, VR::DA),
        (tags::PATIENT_SEX, VR::CS),
        (tags::STUDY_DATE, VR::DA),
        (tags::STUDY_TIME, VR::TM),
        (tags::REFERRING_PHYSICIAN_NAME, VR::PN),
        (tags::STUDY_ID, VR::SH),
        (tags::ACCESSION_NUMBER, VR::SH),
        (tags::POSITION_REFERENCE_INDICATOR, VR::LO),
    ] {
        if o.get(tag).is_none() {
            o.put(DataElement::new(tag, vr, PrimitiveValue::Empty));
        }
    }
    if o.get(tags::STUDY_INSTANCE_UID).is_none() {
        o.put(el(tags::STUDY_INSTANCE_UID, VR::UI, new_uid()));
    }
    if o.get(tags::FRAME_OF_REFERENCE_UID).is_none() {
        o.put(el(tags::FRAME_OF_REFERENCE_UID, VR::UI, new_uid()));
    }
    let model_name = format!("segvol-rs {}", opts.algorithm_name);
    o.put(el(tags::SOP_CLASS_UID, VR::UI, SEG_SOP_CLASS));
    o.put(el(tags::SOP_INSTANCE_UID, VR::UI, sop_instance.clone()));
    o.put(el(tags::INSTANCE_CREATION_DATE, VR::DA, date.clone()));
    o.put(el(tags::INSTANCE_CREATION_TIME, VR::TM, time.clone()));
    o.put(el(tags::CONTENT_DATE, VR::DA, date));
    o.put(el(tags::CONTENT_TIME, VR::TM, time));
    o.put(DataElement::new(
        tags::IMAGE_TYPE,
        VR::CS,
        dicom_value!(Strs, ["DERIVED", "PRIMARY"]),
    ));
    o.put(el(tags::MODALITY, VR::CS, "SEG"));
    o.put(el(tags::SERIES_INSTANCE_UID, VR::UI, new_uid()));
    o.put(el(
        tags::SERIES_NUMBER,
        VR::IS,
        opts.series_number.to_string(),
    ));
    o.put(el(
        tags::SERIES_DESCRIPTION,
        VR::LO,
        opts.series_description.clone(),
    ));
    o.put(el(tags::INSTANCE_NUMBER, VR::IS, "1"));
    o.put(el(tags::MANUFACTURER, VR::LO, "segvol-rs"));
    o.put(el(tags::MANUFACTURER_MODEL_NAME, VR::LO, model_name));
    o.put(el(tags::DEVICE_SERIAL_NUMBER, VR::LO, "0"));
    o.put(el(
        tags::SOFTWARE_VERSIONS,
        VR::LO,
        format!("segvol-rs {}", env!("CARGO_PKG_VERSION")),
    ));

    // Image pixel: one bit per voxel.
    o.put(el(tags::SAMPLES_PER_PIXEL, VR::US, dicom_value!(U16, [1])));
    o.put(el(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"));
    o.put(el(tags::NUMBER_OF_FRAMES, VR::IS, frames.len().to_string()));
    o.put(el(tags::ROWS, VR::US, dicom_value!(U16, [rows as u16])));
    o.put(el(tags::COLUMNS, VR::US, dicom_value!(U16, [cols as u16])));
    o.put(el(tags::BITS_ALLOCATED, VR::US, dicom_value!(U16, [1])));
    o.put(el(tags::BITS_STORED, VR::US, dicom_value!(U16, [1])));
    o.put(el(tags::HIGH_BIT, VR::US, dicom_value!(U16, [0])));
    o.put(el(
        tags::PIXEL_REPRESENTATION,
        VR::US,
        dicom_value!(U16, [0]),
    ));
    o.put(el(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00"));
    o.put(el(tags::PRESENTATION_LUT_SHAPE, VR::CS, "IDENTITY"));

    // Segmentation image.
    o.put(el(tags::SEGMENTATION_TYPE, VR::CS, "BINARY"));
    o.put(el(tags::SEGMENTS_OVERLAP, VR::CS, "NO"));
    o.put(el(tags::CONTENT_LABEL, VR::CS, "SEGVOL"));
    o.put(el(tags::CONTENT_DESCRIPTION, VR::LO, "SegVol segmentation"));
    o.put(DataElement::new(
        tags::CONTENT_CREATOR_NAME,
        VR::PN,
        PrimitiveValue::Empty,
    ));
    let segment_items = segments
        .iter()
        .map(|s| {
            let (category, kind) = codes_for(&s.name);
            let lab = srgb_to_dicom_lab(s.color);
            InMemDicomObject::from_element_iter([
                code_seq(tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE, category),
                el(
                    tags::SEGMENT_NUMBER,
                    VR::US,
                    dicom_value!(U16, [u16::from(s.label)]),
                ),
                el(tags::SEGMENT_LABEL, VR::LO, s.name.clone()),
                seq(
                    tags::SEGMENTATION_ALGORITHM_IDENTIFICATION_SEQUENCE,
                    vec![InMemDicomObject::from_element_iter([
                        code_seq(tags::ALGORITHM_FAMILY_CODE_SEQUENCE, DCM_AI),
                        el(
                            tags::ALGORITHM_VERSION,
                            VR::LO,
                            opts.algorithm_version.clone(),
                        ),
                        el(tags::ALGORITHM_NAME, VR::LO, opts.algorithm_name.clone()),
                    ])],
                ),
                el(tags::SEGMENT_ALGORITHM_TYPE, VR::CS, "SEMIAUTOMATIC"),
                el(
                    tags::SEGMENT_ALGORITHM_NAME,
                    VR::LO,
                    opts.algorithm_name.clone(),
                ),
                code_seq(tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE, kind),
                el(
                    tags::RECOMMENDED_DISPLAY_CIE_LAB_VALUE,
                    VR::US,
                    PrimitiveValue::U16(lab.into_iter().collect()),
                ),
            ])
        })
        .collect();
    o.put(seq(tags::SEGMENT_SEQUENCE, segment_items));

    // References to the source: every instance, once.
    let mut instances: Vec<&str> = Vec::new();
    for f in &source.frames {
        if !instances.contains(&f.sop_instance_uid.as_str()) {
            instances.push(&f.sop_instance_uid);
        }
    }
    let ref_item = |uid: &str| {
        InMemDicomObject::from_element_iter([
            el(
                tags::REFERENCED_SOP_CLASS_UID,
                VR::UI,
                source.sop_class_uid.clone(),
            ),
            el(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, uid.to_string()),
        ])
    };
    o.put(seq(
        tags::REFERENCED_SERIES_SEQUENCE,
        vec![InMemDicomObject::from_element_iter([
            seq(
                tags::REFERENCED_INSTANCE_SEQUENCE,
                instances.iter().map(|u| ref_item(u)).collect(),
            ),
            el(tags::SERIES_INSTANCE_UID, VR::UI, source.series_uid.clone()),
        ])],
    ));
    o.put(seq(
        tags::SOURCE_IMAGE_SEQUENCE,
        instances.iter().map(|u| ref_item(u)).collect(),
    ));

    // Multi-frame dimensions: segment number, then position.
    let dim_org = new_uid();
    o.put(seq(
        tags::DIMENSION_ORGANIZATION_SEQUENCE,
        vec![InMemDicomObject::from_element_iter([el(
            tags::DIMENSION_ORGANIZATION_UID,
            VR::UI,
            dim_org.clone(),
        )])],
    ));
    let dim = |pointer: Tag, group: Tag, label: &str| {
        InMemDicomObject::from_element_iter([
            el(tags::DIMENSION_ORGANIZATION_UID, VR::UI, dim_org.clone()),
            el(
                tags::DIMENSION_INDEX_POINTER,
                VR::AT,
                PrimitiveValue::Tags([pointer].into_iter().collect()),
            ),
            el(
                tags::FUNCTIONAL_GROUP_POINTER,
                VR::AT,
                PrimitiveValue::Tags([group].into_iter().collect()),
            ),
            el(tags::DIMENSION_DESCRIPTION_LABEL, VR::LO, label.to_string()),
        ])
    };
    o.put(seq(
        tags::DIMENSION_INDEX_SEQUENCE,
        vec![
            dim(
                tags::REFERENCED_SEGMENT_NUMBER,
                tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                "Referenced Segment Number",
            ),
            dim(
                tags::IMAGE_POSITION_PATIENT,
                tags::PLANE_POSITION_SEQUENCE,
                "Image Position Patient",
            ),
        ],
    ));
    o.put(el(tags::DIMENSION_ORGANIZATION_TYPE, VR::CS, "3D"));

    // Functional groups: geometry shared, position and source per frame.
    let shared = InMemDicomObject::from_element_iter([
        seq(
            tags::PLANE_ORIENTATION_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([el(
                tags::IMAGE_ORIENTATION_PATIENT,
                VR::DS,
                ds_multi(&source.orientation),
            )])],
        ),
        seq(
            tags::PIXEL_MEASURES_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([
                el(tags::SLICE_THICKNESS, VR::DS, ds(source.slice_spacing)),
                el(
                    tags::SPACING_BETWEEN_SLICES,
                    VR::DS,
                    ds(source.slice_spacing),
                ),
                el(tags::PIXEL_SPACING, VR::DS, ds_multi(&source.pixel_spacing)),
            ])],
        ),
    ]);
    o.put(seq(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, vec![shared]));
    let per_frame = frames
        .iter()
        .map(|&(label, z)| {
            let src = &source.frames[z];
            let mut r = ref_item(&src.sop_instance_uid);
            if let Some(k) = src.frame {
                r.put(el(tags::REFERENCED_FRAME_NUMBER, VR::IS, k.to_string()));
            }
            r.put(code_seq(
                tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
                DCM_SOURCE_IMAGE,
            ));
            r.put(el(tags::SPATIAL_LOCATIONS_PRESERVED, VR::CS, "YES"));
            InMemDicomObject::from_element_iter([
                seq(
                    tags::DERIVATION_IMAGE_SEQUENCE,
                    vec![InMemDicomObject::from_element_iter([
                        seq(tags::SOURCE_IMAGE_SEQUENCE, vec![r]),
                        code_seq(tags::DERIVATION_CODE_SEQUENCE, DCM_SEGMENTATION),
                    ])],
                ),
                seq(
                    tags::FRAME_CONTENT_SEQUENCE,
                    vec![InMemDicomObject::from_element_iter([el(
                        tags::DIMENSION_INDEX_VALUES,
                        VR::UL,
                        PrimitiveValue::U32([u32::from(label), z as u32 + 1].into_iter().collect()),
                    )])],
                ),
                seq(
                    tags::PLANE_POSITION_SEQUENCE,
                    vec![InMemDicomObject::from_element_iter([el(
                        tags::IMAGE_POSITION_PATIENT,
                        VR::DS,
                        ds_multi(&src.position),
                    )])],
                ),
                seq(
                    tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                    vec![InMemDicomObject::from_element_iter([el(
                        tags::REFERENCED_SEGMENT_NUMBER,
                        VR::US,
                        dicom_value!(U16, [u16::from(label)]),
                    )])],
                ),
            ])
        })
        .collect();
    o.put(seq(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, per_frame));

    // Pixel data: the frames' bits one after another, least significant bit first (PS3.5
    // 8.1.1), padded to an even length.
    let bits = frames.len() * per;
    let mut packed = vec![0u8; bits.div_ceil(8).next_multiple_of(2)];
    for (f, &(label, z)) in frames.iter().enumerate() {
        let slice = &labels.data[z * per..(z + 1) * per];
        for (i, &v) in slice.iter().enumerate() {
            if v == label {
                let b = f * per + i;
                packed[b / 8] |= 1 << (b % 8);
            }
        }
    }
    o.put(el(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(packed)));

    let file = o
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .media_storage_sop_class_uid(SEG_SOP_CLASS)
                .media_storage_sop_instance_uid(sop_instance),
        )
        .map_err(|e| dicom_err(path, format!("cannot build the file meta group: {e}")))?;
    write_atomically(path, ".dcm", |tmp| {
        file.write_to_file(tmp)
            .map_err(|e| dicom_err(path, format!("cannot write: {e}")))
    })?;
    Ok(frames.len())
}

/// A SEG read onto a series' grid: the label map and each segment's number and label.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadSeg {
    /// Label `n` where segment `n` is set (a later segment wins where segments overlap).
    pub labels: Vec<u8>,
    /// (segment number, segment label).
    pub segments: Vec<(u8, String)>,
}

/// Reads the DICOM SEG at `path` onto the grid of `source` (shape `[frames, rows, cols]`):
/// each frame is placed on the slice whose instance it references (and frame, for a
/// multi-frame source), else on the slice at its position. BINARY and FRACTIONAL (≥ half
/// the maximum counts as in) segmentations are read.
///
/// # Errors
/// [`IoError::Dicom`](crate::IoError::Dicom): not a SEG, another size or orientation than the series, a frame on no
/// slice of it, a segment number above 255, pixel data shorter than its frames.
pub fn read_seg(path: impl AsRef<Path>, source: &SeriesInfo, dims: [usize; 3]) -> Result<ReadSeg> {
    let path = path.as_ref();
    let obj = OpenFileOptions::new()
        .open_file(path)
        .map_err(|e| dicom_err(path, format!("not a readable DICOM file: {e}")))?;
    if str_of(&obj, tags::SOP_CLASS_UID).as_deref() != Some(SEG_SOP_CLASS) {
        return Err(dicom_err(
            path,
            "not a DICOM Segmentation (SOP class 1.2.840.10008.5.1.4.1.1.66.4)",
        ));
    }
    let [nz, rows, cols] = dims;
    let (r, c) = (int_of(&obj, tags::ROWS), int_of(&obj, tags::COLUMNS));
    if r != Some(rows as i64) || c != Some(cols as i64) {
        return Err(dicom_err(
            path,
            format!("its frames are {r:?}×{c:?}, the series' slices {rows}×{cols}"),
        ));
    }
    let bits = int_of(&obj, tags::BITS_ALLOCATED).unwrap_or(1);
    let fractional = str_of(&obj, tags::SEGMENTATION_TYPE).as_deref() == Some("FRACTIONAL");
    let max_frac = int_of(&obj, tags::MAXIMUM_FRACTIONAL_VALUE)
        .unwrap_or(255)
        .max(1);
    let n = int_of(&obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as usize;
    let segments: Vec<(u8, String)> = obj
        .get(tags::SEGMENT_SEQUENCE)
        .and_then(|e| e.items())
        .unwrap_or_default()
        .iter()
        .map(|it| {
            let num = int_of(it, tags::SEGMENT_NUMBER).unwrap_or(0);
            let num = u8::try_from(num).map_err(|_| {
                dicom_err(
                    path,
                    format!("segment number {num} does not fit a label map (1..=255)"),
                )
            })?;
            Ok((num, str_of(it, tags::SEGMENT_LABEL).unwrap_or_default()))
        })
        .collect::<Result<_>>()?;
    let shared = item(&obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let per_frame: &[InMemDicomObject] = obj
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items())
        .unwrap_or_default();
    if per_frame.len() != n {
        return Err(dicom_err(
            path,
            format!(
                "{n} frames but {} per-frame functional groups",
                per_frame.len()
            ),
        ));
    }
    // Orientation must be the series'.
    if let Some(o) = per_frame
        .first()
        .and_then(|f| functional_group(f, shared, tags::PLANE_ORIENTATION_SEQUENCE))
        .and_then(|g| floats(g, tags::IMAGE_ORIENTATION_PATIENT))
        && (o.len() != 6
            || o.iter()
                .zip(&source.orientation)
                .any(|(a, b)| (a - b).abs() > 1e-3))
    {
        return Err(dicom_err(
            path,
            format!(
                "its orientation {o:?} is not the series' {:?}: it does not lie on this image",
                source.orientation
            ),
        ));
    }
    let bytes = obj
        .get(tags::PIXEL_DATA)
        .ok_or_else(|| dicom_err(path, "no Pixel Data"))?
        .to_bytes()
        .map_err(|e| dicom_err(path, format!("its pixel data is not plain bytes: {e}")))?;
    let per = rows * cols;
    let need = if bits == 1 {
        (n * per).div_ceil(8)
    } else {
        n * per
    };
    if bytes.len() < need {
        return Err(dicom_err(
            path,
            format!(
                "pixel data has {} bytes, its {n} frames need {need}",
                bytes.len()
            ),
        ));
    }
    let normal = normal_of(&source.orientation);
    let d0 = source
        .frames
        .first()
        .map_or(0.0, |f| dot(f.position, normal));
    let mut labels = vec![0u8; nz * per];
    for (k, f) in per_frame.iter().enumerate() {
        let seg_num = functional_group(f, shared, tags::SEGMENT_IDENTIFICATION_SEQUENCE)
            .and_then(|g| int_of(g, tags::REFERENCED_SEGMENT_NUMBER))
            .ok_or_else(|| dicom_err(path, format!("frame {} names no segment", k + 1)))?;
        let label = u8::try_from(seg_num).map_err(|_| {
            dicom_err(
                path,
                format!("segment number {seg_num} does not fit a label map"),
            )
        })?;
        // The slice: by referenced instance (and frame), else by position.
        let by_ref = item(f, tags::DERIVATION_IMAGE_SEQUENCE)
            .and_then(|d| item(d, tags::SOURCE_IMAGE_SEQUENCE))
            .and_then(|r| {
                let uid = str_of(r, tags::REFERENCED_SOP_INSTANCE_UID)?;
                let fr = int_of(r, tags::REFERENCED_FRAME_NUMBER).map(|v| v as u32);
                source.frames.iter().position(|sf| {
                    sf.sop_instance_uid == uid && (sf.frame.is_none() || sf.frame == fr)
                })
            });
        let z = match by_ref {
            Some(z) => z,
            None => {
                let p = item(f, tags::PLANE_POSITION_SEQUENCE)
                    .and_then(|g| floats(g, tags::IMAGE_POSITION_PATIENT))
                    .filter(|p| p.len() == 3)
                    .ok_or_else(|| {
                        dicom_err(
                            path,
                            format!(
                                "frame {} has neither a source reference nor a position",
                                k + 1
                            ),
                        )
                    })?;
                let d = dot([p[0], p[1], p[2]], normal);
                let zf = (d - d0) / source.slice_spacing.max(1e-9);
                let z = zf.round();
                if (zf - z).abs() > 0.05 || z < 0.0 || z as usize >= nz {
                    return Err(dicom_err(
                        path,
                        format!("frame {} at {p:?} lies on no slice of the series", k + 1),
                    ));
                }
                z as usize
            }
        };
        let out = &mut labels[z * per..(z + 1) * per];
        for (i, v) in out.iter_mut().enumerate() {
            let on = if bits == 1 {
                let b = k * per + i;
                bytes[b / 8] >> (b % 8) & 1 == 1
            } else {
                let x = i64::from(bytes[k * per + i]);
                if fractional { 2 * x >= max_frac } else { x > 0 }
            };
            if on {
                *v = label;
            }
        }
    }
    Ok(ReadSeg { labels, segments })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ds_fits_sixteen_characters() {
        assert_eq!(ds(3.0), "3");
        assert_eq!(ds(-0.0), "0");
        assert_eq!(ds(-123.456), "-123.456");
        let s = ds(-0.123_456_789_012_345_67);
        assert!(s.len() <= 16, "{s}");
        // "-0.123456789012": 12 decimals fit, so the error is at most half of 1e-12.
        assert!((s.parse::<f64>().unwrap_or(f64::NAN) + 0.123_456_789_012_345_67).abs() <= 5e-13);
        let s = ds(-1_234.567_890_123_456);
        assert!(s.len() <= 16, "{s}");
        assert!((s.parse::<f64>().unwrap_or(f64::NAN) + 1_234.567_890_123_456).abs() < 1e-10);
    }

    #[test]
    fn lab_of_white_black_red() {
        // Hand values: white is L*=100, a*=b*=0 → (65535, 32896, 32896) on DICOM's scale
        // (0 ↦ 128/255·65535 = 32896); black L*=0; sRGB red L*≈53.24, a*≈80.09, b*≈67.20.
        assert_eq!(srgb_to_dicom_lab([255, 255, 255]), [65535, 32896, 32896]);
        assert_eq!(srgb_to_dicom_lab([0, 0, 0]), [0, 32896, 32896]);
        let r = srgb_to_dicom_lab([255, 0, 0]);
        let expect = [
            53.24 / 100.0 * 65535.0,
            (80.09 + 128.0) / 255.0 * 65535.0,
            (67.20 + 128.0) / 255.0 * 65535.0,
        ];
        for (a, b) in r.iter().zip(expect) {
            assert!((f64::from(*a) - b).abs() < 40.0, "{r:?} vs {expect:?}");
        }
    }

    #[test]
    fn structure_codes() {
        assert_eq!(codes_for("liver").1.value, "10200004");
        assert_eq!(codes_for("kidney_right").1.value, "64033007");
        assert_eq!(codes_for("Left Kidney").1.value, "64033007");
        assert_eq!(codes_for("liver tumor").0, ALTERED_STRUCTURE);
        assert_eq!(codes_for("gluteus"), (TISSUE, TISSUE));
    }

    #[test]
    fn uids_are_valid_dicom_uids() {
        let u = new_uid();
        assert!(u.starts_with("2.25.") && u.len() <= 64, "{u}");
        assert!(u.chars().all(|c| c.is_ascii_digit() || c == '.'));
        assert_ne!(u, new_uid());
    }
}
