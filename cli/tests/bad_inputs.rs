//! The bad-input matrix (issue 15): every command that reads user files, given a broken,
//! odd or hostile one, exits ≠ 0 with one line `error: …` that names the file and the problem,
//! and leaves its output path untouched. The few inputs with a documented handling instead of
//! an error are asserted as such at the end.

// Test code: a panic with the failing value is the right outcome.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use segvol_io::npy::{NpyArray, NpyData};
use segvol_io::{AnyVolume, ChallengeBox, ChallengeCase, Volume};

use common::shared;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_segvol"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// Runs `args`; asserts exit ≠ 0, exactly one stderr line `error: …` that mentions `file`'s
/// name and `needle`, and that `out` (when given) was not created or changed.
#[track_caller]
fn refused(args: &[String], file: &Path, needle: &str, out: Option<&Path>) {
    let before = out.and_then(|o| std::fs::read(o).ok());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, err) = run(&a);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_ne!(code, 0, "{a:?} succeeded");
    assert_ne!(code, 101, "{a:?} panicked: {err}");
    assert_eq!(lines.len(), 1, "{a:?}: not one line: {err}");
    assert!(lines[0].starts_with("error: "), "{a:?}: {err}");
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(
        lines[0].contains(name),
        "{a:?}: does not name {name}: {err}"
    );
    assert!(
        lines[0].to_lowercase().contains(&needle.to_lowercase()),
        "{a:?}: does not say `{needle}`: {err}"
    );
    if let Some(o) = out {
        assert_eq!(
            std::fs::read(o).ok(),
            before,
            "{a:?} touched {}",
            o.display()
        );
    }
}

fn npy(path: &Path, shape: &[usize], data: Vec<f32>) {
    segvol_io::write_npy(
        path,
        &NpyArray {
            shape: shape.to_vec(),
            data: NpyData::F32(data),
        },
    )
    .unwrap();
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The broken files, made here from the shared development data.
fn files() -> Files {
    let f = Files {
        dir: tempfile::tempdir().unwrap(),
    };
    let good = shared().join("data/nifti/ct_kidney_right_img.nii.gz");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::copy(&good, f.p("good.nii.gz")).unwrap();
    std::fs::create_dir(f.p("folder.nii.gz")).unwrap();
    std::fs::write(f.p("empty.nii.gz"), b"").unwrap();
    std::fs::write(f.p("cut.nii.gz"), &bytes[..bytes.len() / 3]).unwrap();
    std::fs::write(f.p("text.nii"), "this is not a NIfTI file\n".repeat(20)).unwrap();
    std::fs::write(f.p("text.npz"), "not a zip archive").unwrap();
    std::fs::write(f.p("text.npy"), "not an npy array").unwrap();
    std::fs::copy(
        shared().join("data/tiny/ct_patch_4d.nii.gz"),
        f.p("four_d.nii.gz"),
    )
    .unwrap();
    npy(&f.p("two_d.npy"), &[30, 30], vec![0.0; 900]);
    npy(&f.p("zero.npy"), &[0, 30, 30], vec![]);
    let mut nan = vec![10.0f32; 20 * 30 * 30];
    nan[77] = f32::NAN;
    npy(&f.p("nan.npy"), &[20, 30, 30], nan);
    let mut inf = vec![10.0f32; 20 * 30 * 30];
    inf[5] = f32::INFINITY;
    npy(&f.p("inf.npy"), &[20, 30, 30], inf);
    npy(&f.p("constant.npy"), &[20, 30, 30], vec![7.0; 20 * 30 * 30]);
    // Challenge cases.
    let case = ChallengeCase::read(shared().join("data/npz/ct_kidney_right.npz")).unwrap();
    let with = |name: &str, edit: &dyn Fn(&mut ChallengeCase)| {
        let mut c = case.clone();
        edit(&mut c);
        c.write(f.p(name)).unwrap();
    };
    with("case_nan_spacing.npz", &|c| {
        c.spacing = Some([f64::NAN, 1.0, 1.0])
    });
    with("case_zero_spacing.npz", &|c| {
        c.spacing = Some([0.0, 1.0, 1.0])
    });
    with("case_neg_spacing.npz", &|c| {
        c.spacing = Some([1.0, -2.0, 1.0])
    });
    with("case_nan_image.npz", &|c| {
        let v = c.imgs.as_ref().unwrap().to_f32();
        let mut d = v.data.clone();
        d[3] = f32::NAN;
        c.imgs = Some(AnyVolume::F32(Volume::new(d, v.dims, v.spacing).unwrap()));
    });
    with("case_box_inverted.npz", &|c| {
        let b = &mut c.boxes.as_mut().unwrap()[0];
        std::mem::swap(&mut b.z_min, &mut b.z_max);
        b.z_min += 1;
    });
    with("case_box_outside.npz", &|c| {
        c.boxes.as_mut().unwrap()[0] = ChallengeBox {
            z_min: 0,
            z_max: 500,
            z_mid: 3,
            z_mid_x_min: 0,
            z_mid_y_min: 0,
            z_mid_x_max: 5,
            z_mid_y_max: 5,
        };
    });
    // Labels above 255 cannot be a ChallengeCase: write the members by hand.
    let mut members = segvol_io::read_npz(shared().join("data/npz/ct_kidney_right.npz")).unwrap();
    for (k, a) in &mut members {
        if k == "gts" {
            let n = a.shape.iter().product();
            a.data = NpyData::I32(vec![300; n]);
        }
    }
    let refs: Vec<(&str, &NpyArray)> = members.iter().map(|(k, a)| (k.as_str(), a)).collect();
    segvol_io::write_npz(f.p("case_labels_300.npz"), &refs).unwrap();
    // Weights.
    let w = std::fs::read(shared().join("fixtures/segvol_tiny/weights.safetensors")).unwrap();
    std::fs::write(f.p("cut.safetensors"), &w[..w.len() / 2]).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/weights/corrector.safetensors"),
        f.p("corrector_as_segvol.safetensors"),
    )
    .unwrap();
    std::fs::write(f.p("a_file"), "a file, not a folder").unwrap();
    f
}

