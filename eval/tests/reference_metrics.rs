//! Metrics against the reference libraries (`eval/reference/metrics.json`, written by
//! `eval/reference/make_reference.py` with medpy 0.5.2, DeepMind surface-distance 0.1,
//! scipy 1.12.0, numpy 1.26.3): 25 perturbed predictions of 5 dev cases (one anisotropic) and
//! the 6 classes of the real multi-class click case. Tolerance: 1e-6 relative, 1e-9 absolute.

// Test code: a panic with the failing value is the right outcome.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use segvol_eval::metrics::{AsdMode, Hd95Mode, asd, dsc, hd, hd95, nsd};
use segvol_io::ChallengeCase;
use segvol_io::npy::NpyData;

fn shared() -> PathBuf {
    std::env::var_os("SEGVOL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

fn close(got: f64, want: f64, what: &str) {
    let ok = got == want || (got - want).abs() <= 1e-9_f64.max(1e-6 * want.abs());
    assert!(ok, "{what}: got {got}, reference {want}");
}

fn check(
    key: &str,
    pred: &[bool],
    gt: &[bool],
    dims: [usize; 3],
    sp: [f64; 3],
    want: &serde_json::Value,
) {
    let w = |k: &str| want[k].as_f64();
    close(dsc(pred, gt), w("dsc").unwrap(), &format!("{key} dsc"));
    close(
        nsd(pred, gt, dims, sp, 2.0),
        w("nsd").unwrap(),
        &format!("{key} nsd"),
    );
    let Some(hd95_monai) = w("hd95_monai") else {
        // Empty prediction: medpy raises; ours follows the documented rule.
        assert_eq!(hd(pred, gt, dims, sp), f64::INFINITY);
        return;
    };
    close(
        hd95(pred, gt, dims, sp, Hd95Mode::MaxOfDirected),
        hd95_monai,
        &format!("{key} hd95 monai"),
    );
    close(
        hd95(pred, gt, dims, sp, Hd95Mode::UnionPercentile),
        w("hd95_medpy").unwrap(),
        &format!("{key} hd95 medpy"),
    );
    close(
        hd95(pred, gt, dims, sp, Hd95Mode::SurfelAreaWeighted),
        w("hd95_deepmind").unwrap(),
        &format!("{key} hd95 deepmind"),
    );
    close(
        asd(pred, gt, dims, sp, AsdMode::UnionMean),
        w("asd_union").unwrap(),
        &format!("{key} asd union"),
    );
    close(
        asd(pred, gt, dims, sp, AsdMode::MeanOfDirectedMeans),
        w("asd_mean_of_means").unwrap(),
        &format!("{key} asd means"),
    );
    close(
        asd(pred, gt, dims, sp, AsdMode::SurfelAreaWeighted),
        w("asd_deepmind").unwrap(),
        &format!("{key} asd deepmind"),
    );
    close(
        hd(pred, gt, dims, sp),
        w("hd").unwrap(),
        &format!("{key} hd"),
    );
}

#[test]
fn every_metric_matches_its_reference_library() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("reference");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    let m = &r["metrics"];
    let mut checked = 0;
    for (key, arr) in segvol_io::read_npz(dir.join("preds.npz")).unwrap() {
        let case = key.split("__").next().unwrap();
        let c = ChallengeCase::read(shared().join(format!("data/npz/{case}.npz"))).unwrap();
        let gts = c.gts.unwrap();
        let NpyData::U8(p) = &arr.data else { panic!() };
        let pred: Vec<bool> = p.iter().map(|&v| v == 1).collect();
        let gt: Vec<bool> = gts.data.iter().map(|&v| v == 1).collect();
        check(&key, &pred, &gt, gts.dims, c.spacing.unwrap(), &m[&key]);
        checked += 1;
    }
    let c = ChallengeCase::read(shared().join("data/npz/ct_pelvis_multi6_clicks.npz")).unwrap();
    let (gts, prev) = (c.gts.unwrap(), c.prev_pred.unwrap());
    for class in 1..=6u8 {
        let pred: Vec<bool> = prev.data.iter().map(|&v| v == class).collect();
        let gt: Vec<bool> = gts.data.iter().map(|&v| v == class).collect();
        let key = format!("ct_pelvis_multi6_clicks__class{class}");
        check(&key, &pred, &gt, gts.dims, c.spacing.unwrap(), &m[&key]);
        checked += 1;
    }
    assert_eq!(checked, 31);
}
