//! The DICOM series reader and SEG writer on small series that pydicom wrote from the shared
//! tiny CT patch (io/tests/dicom/make_fixtures.sh; the expected affines are nibabel's, written
//! by that script). The full interoperability checks (highdicom, dciodvfy, real files) are
//! io/tests/dicom/check_dicom.py, run by .ci/run.

use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use segvol_io::dicom::{SegOptions, SeriesPick, list_series, read_seg, read_series, write_seg};
use segvol_io::{AnyVolume, IoError, Volume, read_nifti};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dicom/fixtures")
}

fn shared() -> PathBuf {
    std::env::var_os("SEGVOL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

fn source() -> Volume<f32> {
    read_nifti(shared().join("data/tiny/ct_patch_img.nii.gz"))
        .expect("the shared tiny CT patch")
        .to_f32()
}

fn affine_txt(name: &str) -> [[f64; 4]; 4] {
    let text = std::fs::read_to_string(fixtures().join(name)).expect("affine file");
    let mut a = [[0.0; 4]; 4];
    for (r, line) in text.lines().enumerate() {
        for (c, v) in line.split_whitespace().enumerate() {
            a[r][c] = v.parse().expect("a number");
        }
    }
    a
}

fn max_diff(a: &[[f64; 4]; 4], b: &[[f64; 4]; 4]) -> f64 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, to.join(p.file_name().expect("name"))).expect("copy");
    }
}