fn tiny() -> Vec<String> {
    vec![
        "--weights".into(),
        s(&shared().join("fixtures/segvol_tiny/weights.safetensors")),
        "--config".into(),
        "tiny".into(),
    ]
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn unreadable_files_are_refused_by_every_command_that_reads_them() {
    let f = files();
    let out = f.p("out.nii.gz");
    let gt = s(&shared().join("data/nifti/ct_kidney_right_gt.nii.gz"));
    let bad = [
        ("missing.nii.gz", "no such file"),
        ("folder.nii.gz", "directory"),
        ("empty.nii.gz", "empty"),
        ("cut.nii.gz", "truncated"),
        ("text.nii", "not a NIfTI"),
        ("text.npz", "zip"),
        ("text.npy", "npy"),
    ];
    for (name, needle) in bad {
        let p = f.p(name);
        let ps = s(&p);
        refused(&args(&["info", &ps]), &p, needle, None);
        let mut a = args(&["segment", "--image", &ps, "--box", "1,1,1,5,5,5", "--out"]);
        a.push(s(&out));
        a.extend(tiny());
        refused(&a, &p, needle, Some(&out));
        refused(
            &args(&["metrics", "--pred", &ps, "--gt", &gt]),
            &p,
            needle,
            None,
        );
        refused(
            &args(&["metrics", "--pred", &gt, "--gt", &ps]),
            &p,
            needle,
            None,
        );
        refused(
            &args(&["next-click", "--pred", &ps, "--gt", &gt]),
            &p,
            needle,
            None,
        );
        refused(
            &args(&["sample", "--prob", &ps, "--clicks", "1,1,1,fg"]),
            &p,
            needle,
            None,
        );
    }
    // Cases for `eval` and `segment` from a challenge npz.
    for (name, needle) in [
        ("missing.npz", "no such file"),
        ("text.npz", "not a readable npz"),
    ] {
        let p = f.p(name);
        let mut a = args(&["eval", "--case", &s(&p)]);
        a.extend(tiny());
        refused(&a, &p, needle, None);
    }
}

#[test]
fn volumes_that_cannot_be_segmented_are_refused() {
    let f = files();
    let out = f.p("out.nii.gz");
    for (name, needle) in [
        ("four_d.nii.gz", "3-D"),
        ("two_d.npy", "3-D"),
        ("zero.npy", "size 0"),
        ("nan.npy", "NaN"),
        ("inf.npy", "infinite"),
        ("constant.npy", "constant"),
    ] {
        let p = f.p(name);
        let mut a = args(&[
            "segment",
            "--image",
            &s(&p),
            "--box",
            "1,1,1,5,5,5",
            "--out",
        ]);
        a.push(s(&out));
        a.extend(tiny());
        refused(&a, &p, needle, Some(&out));
    }
    for (name, needle) in [
        ("case_nan_spacing.npz", "spacing"),
        ("case_zero_spacing.npz", "spacing"),
        ("case_neg_spacing.npz", "spacing"),
        ("case_nan_image.npz", "NaN"),
        ("case_labels_300.npz", "300"),
        ("case_box_inverted.npz", "box"),
        ("case_box_outside.npz", "box"),
    ] {
        let p = f.p(name);
        let mut a = args(&["eval", "--case", &s(&p)]);
        a.extend(tiny());
        refused(&a, &p, needle, None);
        if name != "case_labels_300.npz" {
            let o = f.p("out.npz");
            let mut a = args(&["segment", "--image", &s(&p), "--out", &s(&o)]);
            a.extend(tiny());
            refused(&a, &p, needle, Some(&o));
        }
    }
    // Too big for --max-voxels: refused from the header, before the volume is read.
    let p = f.p("good.nii.gz");
    let mut a = args(&[
        "segment",
        "--image",
        &s(&p),
        "--box",
        "1,1,1,5,5,5",
        "--max-voxels",
        "1000",
        "--out",
    ]);
    a.push(s(&out));
    a.extend(tiny());
    refused(&a, &p, "--max-voxels", Some(&out));
    let c = shared().join("data/npz/ct_kidney_right.npz");
    let mut a = args(&["eval", "--case", &s(&c), "--max-voxels", "1000"]);
    a.extend(tiny());
    refused(&a, &c, "--max-voxels", None);
}

#[test]
fn bad_prompts_weights_and_output_paths_are_refused() {
    let f = files();
    let img = f.p("good.nii.gz");
    let out = f.p("out.nii.gz");
    let seg = |extra: &[&str], w: Option<&Path>| {
        let mut a = args(&["segment", "--image", &s(&img), "--out", &s(&out)]);
        a.extend(args(extra));
        match w {
            Some(w) => a.extend(args(&["--weights", &s(w), "--config", "tiny"])),
            None => a.extend(tiny()),
        }
        a
    };
    // Boxes inverted / outside / malformed, clicks outside / malformed (the image is 24×40×36).
    for (b, needle) in [
        ("5,5,5,1,1,1", "inverted"),
        ("0,0,0,30,10,10", "outside"),
        ("1,2,3", "six voxel indices"),
        ("-1,0,0,3,3,3", "six voxel indices"),
    ] {
        let a = seg(&[&format!("--box={b}")], None);
        let (code, _, err) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert_ne!(code, 0, "{b}");
        assert!(
            err.contains(needle) && err.lines().count() == 1,
            "{b}: {err}"
        );
        assert!(!out.exists());
    }
    for (p, needle) in [
        ("500,1,1,fg", "outside"),
        ("1,1,1,maybe", "neither fg nor bg"),
        ("1,1", "expected z,y,x,fg"),
    ] {
        let a = seg(&["--box", "1,1,1,5,5,5", "--points", p], None);
        let (code, _, err) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert_ne!(code, 0, "{p}");
        assert!(
            err.contains(needle) && err.lines().count() == 1,
            "{p}: {err}"
        );
        assert!(!out.exists());
    }
    // Weights cut short, and weights of another model.
    let w = f.p("cut.safetensors");
    refused(
        &seg(&["--box", "1,1,1,5,5,5"], Some(&w)),
        &w,
        "cannot read weights",
        Some(&out),
    );
    let w = f.p("corrector_as_segvol.safetensors");
    refused(
        &seg(&["--box", "1,1,1,5,5,5"], Some(&w)),
        &w,
        "missing",
        Some(&out),
    );
    // An output folder that cannot exist (its parent is a file).
    let o = f.p("a_file").join("out.nii.gz");
    let mut a = args(&[
        "segment",
        "--image",
        &s(&img),
        "--box",
        "1,1,1,5,5,5",
        "--out",
        &s(&o),
    ]);
    a.extend(tiny());
    refused(&a, &o, "not a directory", None);
    // The output is the input: refused, the input unchanged.
    let mut a = args(&[
        "segment",
        "--image",
        &s(&img),
        "--box",
        "1,1,1,5,5,5",
        "--out",
        &s(&img),
    ]);
    a.extend(tiny());
    refused(&a, &img, "destroy the input", Some(&img));
    let d = f.dir.path().join("cases");
    std::fs::create_dir(&d).unwrap();
    std::fs::copy(
        shared().join("data/npz/ct_kidney_right.npz"),
        d.join("a.npz"),
    )
    .unwrap();
    let before = std::fs::read(d.join("a.npz")).unwrap();
    let mut a = args(&["predict", "--input-dir", &s(&d), "--output-dir", &s(&d)]);
    a.extend(tiny());
    refused(&a, &d, "destroy the input", None);
    assert_eq!(std::fs::read(d.join("a.npz")).unwrap(), before);
}

#[test]
fn documented_handlings() {
    let f = files();
    let img = f.p("good.nii.gz");
    let out = f.p("out.nii.gz");
    // A box one slice thick is a 2-D box on that slice: segmented, not refused.
    let mut a = args(&[
        "segment",
        "--image",
        &s(&img),
        "--box",
        "3,5,5,3,20,20",
        "--out",
        &s(&out),
    ]);
    a.extend(tiny());
    let (code, _, err) = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{err}");
    assert!(out.is_file());
}
