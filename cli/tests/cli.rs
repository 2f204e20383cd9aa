//! The `segvol` binary end to end on the shared development data.

// Test code: a panic with the failing value is the right outcome.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::shared;

fn segvol(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_segvol"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(shared().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn info_on_every_dev_file_matches_the_manifest() {
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shared().join("data/manifest.json")).unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    for path in files("data/nifti").into_iter().chain(files("data/npz")) {
        let p = path.to_str().unwrap();
        let (code, out, err) = segvol(&["info", "--json", p]);
        assert_eq!(code, 0, "{p}: {err}");
        let j: serde_json::Value = serde_json::from_str(&out).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        let case_name = name
            .trim_end_matches(".nii.gz")
            .trim_end_matches(".npz")
            .trim_end_matches("_img")
            .trim_end_matches("_gt")
            .trim_end_matches("_clicks");
        let case = manifest["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["case"] == case_name)
            .unwrap_or_else(|| panic!("{case_name} not in manifest"));
        assert_eq!(j["shape_zyx"], case["shape_zyx"], "{p}");
        // Labels: the GT NIfTI and the npz gts list every label with the manifest's counts.
        let labels = if name.ends_with("_gt.nii.gz") {
            Some(j["labels"].clone())
        } else if name.ends_with(".npz") {
            Some(j["gts_labels"].clone())
        } else {
            None
        };
        if let Some(labels) = labels {
            for (k, v) in case["labels"].as_object().unwrap() {
                let l: u64 = k.parse().unwrap();
                let got = labels
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["label"] == l)
                    .unwrap();
                assert_eq!(got["voxels"], v["voxels"], "{p} label {l}");
            }
        }
        if name.ends_with(".nii.gz") {
            for ax in 0..3 {
                let (a, b) = (
                    j["spacing_zyx_mm"][ax].as_f64().unwrap(),
                    case["spacing_zyx_mm"][ax].as_f64().unwrap(),
                );
                assert!((a - b).abs() < 1e-5, "{p}");
            }
        } else {
            assert_eq!(j["spacing_as_stored"], case["spacing_zyx_mm"], "{p}");
            assert_eq!(
                j["boxes"].as_array().unwrap().len(),
                case["labels"].as_object().unwrap().len()
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 31);
}

#[test]
fn info_table_is_human_readable() {
    let p = shared().join("data/npz/ct_pelvis_multi6_clicks.npz");
    let (code, out, _) = segvol(&["info", p.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("shape (z,y,x)    82 × 101 × 122"), "{out}");
    assert!(
        out.contains("class 1        fg [[10, 51, 48], [15, 49, 45], [12, 65, 52]]"),
        "{out}"
    );
    assert!(
        out.contains("class 3        [42, 27, 44] .. [59, 48, 73]"),
        "{out}"
    );
}

#[test]
fn bad_files_exit_nonzero_with_one_clear_line() {
    let bad = [
        ("ct_patch_4d.nii.gz", "only 3-D volumes"),
        ("ct_patch_truncated.nii.gz", "gzip stream ends early"),
        (
            "ct_patch_short_payload.nii.gz",
            "shorter than the header says",
        ),
        ("ct_patch_corrupt.npz", "`imgs`"),
        ("ct_patch_truncated.npz", "not a readable npz"),
    ];
    for (name, msg) in bad {
        let p = shared().join("data/tiny").join(name);
        let (code, out, err) = segvol(&["info", p.to_str().unwrap()]);
        assert_ne!(code, 0, "{name}");
        assert!(out.is_empty(), "{name}: {out}");
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(name) && err.contains(msg),
            "{name}: {err}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    }
    // The good tiny files all load.
    for name in [
        "ct_patch.npz",
        "ct_patch_numpy2.npz",
        "ct_patch_clicks_none.npz",
        "ct_patch_float32.nii",
        "ct_patch_img.nii.gz",
        "ct_patch_gt.nii.gz",
        "ct_patch_int16_scaled.nii.gz",
    ] {
        let p = shared().join("data/tiny").join(name);
        let (code, _, err) = segvol(&["info", p.to_str().unwrap()]);
        assert_eq!(code, 0, "{name}: {err}");
    }
}

#[test]
fn sample_prints_both_sets_as_json() {
    let p = shared().join("data/nifti/ct_kidney_right_gt.nii.gz");
    // A label map read as probabilities: 0/1, so no uncertain voxel; a bg click inside the
    // kidney disagrees with every foreground voxel around it.
    let (code, out, err) = segvol(&[
        "sample",
        "--prob",
        p.to_str().unwrap(),
        "--clicks",
        "12,30,20,bg; 1,1,1,fg",
        "--k",
        "10",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["uncertainty"]["n_valid"], 0);
    assert_eq!(j["uncertainty"]["valid"].as_array().unwrap().len(), 10);
    assert_eq!(j["first_click"], serde_json::json!([12, 30, 20]));
    let (code, _, err) = segvol(&[
        "sample",
        "--prob",
        p.to_str().unwrap(),
        "--clicks",
        "99,0,0,fg",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("outside the volume"), "{err}");
    let (code, _, err) = segvol(&[
        "sample",
        "--prob",
        p.to_str().unwrap(),
        "--clicks",
        "1,2,fg",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("expected z,y,x,fg"), "{err}");
}

#[test]
fn version_and_help() {
    let (code, out, _) = segvol(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("segvol "), "{out}");
    let (code, out, _) = segvol(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("info") && out.contains("sample") && out.contains("bench"));
}

#[test]
fn next_click_gives_the_official_clicks() {
    // The last click of every class in this file was made by the official evaluator from its
    // prev_pred (shared/data/README.md).
    let p = shared().join("data/npz/ct_pelvis_multi6_clicks.npz");
    let p = p.to_str().unwrap();
    let (code, out, err) = segvol(&["next-click", "--pred", p, "--gt", p, "--json"]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let want = [
        ([12, 65, 52], "fg"),
        ([3, 45, 55], "fg"),
        ([55, 36, 63], "bg"),
        ([9, 44, 42], "fg"),
        ([69, 40, 72], "fg"),
        ([20, 24, 99], "bg"),
    ];
    for (i, (zyx, label)) in want.iter().enumerate() {
        assert_eq!(
            j["clicks"][i]["click"],
            serde_json::json!(zyx),
            "class {}",
            i + 1
        );
        assert_eq!(j["clicks"][i]["label"], *label);
    }
    let (code, out, _) = segvol(&[
        "next-click",
        "--pred",
        p,
        "--gt",
        p,
        "--label",
        "3",
        "--json",
    ]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), r#"{"click":[55,36,63],"label":"bg"}"#);
    // A perfect prediction: no click.
    let g = shared().join("data/nifti/ct_kidney_right_gt.nii.gz");
    let g = g.to_str().unwrap();
    let (code, out, _) = segvol(&[
        "next-click",
        "--pred",
        g,
        "--gt",
        g,
        "--label",
        "1",
        "--json",
    ]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), r#"{"click":null}"#);
    let (code, _, err) = segvol(&["next-click", "--pred", g, "--gt", g, "--label", "9"]);
    assert_ne!(code, 0);
    assert!(err.contains("label 9 is not in the ground truth"), "{err}");
}

#[test]
fn metrics_match_the_reference_libraries() {
    let r: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../eval/reference/metrics.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let p = shared().join("data/npz/ct_pelvis_multi6_clicks.npz");
    let p = p.to_str().unwrap();
    // --pred falls back to prev_pred in an input case; --gt reads gts.
    let (code, out, err) = segvol(&["metrics", "--pred", p, "--gt", p, "--json"]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    for c in 1..=6usize {
        let want = &r["metrics"][format!("ct_pelvis_multi6_clicks__class{c}")];
        let got = &j["classes"][c - 1];
        for (ours, theirs) in [
            ("dsc", "dsc"),
            ("nsd", "nsd"),
            ("hd95", "hd95_monai"),
            ("asd", "asd_union"),
            ("hd", "hd"),
        ] {
            let (g, w) = (got[ours].as_f64().unwrap(), want[theirs].as_f64().unwrap());
            assert!(
                (g - w).abs() <= 1e-9_f64.max(1e-6 * w.abs()),
                "class {c} {ours}: {g} vs {w}"
            );
        }
    }
}

#[test]
fn forward_reproduces_the_pytorch_logits() {
    let f = shared().join("fixtures/segvol_tiny");
    let s = |n: &str| f.join(n).to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("logits.npy");
    let args = common::forward_tiny_args(&out);
    let (code, _, err) = segvol(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{err}");
    let max = common::max_diff_to_pytorch(&out);
    assert!(max <= 1e-4, "max abs diff {max}");
    // The wrong model for the config: one clear line.
    let (code, _, err) = segvol(&[
        "forward",
        "--weights",
        &s("weights.bin"),
        "--config",
        "base",
        "--image",
        &s("image.npy"),
        "--box",
        &s("box.npy"),
        "--logits",
        out.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("model grid"), "{err}");
}

#[test]
fn segment_writes_a_mask_on_the_image_grid() {
    let f = shared().join("fixtures/segvol_tiny/weights.safetensors");
    let img = shared().join("data/nifti/ct_heart_thick_img.nii.gz"); // LPS, anisotropic
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("mask.nii.gz");
    let (code, stdout, err) = segvol(&[
        "segment",
        "--image",
        img.to_str().unwrap(),
        "--box",
        "10,20,30,40,70,90",
        "--points",
        "25,45,60,fg",
        "--weights",
        f.to_str().unwrap(),
        "--config",
        "tiny",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("wrote"), "{stdout}");
    let src = segvol_io::read_nifti(&img).unwrap();
    let mask = segvol_io::read_nifti(&out).unwrap();
    assert_eq!(mask.dims(), src.dims());
    assert_eq!(mask.affine(), src.affine());
    assert_eq!(mask.spacing(), src.spacing());
    assert!(mask.to_labels().unwrap().data.iter().all(|&v| v <= 1));
    // Challenge output.
    let npz = dir.path().join("case.npz");
    let (code, _, err) = segvol(&[
        "segment",
        "--image",
        img.to_str().unwrap(),
        "--box",
        "10,20,30,40,70,90",
        "--weights",
        f.to_str().unwrap(),
        "--config",
        "tiny",
        "--out",
        npz.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        segvol_io::read_labels(&npz, Some("segs")).unwrap().dims,
        src.dims()
    );
    // A box outside the volume: one clear line, nothing written.
    let bad = dir.path().join("bad.nii.gz");
    let (code, _, err) = segvol(&[
        "segment",
        "--image",
        img.to_str().unwrap(),
        "--box",
        "10,20,30,99,70,90",
        "--weights",
        f.to_str().unwrap(),
        "--config",
        "tiny",
        "--out",
        bad.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("outside the volume") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!bad.exists());
    // --box-start: a model without the mask prompt has nothing to start from; a word that
    // is not on/off is refused by the parser. Neither writes anything.
    let tiny = ["--weights", f.to_str().unwrap(), "--config", "tiny"];
    let seg = |extra: &[&str], out: &Path| -> (i32, String) {
        let mut a = vec!["segment", "--image", img.to_str().unwrap()];
        a.extend_from_slice(&["--box", "10,20,30,40,70,90", "--out", out.to_str().unwrap()]);
        a.extend_from_slice(extra);
        let (code, _, err) = segvol(&a);
        (code, err)
    };
    let (code, err) = seg(&[&tiny[..], &["--box-start", "on"]].concat(), &bad);
    assert_ne!(code, 0);
    assert!(
        err.contains("weights.safetensors: --box-start on needs weights with the mask prompt"),
        "{err}"
    );
    let (code, err) = seg(&["--box-start", "maybe"], &bad);
    assert_ne!(code, 0);
    assert!(err.contains("expected on or off"), "{err}");
    assert!(!bad.exists());
    // The shipped model starts its box step from the filled box; off, from nothing: the two
    // masks differ.
    let (on, off) = (dir.path().join("on.nii.gz"), dir.path().join("off.nii.gz"));
    for (out, flag) in [(&on, "on"), (&off, "off")] {
        let (code, err) = seg(&["--box-start", flag], out);
        assert_eq!(code, 0, "{err}");
    }
    let labels = |p: &Path| segvol_io::read_nifti(p).unwrap().to_labels().unwrap().data;
    let (a, b) = (labels(&on), labels(&off));
    assert!(a.iter().any(|&v| v > 0), "an empty mask");
    // A count, not a dump of the volume, when they agree.
    let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert!(differ > 0, "--box-start off segmented as on");
}

fn corrector_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../gru-corrector/tests/data/corrector.safetensors")
}

#[test]
fn eval_runs_the_protocol_with_and_without_the_corrector() {
    let w = shared().join("fixtures/segvol_tiny/weights.safetensors");
    let case = shared().join("data/npz/ct_vertebra_L3.npz");
    let c = corrector_fixture();
    let (code, stdout, err) = segvol(&[
        "eval",
        "--no-zoom-in",
        "--case",
        case.to_str().unwrap(),
        "--weights",
        w.to_str().unwrap(),
        "--config",
        "tiny",
        "--corrector",
        c.to_str().unwrap(),
        "--compare",
        "--feedback",
        "5",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let runs = j["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0]["model"], "segvol");
    assert_eq!(runs[1]["model"], "segvol+gru");
    assert_eq!(runs[2]["model"], "segvol+gru+feedback");
    for (r, rounds) in runs.iter().zip([0, 1, 1]) {
        let steps = r["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 6);
        for s in steps {
            let d = s["dsc"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&d));
        }
        let calls = r["calls"].as_array().unwrap();
        assert_eq!(calls.len(), 6);
        // The box step is never corrected; each click step runs exactly one round (one click,
        // hidden state carried, nothing replayed) and one decode.
        assert_eq!(calls[0]["correction_rounds"], 0);
        for call in &calls[1..] {
            assert_eq!(call["correction_rounds"], rounds, "{call}");
            // The feedback variant re-decodes once more when a correction flipped a voxel.
            let most = if r["model"] == "segvol+gru+feedback" {
                2
            } else {
                1
            };
            let d = call["decodes"].as_u64().unwrap();
            assert!((1..=most).contains(&d), "{call}");
        }
    }
    // Same box, same model: the box step agrees between the runs …
    let d0 = runs[0]["steps"][0]["dsc"].as_f64().unwrap();
    assert_eq!(d0, runs[1]["steps"][0]["dsc"].as_f64().unwrap());
    assert_eq!(d0, runs[2]["steps"][0]["dsc"].as_f64().unwrap());
    // … and with `segvol segment` + `segvol metrics` on that box.
    let cs = segvol_io::ChallengeCase::read(&case).unwrap();
    let (lo, hi) = cs.boxes.unwrap()[0].zyx_inclusive();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("segs.npz");
    let b = format!(
        "{},{},{},{},{},{}",
        lo[0], lo[1], lo[2], hi[0], hi[1], hi[2]
    );
    let seg_dsc = |zoom: bool| {
        let mut a = vec![
            "segment",
            "--image",
            case.to_str().unwrap(),
            "--box",
            &b,
            "--weights",
            w.to_str().unwrap(),
            "--config",
            "tiny",
            "--out",
            out.to_str().unwrap(),
        ];
        if !zoom {
            a.push("--no-zoom-in");
        }
        let (code, _, err) = segvol(&a);
        assert_eq!(code, 0, "{err}");
        let (code, m, err) = segvol(&[
            "metrics",
            "--pred",
            out.to_str().unwrap(),
            "--gt",
            case.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(code, 0, "{err}");
        let m: serde_json::Value = serde_json::from_str(&m).unwrap();
        m["mean"]["dsc"].as_f64().unwrap()
    };
    let d = seg_dsc(false);
    assert!((d - d0).abs() < 1e-12, "segment+metrics {d} vs eval {d0}");
    // With the zoom-in (the default of both) the same holds for `eval`.
    let (code, stdout, err) = segvol(&[
        "eval",
        "--case",
        case.to_str().unwrap(),
        "--weights",
        w.to_str().unwrap(),
        "--config",
        "tiny",
        "--steps",
        "1",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let dz = j["runs"][0]["steps"][0]["dsc"].as_f64().unwrap();
    let d = seg_dsc(true);
    eprintln!("box step DSC: zoom-out {d0}, zoom-in {dz}");
    assert!(
        (d - dz).abs() < 1e-12,
        "segment+metrics {d} vs eval (zoom-in) {dz}"
    );
}

#[test]
fn segment_a_whole_case_from_its_boxes_and_clicks() {
    let w = shared().join("fixtures/segvol_tiny/weights.safetensors");
    let case = shared().join("data/npz/ct_pelvis_multi6_clicks.npz");
    let dir = tempfile::tempdir().unwrap();
    let c = corrector_fixture();
    for extra in [None, Some(c.to_str().unwrap())] {
        let out = dir.path().join("segs.npz");
        let mut args = vec![
            "segment",
            "--image",
            case.to_str().unwrap(),
            "--weights",
            w.to_str().unwrap(),
            "--config",
            "tiny",
            "--out",
            out.to_str().unwrap(),
        ];
        if let Some(c) = extra {
            args.extend(["--corrector", c]);
        }
        let (code, stdout, err) = segvol(&args);
        assert_eq!(code, 0, "{err}");
        assert!(stdout.contains("wrote"), "{stdout}");
        let segs = segvol_io::read_labels(&out, Some("segs")).unwrap();
        assert_eq!(segs.dims, [82, 101, 122]);
        assert!(segs.data.iter().all(|&v| v <= 6));
    }
    // A corrector file that is not one: exit 1, one line naming it.
    let (code, _, err) = segvol(&[
        "segment",
        "--image",
        case.to_str().unwrap(),
        "--weights",
        w.to_str().unwrap(),
        "--config",
        "tiny",
        "--corrector",
        w.to_str().unwrap(),
        "--out",
        dir.path().join("x.npz").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("not a GRU corrector")
            && err.contains("weights.safetensors")
            && err.lines().count() == 1,
        "{err}"
    );
    assert!(!dir.path().join("x.npz").exists());
}

#[test]
fn convert_writes_a_fast_file_that_segments_identically() {
    let w = shared().join("fixtures/segvol_tiny/weights.bin");
    let dir = tempfile::tempdir().unwrap();
    let bpk = dir.path().join("tiny.bpk");
    let (code, stdout, err) = segvol(&[
        "convert",
        "--from",
        w.to_str().unwrap(),
        "--to",
        bpk.to_str().unwrap(),
        "--config",
        "tiny",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.contains("156 tensors, 10 ignored on purpose"),
        "{stdout}"
    );
    let img = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/sample/ct_patch_img.nii.gz");
    let mut masks = Vec::new();
    for weights in [w.clone(), bpk.clone()] {
        let out = dir.path().join(format!("m{}.nii.gz", masks.len()));
        let (code, _, err) = segvol(&[
            "segment",
            "--image",
            img.to_str().unwrap(),
            "--box",
            "2,4,4,12,28,28",
            "--weights",
            weights.to_str().unwrap(),
            "--config",
            "tiny",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
        masks.push(
            segvol_io::read_nifti(&out)
                .unwrap()
                .to_labels()
                .unwrap()
                .data,
        );
    }
    assert_eq!(masks[0], masks[1]);
    // Not .bpk, or the wrong config: one clear line, exit 1.
    let (code, _, err) = segvol(&[
        "convert",
        "--from",
        w.to_str().unwrap(),
        "--to",
        dir.path().join("x.safetensors").to_str().unwrap(),
        "--config",
        "tiny",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains(".bpk") && err.lines().count() == 1, "{err}");
    let (code, _, err) = segvol(&[
        "convert",
        "--from",
        w.to_str().unwrap(),
        "--to",
        dir.path().join("y.bpk").to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("weights.bin") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!dir.path().join("y.bpk").exists());
    // The box start needs the mask prompt, which the tiny fixture has not.
    let (code, _, err) = segvol(&[
        "convert",
        "--from",
        w.to_str().unwrap(),
        "--to",
        dir.path().join("z.bpk").to_str().unwrap(),
        "--config",
        "tiny",
        "--box-start",
        "on",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("--box-start on needs weights with the mask prompt")
            && err.lines().count() == 1,
        "{err}"
    );
    assert!(!dir.path().join("z.bpk").exists());
}

#[test]
fn segment_preview_is_a_png_with_the_mask_in_red() {
    let w = shared().join("fixtures/segvol_tiny/weights.safetensors");
    let img = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/sample/ct_patch_img.nii.gz");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.nii.gz");
    let png_path = dir.path().join("p.png");
    let (code, _, err) = segvol(&[
        "segment",
        "--image",
        img.to_str().unwrap(),
        "--box",
        "2,4,4,12,28,28",
        "--weights",
        w.to_str().unwrap(),
        "--config",
        "tiny",
        "--out",
        out.to_str().unwrap(),
        "--preview",
        png_path.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let mask = segvol_io::read_nifti(&out).unwrap().to_labels().unwrap();
    let dec = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png_path).unwrap(),
    ));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let [d, h, w] = mask.dims;
    let s = mask.spacing;
    // Three planes side by side at square millimetres, 4-pixel gaps, each enlarged by the
    // integer factor that brings its longer side to at least 256 pixels.
    let m = s.iter().copied().fold(f64::INFINITY, f64::min);
    let px = |n: usize, sp: f64, other: f64| (n as f64 * sp / sp.min(other)).round() as u32;
    let planes = [
        (px(h, s[1], s[2]), px(w, s[2], s[1])),
        (px(d, s[0], s[2]), px(w, s[2], s[0])),
        (px(d, s[0], s[1]), px(h, s[1], s[0])),
    ];
    let f = |(r, c): (u32, u32)| 256u32.div_ceil(r.max(c)).max(1);
    let widths: Vec<u32> = planes.iter().map(|&p| p.1 * f(p)).collect();
    assert_eq!(
        info.width,
        widths.iter().sum::<u32>() + 8,
        "spacing {s:?}, min {m}"
    );
    let heights: Vec<u32> = planes.iter().map(|&p| p.0 * f(p)).collect();
    assert_eq!(info.height, *heights.iter().max().unwrap());
    assert!(info.width >= 3 * 256);
    // Red pixels (r > g) exactly when the mask has voxels.
    let red = buf[..info.buffer_size()]
        .chunks(3)
        .filter(|p| p[0] > p[1])
        .count();
    let voxels = mask.data.iter().filter(|&&v| v != 0).count();
    assert_eq!(red > 0, voxels > 0, "red {red}, voxels {voxels}");
}

#[test]
fn demo_runs_offline_with_the_shipped_model_and_prints_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let (code, stdout, err) = segvol(&["demo", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for step in ["box", "click1", "click2", "click3"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(step)),
            "no line for {step}:\n{stdout}"
        );
    }
    assert!(stdout.contains("DSC_AUC"), "{stdout}");
    for f in [
        "mask_box.nii.gz",
        "mask_click1.nii.gz",
        "mask_click3.nii.gz",
        "image.nii.gz",
        "preview.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // Masks on the sample's grid, binary.
    let m = segvol_io::read_nifti(out.join("mask_click3.nii.gz"))
        .unwrap()
        .to_labels()
        .unwrap();
    assert_eq!(m.dims, [20, 91, 117]);
    assert!(m.data.iter().all(|&v| v <= 1));
    // A class name that is not in the sample is a clear error.
    let (code, _, err) = segvol(&["demo", "--class", "liver", "--out", out.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("liver") && err.contains("autochthon_right"),
        "{err}"
    );
}

#[test]
fn train_writes_a_run_folder_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("t.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
seed = 3
[model]
preset = "tiny"
[data]
dir = "{}"
train = ["ct_vertebra_L3", "ct_gluteus_maximus_left"]
validation = ["ct_kidney_right"]
[base_box]
steps = 3
batch = 1
val_every = 2
checkpoint_every = 2
[base_points]
steps = 2
batch = 1
checkpoint_every = 1
[corrector]
steps = 2
batch = 2
k = 16
hidden = 16
cache_samples = 3
[validation]
click_steps = 2
feedback = 4
"#,
            shared().join("data/npz").display()
        ),
    )
    .unwrap();
    let run = dir.path().join("run");
    let (code, stdout, err) = segvol(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.contains("2 training cases, 1 validation cases"),
        "{stdout}"
    );
    for f in [
        "config.toml",
        "split.json",
        "log.jsonl",
        "loss.png",
        "validation.md",
        "validation.json",
        "base-box/final.bpk",
        "base-points/final.bpk",
        "corrector/final.safetensors",
        "base-box/checkpoint/state.json",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    // The box-filled reference and the three variants, each with DSC per step.
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("validation.json")).unwrap())
            .unwrap();
    assert_eq!(v.as_array().unwrap().len(), 4);
    assert!(v[0]["name"].as_str().unwrap().starts_with("box"));
    assert_eq!(v[0]["classes"][0]["dsc"].as_array().unwrap().len(), 3);
    // Box-step validation lines at steps 2 and 3.
    let log = std::fs::read_to_string(run.join("log.jsonl")).unwrap();
    assert_eq!(log.matches("\"val_box_dsc\"").count(), 2 + 1, "{log}");
    // A finished run resumes to nothing new; a new run into the same folder is refused.
    let (code, _, err) = segvol(&["train", "--resume", run.to_str().unwrap(), "--no-validate"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = segvol(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("--resume"), "{err}");
    // The trained weights segment through the normal commands.
    let (code, _, err) = segvol(&[
        "eval",
        "--no-zoom-in",
        "--case",
        shared()
            .join("data/npz/ct_kidney_right.npz")
            .to_str()
            .unwrap(),
        "--weights",
        run.join("base-points/final.bpk").to_str().unwrap(),
        "--config",
        "tiny",
        "--corrector",
        run.join("corrector/final.safetensors").to_str().unwrap(),
        "--steps",
        "1",
    ]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn predict_writes_one_segs_per_case_and_survives_a_broken_one() {
    let w = shared().join("fixtures/segvol_tiny/weights.safetensors");
    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (dir.path().join("in"), dir.path().join("out"));
    std::fs::create_dir_all(&inp).unwrap();
    for f in ["ct_kidney_right.npz", "ct_pelvis_multi6_clicks.npz"] {
        std::fs::copy(shared().join("data/npz").join(f), inp.join(f)).unwrap();
    }
    // Sorted first, so the good cases come after a failure.
    std::fs::copy(
        shared().join("data/tiny/ct_patch_truncated.npz"),
        inp.join("a_broken.npz"),
    )
    .unwrap();
    let (code, stdout, err) = segvol(&[
        "predict",
        "--input-dir",
        inp.to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
        "--weights",
        w.to_str().unwrap(),
        "--config",
        "tiny",
    ]);
    assert_ne!(code, 0, "a failed case is reported in the exit code");
    assert!(err.contains("a_broken.npz"), "{err}");
    assert!(err.contains("1 of 3 cases failed"), "{err}");
    assert!(stdout.contains("first mask"), "{stdout}");
    let mut written: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(
        written,
        ["ct_kidney_right.npz", "ct_pelvis_multi6_clicks.npz"]
    );
    for f in &written {
        let c = segvol_io::ChallengeCase::read(out.join(f)).unwrap();
        let src = segvol_io::ChallengeCase::read(inp.join(f)).unwrap();
        let segs = c.segs.unwrap();
        assert_eq!(Some(segs.dims), src.dims());
        assert_eq!(c.keys, ["segs"]);
        let n = src.boxes.map_or(0, |b| b.len()) as u8;
        assert!(segs.data.iter().all(|&v| v <= n));
    }
}

#[test]
fn eval_over_a_folder_writes_the_official_csv_summary_and_plot() {
    let w = shared().join("fixtures/segvol_tiny/weights.safetensors");
    let dir = tempfile::tempdir().unwrap();
    let run = |out: &Path, extra: &[&str]| {
        let mut a = vec![
            "eval",
            "--no-zoom-in",
            "--data",
            shared()
                .join("data/npz")
                .to_str()
                .unwrap()
                .to_string()
                .leak(),
            "--out",
            out.to_str().unwrap().to_string().leak(),
            "--weights",
            w.to_str().unwrap().to_string().leak(),
            "--config",
            "tiny",
            "--cases",
            "ct_kidney_right,ct_vertebra_L3,mr_abdomen_multi3",
        ];
        a.extend_from_slice(extra);
        segvol(&a)
    };
    let all = dir.path().join("all");
    let (code, _, err) = run(&all, &[]);
    assert_eq!(code, 0, "{err}");
    let csv = std::fs::read_to_string(all.join("metrics.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header.len(), 26);
    assert_eq!(header[0], "CaseName");
    assert_eq!(header[8], "DSC_AUC");
    assert_eq!(header[25], "runtime_upperbound");
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0][0], "ct_kidney_right.npz");
    // Each row equals what the library-level runner gives for that case (the single-case
    // command is that runner).
    let (code, js, err) = segvol(&[
        "eval",
        "--no-zoom-in",
        "--case",
        shared()
            .join("data/npz/mr_abdomen_multi3.npz")
            .to_str()
            .unwrap(),
        "--weights",
        w.to_str().unwrap(),
        "--config",
        "tiny",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&js).unwrap();
    let r = &v["runs"][0];
    let row = &rows[2];
    assert_eq!(row[0], "mr_abdomen_multi3.npz");
    let f = |s: &str| s.parse::<f64>().unwrap();
    assert_eq!(f(&row[8]), r["dsc_auc"].as_f64().unwrap());
    assert_eq!(f(&row[10]), r["dsc_final"].as_f64().unwrap());
    for i in 0..6 {
        assert_eq!(f(&row[12 + i]), r["steps"][i]["dsc"].as_f64().unwrap());
        assert_eq!(f(&row[18 + i]), r["steps"][i]["nsd"].as_f64().unwrap());
    }
    assert_eq!(row[24], "3");
    assert_eq!(row[25], "270");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(all.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["cases"], 3);
    assert!(summary["variants"][0]["per_modality"]["ct"]["cases"] == 2);
    assert!(all.join("dsc_per_click.png").is_file());
    // Shards partition the cases.
    let (s0, s1) = (dir.path().join("s0"), dir.path().join("s1"));
    assert_eq!(run(&s0, &["--shard", "0/2"]).0, 0);
    assert_eq!(run(&s1, &["--shard", "1/2"]).0, 0);
    let names = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p.join("metrics.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&s0), ["ct_kidney_right.npz", "mr_abdomen_multi3.npz"]);
    assert_eq!(names(&s1), ["ct_vertebra_L3.npz"]);
    let (code, _, err) = run(&dir.path().join("bad"), &["--shard", "2/2"]);
    assert_ne!(code, 0);
    assert!(err.contains("--shard"), "{err}");
}

#[test]
fn nan_voxels_are_refused_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/sample/ct_patch.npz");
    let mut case = segvol_io::ChallengeCase::read(&src).unwrap();
    let mut v = case.imgs.as_ref().unwrap().to_f32();
    v.data[100] = f32::NAN;
    v.data[7] = f32::INFINITY;
    case.imgs = Some(segvol_io::AnyVolume::F32(v));
    let bad = dir.path().join("nan.npz");
    case.write(&bad).unwrap();
    let out = dir.path().join("segs.npz");
    let (code, _, err) = segvol(&[
        "segment",
        "--image",
        bad.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("nan.npz") && err.contains("2 NaN or infinite"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn eval_with_gt_dir_masks_report_and_an_external_predictor() {
    let w = shared().join("fixtures/segvol_tiny/weights.safetensors");
    let w = w.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let names = ["ct_kidney_right", "mr_abdomen_multi3"];
    // The official validation layout: cases without `gts`, the GT in a folder of its own.
    let (cases, gts) = (dir.path().join("imgs"), dir.path().join("gts"));
    std::fs::create_dir_all(&cases).unwrap();
    std::fs::create_dir_all(&gts).unwrap();
    for n in names {
        let mut c =
            segvol_io::ChallengeCase::read(shared().join(format!("data/npz/{n}.npz"))).unwrap();
        let g = segvol_io::ChallengeCase {
            imgs: None,
            gts: c.gts.take(),
            prev_pred: None,
            segs: None,
            spacing: None,
            boxes: None,
            clicks: None,
            clicks_order: None,
            keys: vec!["gts".into()],
        };
        c.keys.retain(|k| k != "gts");
        c.write(cases.join(format!("{n}.npz"))).unwrap();
        g.write(gts.join(format!("{n}.npz"))).unwrap();
    }
    let p = |x: &Path| x.to_str().unwrap().to_string();
    let eval = |out: &Path, data: &Path, extra: &[&str]| {
        let mut a: Vec<String> = ["eval", "--data", &p(data), "--out", &p(out)]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        segvol(&a)
    };
    let metric_cols = |out: &Path| -> Vec<String> {
        // Everything but the running times (columns 1..=7).
        std::fs::read_to_string(out.join("metrics.csv"))
            .unwrap()
            .lines()
            .map(|l| {
                let c: Vec<&str> = l.split(',').collect();
                [&c[..1], &c[8..]].concat().join(",")
            })
            .collect()
    };
    let model = ["--weights", w, "--config", "tiny", "--zoom-in"];
    let (inproc, ext, sep) = (
        dir.path().join("inproc"),
        dir.path().join("ext"),
        dir.path().join("sep"),
    );
    let mut a = model.to_vec();
    a.extend([
        "--cases",
        "ct_kidney_right,mr_abdomen_multi3",
        "--save-masks",
    ]);
    let (code, _, err) = eval(&inproc, &shared().join("data/npz"), &a);
    assert_eq!(code, 0, "{err}");
    // The same run with the GT from the separate folder gives the same numbers.
    let mut a = model.to_vec();
    a.extend(["--gt-dir", gts.to_str().unwrap()]);
    let (code, _, err) = eval(&sep, &cases, &a);
    assert_eq!(code, 0, "{err}");
    assert_eq!(metric_cols(&sep), metric_cols(&inproc));
    // Without --gt-dir those cases have no GT: a clear error.
    let (code, _, err) = eval(&dir.path().join("nogt"), &cases, &model);
    assert_ne!(code, 0);
    assert!(
        err.contains("no `gts`") && err.contains("--gt-dir"),
        "{err}"
    );
    // `segvol predict` run as an external command, exactly as the official evaluator runs a
    // container, scores the same as our in-process runner: same model, same protocol.
    let cmd = format!(
        "{} predict --input-dir inputs --output-dir outputs --weights {w} --config tiny",
        env!("CARGO_BIN_EXE_segvol")
    );
    let (code, _, err) = eval(
        &ext,
        &cases,
        &[
            "--gt-dir",
            gts.to_str().unwrap(),
            "--predict-cmd",
            &cmd,
            "--save-masks",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(metric_cols(&ext), metric_cols(&inproc));
    assert!(ext.join("dsc_per_click.svg").is_file());
    assert!(!ext.join(".work").exists(), "workspaces are removed");
    // Saved masks: `segs` = the last step of `all_segs`, both runs alike.
    let a = segvol_io::read_npz(inproc.join("masks/segvol/mr_abdomen_multi3.npz")).unwrap();
    let b = segvol_io::read_npz(ext.join("masks/external/mr_abdomen_multi3.npz")).unwrap();
    assert_eq!(a, b);
    let all = &a.iter().find(|(k, _)| k == "all_segs").unwrap().1;
    let segs = &a.iter().find(|(k, _)| k == "segs").unwrap().1;
    assert_eq!(all.shape[0], 6);
    assert_eq!(&all.shape[1..], &segs.shape[..]);
    // A predictor that writes nothing scores zeros (the official rule) with a warning.
    let none = dir.path().join("none");
    let (code, _, err) = eval(
        &none,
        &cases,
        &["--gt-dir", gts.to_str().unwrap(), "--predict-cmd", "true"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("wrote no outputs/"), "{err}");
    let dsc = |out: &Path| -> Vec<f64> {
        std::fs::read_to_string(out.join("metrics.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(10).unwrap().parse().unwrap())
            .collect()
    };
    assert_eq!(dsc(&none), [0.0, 0.0]);
    // Shards merge into the unsharded run's tables.
    let (s0, s1) = (dir.path().join("s0"), dir.path().join("s1"));
    for (s, i) in [(&s0, "0/2"), (&s1, "1/2")] {
        let mut a = model.to_vec();
        a.extend(["--gt-dir", gts.to_str().unwrap(), "--shard", i]);
        assert_eq!(eval(s, &cases, &a).0, 0);
    }
    let merged = dir.path().join("merged");
    let (code, _, err) = segvol(&["report", "--merge", &p(&s1), &p(&s0), "--out", &p(&merged)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(metric_cols(&merged), metric_cols(&sep));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(merged.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["cases"], 2);
    assert!(merged.join("dsc_per_click.png").is_file());
    // One shard alone is refused, naming the missing one.
    let (code, _, err) = segvol(&[
        "report",
        "--merge",
        &p(&s0),
        "--out",
        &p(&dir.path().join("m2")),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("1/2"), "{err}");
    // Runs side by side: a table row per run and the plot.
    let rep = dir.path().join("rep");
    let (code, out, err) = segvol(&[
        "report",
        &p(&inproc),
        &p(&ext),
        "--names",
        "ours,external",
        "--out",
        &p(&rep),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("| ours | segvol | 2 |") && out.contains("| external | external | 2 |"),
        "{out}"
    );
    assert!(rep.join("report.png").is_file() && rep.join("report.svg").is_file());
}

/// `--text` end to end: the tiny parity model with a (randomly initialised) full-size CLIP
/// tower saved as a `.bpk`; `forward --text` equals the library's text embedding + decode,
/// `segment --text` alone, with a box, and with two names (a label map); the shipped model,
/// which has no tower, refuses with the reason.
#[test]
fn text_prompts_through_forward_and_segment() {
    use burn::tensor::{Tensor, TensorData};
    use segvol_core::text::{TextConfig, TextEncoder};
    type B = segvol_backends::Flex;
    let f = shared().join("fixtures/segvol_tiny");
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let mut model = segvol_core::SegVol::<B>::new(&segvol_core::SegVolConfig::tiny(), &device);
    segvol_core::weights::load_segvol(&mut model, f.join("weights.safetensors")).unwrap();
    model.set_text_encoder(Some(TextEncoder::new(&TextConfig::clip_b32(96), &device)));
    let bpk = dir.path().join("tiny_text.bpk");
    segvol_core::weights::save_burnpack(&model, &segvol_core::SegVolConfig::tiny(), "t", &bpk)
        .unwrap();
    let p = |x: &Path| x.to_str().unwrap().to_string();

    // forward --text (text only) against the library.
    let out = dir.path().join("logits.npy");
    let (code, _, err) = segvol(&[
        "forward",
        "--weights",
        &p(&bpk),
        "--config",
        "tiny",
        "--image",
        &p(&f.join("image.npy")),
        "--text",
        "liver",
        "--logits",
        &p(&out),
    ]);
    assert_eq!(code, 0, "{err}");
    let got = segvol_io::read_npy(&out).unwrap().to_f64().unwrap();
    let image = segvol_io::read_npy(f.join("image.npy"))
        .unwrap()
        .to_f64()
        .unwrap();
    let image: Vec<f32> = image.into_iter().map(|v| v as f32).collect();
    let emb = model.embed(Tensor::from_data(
        TensorData::new(image, [1, 1, 32, 64, 64]),
        &device,
    ));
    let text = model.embed_text("liver").unwrap();
    let prompts = segvol_core::Prompts {
        text: Some(text),
        ..Default::default()
    };
    let want: Vec<f32> = model
        .decode(emb, &prompts)
        .logits
        .into_data()
        .to_vec()
        .unwrap();
    let max = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - *b as f64).abs())
        .fold(0.0, f64::max);
    assert!(
        max <= 1e-5,
        "forward --text differs from the library by {max}"
    );

    // segment: text alone, text + box, two names.
    let img = shared().join("data/nifti/ct_kidney_right_img.nii.gz");
    let src = segvol_io::read_nifti(&img).unwrap();
    for (extra, max_label) in [
        (vec!["--text", "kidney"], 1u8),
        (vec!["--text", "kidney", "--box", "2,5,5,20,30,30"], 1),
        (vec!["--text", "kidney,liver"], 2),
    ] {
        let mask = dir.path().join("mask.nii.gz");
        let mut args = vec![
            "segment",
            "--image",
            img.to_str().unwrap(),
            "--weights",
            bpk.to_str().unwrap(),
            "--config",
            "tiny",
            "--no-zoom-in",
            "--out",
            mask.to_str().unwrap(),
        ];
        args.extend(extra.iter().copied());
        let (code, stdout, err) = segvol(&args);
        assert_eq!(code, 0, "{extra:?}: {err}");
        assert!(stdout.contains("wrote"), "{stdout}");
        let m = segvol_io::read_nifti(&mask).unwrap();
        assert_eq!(m.dims(), src.dims());
        assert!(m.to_labels().unwrap().data.iter().all(|&v| v <= max_label));
        if max_label == 2 {
            assert!(stdout.contains("label 2: liver"), "{stdout}");
        }
    }
    // eval --text-from-class-names: the dev manifest's names ("kidney right") as prompts.
    let case = shared().join("data/npz/ct_kidney_right.npz");
    let eval = |extra: &[&str]| {
        let mut a = vec![
            "eval",
            "--no-zoom-in",
            "--case",
            case.to_str().unwrap(),
            "--weights",
            bpk.to_str().unwrap(),
            "--config",
            "tiny",
            "--steps",
            "1",
            "--json",
            "--text-from-class-names",
        ];
        a.extend(extra);
        segvol(&a)
    };
    let (code, stdout, err) = eval(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("\"dsc_final\""), "{stdout}");
    let names = dir.path().join("names.json");
    std::fs::write(&names, r#"{"some_other_case": ["liver"]}"#).unwrap();
    let (code, _, err) = eval(&["--class-names", names.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("no class names for this case"), "{err}");
    // Two names with a box: refused before any work.
    let bad = dir.path().join("bad.nii.gz");
    let (code, _, err) = segvol(&[
        "segment",
        "--image",
        img.to_str().unwrap(),
        "--weights",
        bpk.to_str().unwrap(),
        "--config",
        "tiny",
        "--text",
        "kidney,liver",
        "--box",
        "2,5,5,20,30,30",
        "--out",
        bad.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("a box or a click belongs to one"), "{err}");
    // The shipped model has no text tower: one clear line, nothing written.
    let (code, _, err) = segvol(&[
        "segment",
        "--image",
        img.to_str().unwrap(),
        "--text",
        "kidney",
        "--out",
        bad.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("carry no text tower") && err.contains("shipped"),
        "{err}"
    );
    assert!(!bad.exists());
}

#[test]
fn train_refuses_a_missing_start_or_two_stops_before_making_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let missing = dir.path().join("no-such-weights.bpk");
    let (code, _, err) = segvol(&[
        "train",
        "--preset",
        "tiny",
        "--init",
        missing.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("no-such-weights.bpk") && err.contains("no such file"),
        "{err}"
    );
    assert!(!run.exists(), "a run folder was left behind");
    // A start that exists but does not load (a truncated file): refused, named once, no run.
    let broken = dir.path().join("broken-weights.bpk");
    std::fs::write(&broken, b"BURNPACK but not really").unwrap();
    let (code, _, err) = segvol(&[
        "train",
        "--preset",
        "tiny",
        "--init",
        broken.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("does not load"), "{err}");
    assert_eq!(
        err.matches("broken-weights.bpk").count(),
        1,
        "the file named once: {err}"
    );
    assert!(!run.exists(), "a run folder was left behind");
    // A step to stop at and a clock for one stage: refused, by name.
    let (code, _, err) = segvol(&[
        "train",
        "--preset",
        "tiny",
        "--stop-after",
        "base-box=3",
        "--minutes",
        "base-box=1",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("--stop-after base-box=3"), "{err}");
    assert!(!run.exists(), "a run folder was left behind");
}
