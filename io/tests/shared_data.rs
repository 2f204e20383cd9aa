//! segvol-io against the real development data in `../shared/data` (see its README.md):
//! shapes, spacings, affines and label counts come from its `manifest.json`, written by
//! `make_dev_data.py` with nibabel/SimpleITK, i.e. an independent reader.

// Test code: a panic with the failing value is the right outcome.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::{Path, PathBuf};

use segvol_io::npy::{NpyData, parse_npy, to_npy_bytes};
use segvol_io::{
    AnyVolume, ChallengeCase, ClickKind, IoError, Volume, read_image, read_nifti, write_nifti,
};

fn shared() -> PathBuf {
    let p = std::env::var_os("SEGVOL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    assert!(
        p.join("data/manifest.json").exists(),
        "the shared data folder is missing: expected {} (set SEGVOL_SHARED)",
        p.display()
    );
    p
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(shared().join("data/manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap()
}

fn member_bytes(path: &Path, key: &str) -> Vec<u8> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut m = z.by_name(&format!("{key}.npy")).unwrap();
    let mut b = Vec::new();
    m.read_to_end(&mut b).unwrap();
    b
}

#[test]
fn every_nifti_case_matches_the_manifest() {
    let m = manifest();
    for case in m["cases"].as_array().unwrap() {
        let name = case["case"].as_str().unwrap();
        if name.ends_with("_clicks") {
            continue;
        }
        let img = read_nifti(shared().join(format!("data/nifti/{name}_img.nii.gz"))).unwrap();
        let gt = read_nifti(shared().join(format!("data/nifti/{name}_gt.nii.gz"))).unwrap();
        let shape: Vec<usize> = case["shape_zyx"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(img.dims().to_vec(), shape, "{name}");
        assert_eq!(gt.dims().to_vec(), shape, "{name}");
        let sp: Vec<f64> = case["spacing_zyx_mm"]
            .as_array()
            .unwrap()
            .iter()
            .map(f)
            .collect();
        for (got, want) in img.spacing().iter().zip(&sp) {
            assert!((got - want).abs() < 1e-5, "{name} spacing");
        }
        // dtype as the manifest says.
        assert_eq!(
            img.dtype().to_string(),
            case["image_dtype"].as_str().unwrap(),
            "{name}"
        );
        // Intensity range.
        let (lo, hi) = img.min_max().unwrap();
        let range: Vec<f64> = case["image_range"]
            .as_array()
            .unwrap()
            .iter()
            .map(f)
            .collect();
        assert_eq!((lo, hi), (range[0], range[1]), "{name}");
        // Affine: nibabel's RAS affine = diag(-1,-1,1) · LPS direction · diag(spacing x,y,z).
        let dir: Vec<f64> = case["direction_lps"]
            .as_array()
            .unwrap()
            .iter()
            .map(f)
            .collect();
        let origin: Vec<f64> = case["origin_xyz_lps_mm"]
            .as_array()
            .unwrap()
            .iter()
            .map(f)
            .collect();
        let flip = [-1.0, -1.0, 1.0];
        let sxyz = [sp[2], sp[1], sp[0]];
        let a = img.affine();
        for r in 0..3 {
            for c in 0..3 {
                let want = flip[r] * dir[r * 3 + c] * sxyz[c];
                assert!(
                    (a[r][c] - want).abs() < 1e-4,
                    "{name} affine[{r}][{c}] {} vs {want}",
                    a[r][c]
                );
            }
            assert!(
                (a[r][3] - flip[r] * origin[r]).abs() < 1e-3,
                "{name} origin {r}"
            );
        }
        assert_eq!(a, gt.affine(), "{name}: image and label grids differ");
        // Label voxel counts.
        let labels = gt.to_labels().unwrap();
        let counts = labels.label_counts();
        let want = case["labels"].as_object().unwrap();
        assert_eq!(counts.len() - 1, want.len(), "{name} label count");
        for (k, v) in want {
            let l: usize = k.parse().unwrap();
            assert_eq!(counts[l], v["voxels"].as_u64().unwrap(), "{name} label {l}");
        }
    }
}

#[test]
fn every_npz_case_matches_the_manifest_and_its_nifti() {
    let m = manifest();
    for case in m["cases"].as_array().unwrap() {
        let name = case["case"].as_str().unwrap();
        let c = ChallengeCase::read(shared().join(format!("data/npz/{name}.npz"))).unwrap();
        let base = name.trim_end_matches("_clicks");
        let gt_nii = read_nifti(shared().join(format!("data/nifti/{base}_gt.nii.gz")))
            .unwrap()
            .to_labels()
            .unwrap();
        let gts = c.gts.as_ref().unwrap();
        assert_eq!(gts.dims, gt_nii.dims, "{name}");
        assert_eq!(
            gts.data, gt_nii.data,
            "{name}: npz gts differ from the NIfTI label map"
        );
        assert_eq!(c.imgs.as_ref().unwrap().dtype().to_string(), "uint8");
        let sp: Vec<f64> = case["spacing_zyx_mm"]
            .as_array()
            .unwrap()
            .iter()
            .map(f)
            .collect();
        assert_eq!(c.spacing.unwrap().to_vec(), sp, "{name}");
        let boxes = c.boxes.as_ref().unwrap();
        let want = case["boxes"].as_array().unwrap();
        assert_eq!(boxes.len(), want.len());
        for (b, w) in boxes.iter().zip(want) {
            assert_eq!(b.z_min, w["z_min"].as_i64().unwrap());
            assert_eq!(b.z_max, w["z_max"].as_i64().unwrap());
            assert_eq!(b.z_mid, w["z_mid"].as_i64().unwrap());
            assert_eq!(b.z_mid_x_min, w["z_mid_x_min"].as_i64().unwrap());
            assert_eq!(b.z_mid_y_min, w["z_mid_y_min"].as_i64().unwrap());
            assert_eq!(b.z_mid_x_max, w["z_mid_x_max"].as_i64().unwrap());
            assert_eq!(b.z_mid_y_max, w["z_mid_y_max"].as_i64().unwrap());
        }
    }
}

/// Values printed by numpy 1.26.3 for `np.load(..., allow_pickle=True)` of this file.
#[test]
fn clicks_file_reads_as_numpy_sees_it() {
    let c = ChallengeCase::read(shared().join("data/npz/ct_pelvis_multi6_clicks.npz")).unwrap();
    assert_eq!(
        c.keys,
        [
            "imgs",
            "gts",
            "spacing",
            "clicks",
            "clicks_order",
            "prev_pred",
            "boxes"
        ]
    );
    let clicks = c.clicks.as_ref().unwrap();
    assert_eq!(clicks.len(), 6);
    assert_eq!(clicks[0].fg, vec![[10, 51, 48], [15, 49, 45], [12, 65, 52]]);
    assert!(clicks[0].bg.is_empty());
    let order = c.clicks_order.as_ref().unwrap();
    use ClickKind::{Bg, Fg};
    let rows: [[ClickKind; 3]; 6] = [
        [Fg, Fg, Fg],
        [Fg, Fg, Fg],
        [Bg, Bg, Bg],
        [Fg, Fg, Fg],
        [Fg, Fg, Fg],
        [Bg, Bg, Bg],
    ];
    for (got, want) in order.iter().zip(rows) {
        assert_eq!(*got, want.map(Some).to_vec());
    }
    // Each class's list lengths agree with its order row.
    for (cl, row) in clicks.iter().zip(order) {
        let fg = row.iter().filter(|k| **k == Some(Fg)).count();
        let bg = row.iter().filter(|k| **k == Some(Bg)).count();
        assert_eq!((cl.fg.len(), cl.bg.len()), (fg, bg));
    }
    // Class 4 ignored its clicks: the same click three times (shared/data/README.md).
    assert!(clicks[3].fg.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(c.prev_pred.as_ref().unwrap().dims, [82, 101, 122]);
}

/// Re-serialising every pickled member gives numpy 1.26.3's exact bytes (header and pickle),
/// so numpy reads our files as it reads its own.
#[test]
fn object_members_are_rewritten_byte_for_byte() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(shared().join("data/npz"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.push(shared().join("data/tiny/ct_patch.npz"));
    files.push(shared().join("data/tiny/ct_patch_clicks_none.npz"));
    let mut checked = 0;
    for path in files {
        for key in ["boxes", "clicks", "clicks_order"] {
            let mut z = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
            if z.by_name(&format!("{key}.npy")).is_err() {
                continue;
            }
            let orig = member_bytes(&path, key);
            let parsed = parse_npy(&path, key, &orig).unwrap();
            assert_eq!(
                to_npy_bytes(&parsed).unwrap(),
                orig,
                "{} {key}",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 14, "only {checked} members checked");
}

#[test]
fn numpy2_pickles_read_like_numpy1() {
    let a = ChallengeCase::read(shared().join("data/tiny/ct_patch.npz")).unwrap();
    let b = ChallengeCase::read(shared().join("data/tiny/ct_patch_numpy2.npz")).unwrap();
    assert_eq!(a.boxes, b.boxes);
    assert_eq!(a.gts, b.gts);
    assert_eq!(a.boxes.unwrap().len(), 1);
}

#[test]
fn clicks_none_fixture() {
    let c = ChallengeCase::read(shared().join("data/tiny/ct_patch_clicks_none.npz")).unwrap();
    assert_eq!(c.clicks_order, Some(vec![vec![Some(ClickKind::Fg), None]]));
    let cl = &c.clicks.as_ref().unwrap()[0];
    assert_eq!(cl.fg.len(), 1);
    assert!(cl.bg.is_empty());
    assert_eq!(c.prev_pred, c.gts);
}

#[test]
fn tiny_nifti_variants() {
    let t = shared().join("data/tiny");
    let img = read_nifti(t.join("ct_patch_img.nii.gz")).unwrap();
    let AnyVolume::I16(img16) = &img else {
        panic!("int16 expected, got {:?}", img.dtype())
    };
    assert_eq!(img.dims(), [16, 32, 32]);
    // scl_slope 0.5, scl_inter -1024 on raw 2·(HU+1024) gives back HU exactly.
    let scaled = read_nifti(t.join("ct_patch_int16_scaled.nii.gz")).unwrap();
    let AnyVolume::F32(s) = &scaled else {
        panic!("scaled int16 must come back as float32")
    };
    assert!(
        s.data
            .iter()
            .zip(&img16.data)
            .all(|(a, b)| *a == f32::from(*b))
    );
    // Uncompressed float32, first 8 slices.
    let f32v = read_nifti(t.join("ct_patch_float32.nii")).unwrap();
    assert_eq!(f32v.dims(), [8, 32, 32]);
    let AnyVolume::F32(fv) = &f32v else { panic!() };
    let n = 8 * 32 * 32;
    assert!(
        fv.data
            .iter()
            .zip(&img16.data[..n])
            .all(|(a, b)| *a == f32::from(*b))
    );
    // The label map has vertebra L4: 2 442 voxels.
    let gt = read_nifti(t.join("ct_patch_gt.nii.gz"))
        .unwrap()
        .to_labels()
        .unwrap();
    assert_eq!(gt.label_counts(), vec![16 * 32 * 32 - 2442, 2442]);
}

#[test]
fn bad_files_give_the_right_typed_error() {
    let t = shared().join("data/tiny");
    let e = read_nifti(t.join("ct_patch_4d.nii.gz")).unwrap_err();
    assert!(
        matches!(&e, IoError::UnsupportedDims { dims, .. } if dims == &vec![32, 32, 4, 2]),
        "{e}"
    );
    let e = read_nifti(t.join("ct_patch_truncated.nii.gz")).unwrap_err();
    assert!(matches!(e, IoError::TruncatedGzip { .. }), "{e}");
    let e = read_nifti(t.join("ct_patch_short_payload.nii.gz")).unwrap_err();
    assert!(
        matches!(e, IoError::ShortData { got, expected, .. } if got < expected),
        "{e}"
    );
    let e = ChallengeCase::read(t.join("ct_patch_corrupt.npz")).unwrap_err();
    assert!(
        matches!(&e, IoError::BadNpy { key, .. } if key == "imgs"),
        "{e}"
    );
    let e = ChallengeCase::read(t.join("ct_patch_truncated.npz")).unwrap_err();
    assert!(matches!(e, IoError::BadZip { .. }), "{e}");
    let e = read_nifti(t.join("does_not_exist.nii.gz")).unwrap_err();
    assert!(matches!(e, IoError::NotFound { .. }), "{e}");
    // A npz is not a NIfTI: bad magic (read as .nii).
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake.nii");
    std::fs::write(&fake, vec![7u8; 400]).unwrap();
    let e = read_nifti(&fake).unwrap_err();
    assert!(matches!(e, IoError::BadMagic { .. }), "{e}");
    // An uncompressed file cut inside its 348-byte header.
    let short = dir.path().join("short.nii");
    let full = std::fs::read(t.join("ct_patch_float32.nii")).unwrap();
    std::fs::write(&short, &full[..100]).unwrap();
    let e = read_nifti(&short).unwrap_err();
    assert!(
        e.to_string().contains("short.nii") && e.to_string().contains("header"),
        "{e}"
    );
    // Every message names the file.
    for name in [
        "ct_patch_4d.nii.gz",
        "ct_patch_truncated.nii.gz",
        "ct_patch_short_payload.nii.gz",
    ] {
        let e = read_image(t.join(name)).unwrap_err();
        assert!(e.to_string().contains(name), "{e}");
    }
}

/// pixdim[0..4], qform_code, sform_code, srow_x, srow_y, srow_z, quaternion b c d x y z.
type Geometry = (Vec<f32>, i16, i16, [f32; 4], [f32; 4], [f32; 4], [f32; 6]);

fn header_geometry(v: &AnyVolume) -> Geometry {
    let h = match v {
        AnyVolume::U8(v) => v.header.clone(),
        AnyVolume::I16(v) => v.header.clone(),
        AnyVolume::I32(v) => v.header.clone(),
        AnyVolume::F32(v) => v.header.clone(),
        AnyVolume::F64(v) => v.header.clone(),
    }
    .unwrap();
    (
        h.pixdim[..4].to_vec(),
        h.qform_code,
        h.sform_code,
        h.srow_x,
        h.srow_y,
        h.srow_z,
        [
            h.quatern_b,
            h.quatern_c,
            h.quatern_d,
            h.quatern_x,
            h.quatern_y,
            h.quatern_z,
        ],
    )
}

#[test]
fn nifti_round_trip_keeps_data_and_geometry() {
    let dir = tempfile::tempdir().unwrap();
    // RAS int32 (non-cubic), LPS int16 (anisotropic), uint8 template.
    for name in [
        "ct_kidney_right_img",
        "ct_heart_thick_img",
        "mni_caudate_img",
    ] {
        let src = read_nifti(shared().join(format!("data/nifti/{name}.nii.gz"))).unwrap();
        let out = dir.path().join(format!("{name}.nii.gz"));
        match &src {
            AnyVolume::I16(v) => write_nifti(&out, v).unwrap(),
            AnyVolume::U8(v) => write_nifti(&out, v).unwrap(),
            AnyVolume::I32(v) => write_nifti(&out, &v.map(|&x| x as f32)).unwrap(),
            other => panic!("unexpected {:?}", other.dtype()),
        }
        let back = read_nifti(&out).unwrap();
        assert_eq!(back.to_f32().data, src.to_f32().data, "{name}");
        assert_eq!(back.affine(), src.affine(), "{name}");
        assert_eq!(back.spacing(), src.spacing(), "{name}");
        assert_eq!(header_geometry(&back), header_geometry(&src), "{name}");
        // A mask written with the image's geometry overlays it exactly.
        let mask: Volume<u8> = src.to_f32().map(|&x| u8::from(x > 100.0));
        let mpath = dir.path().join(format!("{name}_mask.nii"));
        write_nifti(&mpath, &mask).unwrap();
        let m = read_nifti(&mpath).unwrap();
        assert_eq!(m.dtype().to_string(), "uint8");
        assert_eq!(m.affine(), src.affine());
        assert_eq!(m.to_labels().unwrap().data, mask.data);
    }
}

#[test]
fn npz_round_trip_including_boxes_and_clicks() {
    let dir = tempfile::tempdir().unwrap();
    for src in [
        shared().join("data/npz/ct_pelvis_multi6_clicks.npz"),
        shared().join("data/npz/ct_heart_thick.npz"),
        shared().join("data/tiny/ct_patch_clicks_none.npz"),
    ] {
        let a = ChallengeCase::read(&src).unwrap();
        let out = dir.path().join(src.file_name().unwrap());
        a.write(&out).unwrap();
        // For `io/tests/check_numpy_reads.py`: keep a copy where numpy can load it.
        if let Some(keep) = std::env::var_os("SEGVOL_IO_OUT") {
            std::fs::copy(&out, Path::new(&keep).join(src.file_name().unwrap())).unwrap();
        }
        let b = ChallengeCase::read(&out).unwrap();
        assert_eq!(a, b, "{}", src.display());
        for key in [
            "boxes",
            "clicks",
            "clicks_order",
            "spacing",
            "imgs",
            "gts",
            "prev_pred",
        ] {
            if a.keys.iter().any(|k| k == key) {
                let (x, y) = (member_bytes(&src, key), member_bytes(&out, key));
                let px = parse_npy(&src, key, &x).unwrap();
                let py = parse_npy(&out, key, &y).unwrap();
                assert_eq!(px, py, "{key}");
                if matches!(px.data, NpyData::Object(_) | NpyData::Str(_)) {
                    assert_eq!(x, y, "{key}: object/str member bytes differ from numpy's");
                }
            }
        }
    }
}

#[test]
fn failed_writes_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let v = Volume::new(vec![1u8; 8], [2, 2, 2], [1.0; 3]).unwrap();
    // Unknown extension: refused before anything is created.
    assert!(matches!(
        write_nifti(dir.path().join("m.png"), &v),
        Err(IoError::UnknownFormat { .. })
    ));
    // Missing folder: an error naming the target.
    let e = write_nifti(dir.path().join("no/such/dir/m.nii.gz"), &v).unwrap_err();
    assert!(e.to_string().contains("m.nii.gz"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // A successful write leaves exactly the target.
    write_nifti(dir.path().join("m.nii.gz"), &v).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["m.nii.gz"]);
}

/// `nifti_bytes` (our in-memory NIfTI-1 layout) against the nifti crate's own writer, byte for
/// byte: a real CT with its source header (i16 and as f32), its label map (u8), and a volume
/// with a fresh header. Then the bytes read back as the same volume.
#[test]
fn nifti_bytes_are_what_write_nifti_writes() {
    let dir = tempfile::tempdir().unwrap();
    // Whatever type the file stores: as f32 with its source header, and as int16 (a CT's own
    // type) with the same header.
    let ct = read_nifti(shared().join("data/nifti/ct_kidney_right_img.nii.gz"))
        .unwrap()
        .to_f32();
    let gt = read_nifti(shared().join("data/nifti/ct_kidney_right_gt.nii.gz")).unwrap();
    let AnyVolume::U8(gt) = gt else {
        panic!("the labels are uint8 in the manifest")
    };
    let fresh = Volume::new(
        (0..2 * 3 * 5).map(|i| i as f32 * 0.5).collect(),
        [2, 3, 5],
        [2.5, 0.7, 0.8],
    )
    .unwrap();
    fn same<T: segvol_io::NiftiWritable>(dir: &Path, name: &str, v: &Volume<T>) {
        let p = dir.join(name);
        write_nifti(&p, v).unwrap();
        let want = std::fs::read(&p).unwrap();
        let got = segvol_io::nifti_bytes(v, name).unwrap();
        assert_eq!(got.len(), want.len(), "{name}: length");
        let first = got.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!(first, None, "{name}: first differing byte");
    }
    same(dir.path(), "ct.nii", &ct);
    same(dir.path(), "ct_i16.nii", &ct.map(|&x| x as i16));
    same(dir.path(), "gt.nii", &gt);
    same(dir.path(), "fresh.nii", &fresh);
    // And the bytes read back (through a file: our reader takes paths) as the same volume.
    let p = dir.path().join("back.nii");
    std::fs::write(&p, segvol_io::nifti_bytes(&gt, "back.nii").unwrap()).unwrap();
    let AnyVolume::U8(back) = read_nifti(&p).unwrap() else {
        panic!("u8 written, u8 read")
    };
    assert_eq!(
        (back.dims, back.spacing, back.affine),
        (gt.dims, gt.spacing, gt.affine)
    );
    assert!(back.data == gt.data);
}
