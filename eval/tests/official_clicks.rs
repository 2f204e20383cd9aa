//! The click simulator against clicks made by the official CVPR25 evaluator functions (with
//! cc3d and scipy): `shared/data/npz/ct_pelvis_multi6_clicks.npz` stores, per class, the click
//! computed from its `prev_pred` as the last entry of that class's clicks (shared/data/README.md),
//! and `eval/reference/clicks.json` holds more cases made by `eval/reference/make_reference.py`.

// Test code: a panic with the failing value is the right outcome.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use segvol_eval::simulate_clicks;
use segvol_io::{ChallengeCase, ClickKind};

fn shared() -> PathBuf {
    std::env::var_os("SEGVOL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

#[test]
fn replays_the_last_official_click_of_every_class() {
    let case = ChallengeCase::read(shared().join("data/npz/ct_pelvis_multi6_clicks.npz")).unwrap();
    let gts = case.gts.as_ref().unwrap();
    let prev = case.prev_pred.as_ref().unwrap();
    let clicks = case.clicks.as_ref().unwrap();
    let order = case.clicks_order.as_ref().unwrap();
    let got = simulate_clicks(&prev.data, &gts.data, gts.dims, clicks.len() as u8);
    for (c, g) in got.iter().enumerate() {
        let kind = order[c].last().copied().flatten().unwrap();
        let list = match kind {
            ClickKind::Fg => &clicks[c].fg,
            ClickKind::Bg => &clicks[c].bg,
        };
        let want = *list.last().unwrap();
        let g = g.unwrap();
        assert_eq!(g.zyx, want, "class {}", c + 1);
        assert_eq!(g.foreground, kind == ClickKind::Fg, "class {}", c + 1);
    }
}

#[test]
fn no_click_when_the_prediction_is_perfect() {
    let case = ChallengeCase::read(shared().join("data/tiny/ct_patch_clicks_none.npz")).unwrap();
    let gts = case.gts.unwrap();
    let got = simulate_clicks(&case.prev_pred.unwrap().data, &gts.data, gts.dims, 1);
    assert_eq!(got, vec![None]);
}

fn reference() -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/clicks.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// 25 perturbed predictions (dilated, eroded, shifted, with holes, empty) of 5 dev cases,
/// clicks from the official rule with cc3d 3.12.4 + scipy 1.12.0 + numpy 1.26.3.
#[test]
fn matches_the_reference_clicks_on_perturbed_predictions() {
    let r = reference();
    let preds =
        segvol_io::read_npz(Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/preds.npz"))
            .unwrap();
    let mut checked = 0;
    for (key, arr) in &preds {
        let case = key.split("__").next().unwrap();
        let gts = ChallengeCase::read(shared().join(format!("data/npz/{case}.npz")))
            .unwrap()
            .gts
            .unwrap();
        let segvol_io::npy::NpyData::U8(pred) = &arr.data else {
            panic!("{key}: uint8 expected")
        };
        assert_eq!(arr.shape, gts.dims.to_vec(), "{key}");
        let got = simulate_clicks(pred, &gts.data, gts.dims, 1)[0];
        let want = &r["clicks"][key];
        match got {
            None => assert!(want.is_null(), "{key}: no click, reference {want}"),
            Some(c) => {
                let zyx: Vec<usize> = want["zyx"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as usize)
                    .collect();
                assert_eq!(c.zyx.to_vec(), zyx, "{key}");
                assert_eq!(
                    if c.foreground { "fg" } else { "bg" },
                    want["label"],
                    "{key}"
                );
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 25);
}

/// numpy's `np.random.seed(42); np.random.choice(n)` for 411 values of n up to 5·10⁶.
#[test]
fn numpy_choice_for_many_n() {
    let r = reference();
    let pairs = r["choice_seed42"].as_array().unwrap();
    assert!(pairs.len() > 400);
    for p in pairs {
        let (n, want) = (
            p[0].as_u64().unwrap() as usize,
            p[1].as_u64().unwrap() as usize,
        );
        assert_eq!(segvol_eval::rng::numpy_choice(42, n), want, "n = {n}");
    }
}