fn sorted_files(d: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(d)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

fn err_text(e: IoError) -> String {
    e.to_string()
}

#[test]
fn oblique_shuffled_rescaled_series_reads_to_the_nifti() {
    let s = read_series(fixtures().join("oblique"), &SeriesPick::Only).expect("reads");
    let src = source();
    assert_eq!(s.volume.dims(), src.dims);
    // Slope 0.5: the headers cannot promise whole values, so float32 comes back.
    assert!(
        matches!(s.volume, AnyVolume::F32(_)),
        "{:?}",
        s.volume.dtype()
    );
    assert_eq!(s.volume.to_f32().data, src.data);
    let d = max_diff(&s.volume.affine(), &affine_txt("oblique.affine.txt"));
    assert!(d <= 1e-4, "affine off by {d} mm");
    assert_eq!(s.info.modality, "CT");
    assert_eq!(s.info.frames.len(), 16);
    // Sorted by position along the normal: each slice one spacing further.
    let n = {
        let o = s.info.orientation;
        [
            o[1] * o[5] - o[2] * o[4],
            o[2] * o[3] - o[0] * o[5],
            o[0] * o[4] - o[1] * o[3],
        ]
    };
    let along: Vec<f64> = s
        .info
        .frames
        .iter()
        .map(|f| f.position.iter().zip(&n).map(|(a, b)| a * b).sum())
        .collect();
    for w in along.windows(2) {
        assert!((w[1] - w[0] - 3.0).abs() < 1e-4, "{along:?}");
    }
}

#[test]
fn enhanced_multiframe_and_rle_read_to_the_same_voxels() {
    let src = source();
    let mf = read_series(fixtures().join("enhanced"), &SeriesPick::Only).expect("multi-frame");
    assert_eq!(mf.volume.to_f32().data, src.data);
    let d = max_diff(&mf.volume.affine(), &affine_txt("oblique.affine.txt"));
    assert!(d <= 1e-4, "multi-frame affine off by {d} mm");
    assert!(mf.info.frames.iter().all(|f| f.frame.is_some()));
    let rle = read_series(fixtures().join("rle"), &SeriesPick::Only).expect("RLE");
    // Signed 16-bit, slope 1, intercept 0: int16 whatever the values.
    assert!(
        matches!(rle.volume, AnyVolume::I16(_)),
        "{:?}",
        rle.volume.dtype()
    );
    assert_eq!(rle.volume.to_f32().data, src.data);
    let d = max_diff(&rle.volume.affine(), &affine_txt("axial.affine.txt"));
    assert!(d <= 1e-4, "RLE affine off by {d} mm");
}

#[test]
fn file_order_and_names_do_not_matter() {
    let tmp = tempfile::tempdir().expect("tmp");
    let files = sorted_files(&fixtures().join("oblique"));
    // Reverse the name order and nest half of the files one folder down.
    for (i, f) in files.iter().enumerate() {
        let dir = if i % 2 == 0 {
            tmp.path().to_path_buf()
        } else {
            tmp.path().join("sub")
        };
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::copy(f, dir.join(format!("z{:03}", files.len() - i))).expect("copy");
    }
    let a = read_series(fixtures().join("oblique"), &SeriesPick::Only).expect("a");
    let b = read_series(tmp.path(), &SeriesPick::Only).expect("b");
    assert_eq!(a.volume, b.volume);
}

#[test]
fn refusals_name_the_problem() {
    // A hole in the stack.
    let tmp = tempfile::tempdir().expect("tmp");
    let hole = tmp.path().join("hole");
    copy_dir(&fixtures().join("rle"), &hole);
    std::fs::remove_file(hole.join("slice_0007.dcm")).expect("rm");
    let e = err_text(read_series(&hole, &SeriesPick::Only).expect_err("hole"));
    assert!(
        e.contains("uneven slice gaps") && e.contains("slice_0006.dcm"),
        "{e}"
    );

    // Gantry tilt.
    let e = err_text(read_series(fixtures().join("tilt"), &SeriesPick::Only).expect_err("tilt"));
    assert!(e.contains("not stacked along their normal"), "{e}");

    // Two series, none picked; then each picked.
    let two = tmp.path().join("two");
    copy_dir(&fixtures().join("rle"), &two.join("a"));
    copy_dir(&fixtures().join("oblique"), &two.join("b"));
    let e = err_text(read_series(&two, &SeriesPick::Only).expect_err("two"));
    assert!(
        e.contains("2 image series here") && e.contains("--series"),
        "{e}"
    );
    let list = list_series(&two).expect("list");
    assert_eq!(list.len(), 2);
    for s in &list {
        let by_index = read_series(&two, &SeriesPick::Index(s.index)).expect("by index");
        let by_uid = read_series(&two, &SeriesPick::Uid(s.uid.clone())).expect("by uid");
        assert_eq!(by_index.info.series_uid, s.uid);
        assert_eq!(by_index.volume, by_uid.volume);
    }
    let e = err_text(read_series(&two, &SeriesPick::Index(3)).expect_err("no 3"));
    assert!(e.contains("there is no series 3"), "{e}");

    // Mixed orientations: one slice turned.
    let turned = tmp.path().join("turned");
    copy_dir(&fixtures().join("rle"), &turned);
    let f = turned.join("slice_0004.dcm");
    let mut obj = dicom_object::open_file(&f).expect("open");
    obj.put(dicom_core::DataElement::new(
        tags::IMAGE_ORIENTATION_PATIENT,
        dicom_core::VR::DS,
        dicom_core::PrimitiveValue::Strs(
            ["0", "1", "0", "0", "0", "-1"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
    ));
    obj.write_to_file(&f).expect("write");
    let e = err_text(read_series(&turned, &SeriesPick::Only).expect_err("turned"));
    assert!(
        e.contains("mixes orientations") && e.contains("slice_0004.dcm"),
        "{e}"
    );

    // A truncated slice: named.
    let cut = tmp.path().join("cut");
    copy_dir(&fixtures().join("rle"), &cut);
    let f = cut.join("slice_0009.dcm");
    let bytes = std::fs::read(&f).expect("read");
    std::fs::write(&f, &bytes[..bytes.len() / 2]).expect("write");
    let e = err_text(read_series(&cut, &SeriesPick::Only).expect_err("cut"));
    assert!(e.contains("slice_0009.dcm"), "{e}");

    // Not DICOM at all.
    let empty = tmp.path().join("notdicom");
    std::fs::create_dir_all(&empty).expect("mkdir");
    std::fs::write(empty.join("readme.txt"), "hello").expect("write");
    let e = err_text(read_series(&empty, &SeriesPick::Only).expect_err("none"));
    assert!(e.contains("none of its 1 file(s) is a DICOM file"), "{e}");
}

#[test]
fn seg_round_trip_on_the_series_grid() {
    let s = read_series(fixtures().join("oblique"), &SeriesPick::Only).expect("reads");
    let [nz, ny, nx] = s.volume.dims();
    let mut labels = vec![0u8; nz * ny * nx];
    // Two segments on a few slices, one voxel at an odd bit offset.
    for z in 3..7 {
        for y in 4..12 {
            for x in 5..9 {
                labels[(z * ny + y) * nx + x] = 1;
            }
        }
    }
    labels[(10 * ny + 31) * nx + 31] = 2;
    labels[(11 * ny) * nx + 1] = 2;
    let mut v = Volume::new(labels.clone(), [nz, ny, nx], s.volume.spacing()).expect("vol");
    v.affine = s.volume.affine();
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("seg.dcm");
    let frames = write_seg(&out, &v, &s.info, &SegOptions::default()).expect("writes");
    assert_eq!(frames, 4 + 2, "only non-empty (segment, slice) frames");
    let back = read_seg(&out, &s.info, [nz, ny, nx]).expect("reads back");
    assert_eq!(back.labels, labels);
    assert_eq!(
        back.segments,
        vec![(1, "label 1".to_string()), (2, "label 2".to_string())]
    );
    // The file's own header: a SEG referencing the series.
    let obj = dicom_object::open_file(&out).expect("open");
    let get = |t| {
        obj.element(t)
            .expect("present")
            .to_str()
            .expect("text")
            .trim_end_matches('\0')
            .to_string()
    };
    assert_eq!(get(tags::SOP_CLASS_UID), "1.2.840.10008.5.1.4.1.1.66.4");
    assert_eq!(get(tags::MODALITY), "SEG");
    assert_eq!(get(tags::NUMBER_OF_FRAMES), "6");
    // An empty mask is refused and leaves nothing.
    let empty = v.with_data(vec![0u8; nz * ny * nx]).expect("vol");
    let out2 = tmp.path().join("empty.dcm");
    let e = err_text(write_seg(&out2, &empty, &s.info, &SegOptions::default()).expect_err("empty"));
    assert!(e.contains("the mask is empty"), "{e}");
    assert!(!out2.exists());
    // Another grid is refused.
    let small = Volume::new(vec![1u8; 2 * ny * nx], [2, ny, nx], [1.0; 3]).expect("vol");
    let e = err_text(write_seg(&out2, &small, &s.info, &SegOptions::default()).expect_err("grid"));
    assert!(e.contains("not its grid"), "{e}");
}

/// Cut and corrupted copies of every fixture file: an error or a volume, never a panic.
#[test]
fn damaged_files_never_panic() {
    let tmp = tempfile::tempdir().expect("tmp");
    let seeds = [
        fixtures().join("rle/slice_0003.dcm"),
        fixtures().join("enhanced/enhanced.dcm"),
        sorted_files(&fixtures().join("oblique"))[0].clone(),
    ];
    let mut n = 0;
    for seed in &seeds {
        let bytes = std::fs::read(seed).expect("read");
        let cuts = (0..bytes.len()).step_by(bytes.len() / 60 + 1);
        for cut in cuts {
            let d = tmp.path().join(format!("c{n}"));
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("f.dcm"), &bytes[..cut]).expect("write");
            let _ = read_series(&d, &SeriesPick::Only);
            n += 1;
        }
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        // Few mutations: a corrupted length field makes dicom-rs zero that many bytes (up to
        // 4 GB) before it finds the file too short, which takes seconds (docs/dicom.md).
        for _ in 0..60 {
            let mut b = bytes.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state as usize) % b.len();
                b[i] = (state >> 32) as u8;
            }
            let d = tmp.path().join(format!("m{n}"));
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join("f.dcm"), &b).expect("write");
            let _ = read_series(&d, &SeriesPick::Only);
            n += 1;
        }
    }
    assert!(n > 300);
}
