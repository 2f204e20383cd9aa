//! The protocol runner with simple predictors written for the tests, on a real dev case.

// Test code: a panic with the failing value is the right outcome.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use segvol_eval::protocol::ProtocolError;
use segvol_eval::{Box3, PredictRequest, Predictor, ProtocolOptions, run_case, simulate_click};

type Res = Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>>;

/// image, gts, dims, spacing, boxes
type Case = (Vec<u8>, Vec<u8>, [usize; 3], [f64; 3], Vec<Box3>);

fn case() -> Case {
    let shared = std::env::var_os("SEGVOL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let c = segvol_io::ChallengeCase::read(shared.join("data/npz/ct_vertebra_L3.npz")).unwrap();
    let gts = c.gts.unwrap();
    let segvol_io::AnyVolume::U8(img) = c.imgs.unwrap() else {
        panic!()
    };
    let boxes = c
        .boxes
        .unwrap()
        .iter()
        .map(|b| {
            let (lo, hi) = b.zyx_inclusive();
            Box3 {
                lo: lo.map(|v| v as usize),
                hi: hi.map(|v| v as usize),
            }
        })
        .collect();
    (img.data, gts.data, gts.dims, c.spacing.unwrap(), boxes)
}

struct Oracle(Vec<u8>);
impl Predictor for Oracle {
    fn predict(&mut self, _: &PredictRequest<'_>) -> Res {
        Ok(self.0.clone())
    }
}

struct Nothing;
impl Predictor for Nothing {
    fn predict(&mut self, r: &PredictRequest<'_>) -> Res {
        Ok(vec![0; r.image.len()])
    }
}

/// Box step: the ground truth with its upper half of slices missing. Click steps: the
/// previous prediction with every voxel within 4 voxels (Chebyshev) of each click set to the
/// truth, like the stand-in model of shared/data.
struct Painter(Vec<u8>);
impl Predictor for Painter {
    fn predict(&mut self, r: &PredictRequest<'_>) -> Res {
        let [d, h, w] = r.dims;
        let mut out = match r.prev_pred {
            None => {
                let mut o = self.0.clone();
                o[..(d / 2) * h * w].fill(0);
                o
            }
            Some(p) => p.to_vec(),
        };
        for cl in r.clicks {
            for c in cl.fg.iter().chain(&cl.bg) {
                for z in c[0].saturating_sub(4)..=(c[0] + 4).min(d - 1) {
                    for y in c[1].saturating_sub(4)..=(c[1] + 4).min(h - 1) {
                        for x in c[2].saturating_sub(4)..=(c[2] + 4).min(w - 1) {
                            let i = (z * h + y) * w + x;
                            out[i] = self.0[i];
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

struct Failing;
impl Predictor for Failing {
    fn predict(&mut self, r: &PredictRequest<'_>) -> Res {
        if r.step == 3 {
            Err("out of memory".into())
        } else {
            Ok(vec![0; r.image.len()])
        }
    }
}

#[test]
fn a_perfect_model_scores_one_and_gets_no_clicks() {
    let (img, gts, dims, sp, boxes) = case();
    let r = run_case(
        &mut Oracle(gts.clone()),
        &img,
        &gts,
        dims,
        sp,
        Some(&boxes),
        ProtocolOptions::default(),
    )
    .unwrap();
    assert_eq!(r.steps.len(), 6);
    assert!(r.steps.iter().all(|s| s.dsc == 1.0 && s.nsd == 1.0));
    assert_eq!(
        (r.dsc_auc, r.nsd_auc, r.dsc_final, r.nsd_final),
        (4.0, 4.0, 1.0, 1.0)
    );
    assert_eq!(r.clicks[0].order, vec![None; 5]);
    assert!(r.clicks[0].fg.is_empty() && r.clicks[0].bg.is_empty());
}

#[test]
fn a_model_that_ignores_clicks_gets_the_same_click_five_times() {
    let (img, gts, dims, sp, boxes) = case();
    let r = run_case(
        &mut Nothing,
        &img,
        &gts,
        dims,
        sp,
        Some(&boxes),
        ProtocolOptions::default(),
    )
    .unwrap();
    assert!(r.steps.iter().all(|s| s.dsc == 0.0 && s.nsd == 0.0)); // NSD gated off below DSC 0.2
    let gt1: Vec<bool> = gts.iter().map(|&v| v == 1).collect();
    let first = simulate_click(&vec![false; gts.len()], &gt1, dims).unwrap();
    assert_eq!(r.clicks[0].fg, vec![first.zyx; 5]);
    assert_eq!(r.clicks[0].order, vec![Some(true); 5]);
    assert_eq!(r.dsc_auc, 0.0);
}

#[test]
fn clicks_follow_the_prediction_and_auc_is_the_trapezoid() {
    let (img, gts, dims, sp, boxes) = case();
    let r = run_case(
        &mut Painter(gts.clone()),
        &img,
        &gts,
        dims,
        sp,
        Some(&boxes),
        ProtocolOptions::default(),
    )
    .unwrap();
    let d: Vec<f64> = r.steps.iter().map(|s| s.dsc).collect();
    // Painting the truth around each click never lowers DSC, and the first click does help.
    assert!(d.windows(2).all(|w| w[1] >= w[0]), "{d:?}");
    assert!(d[1] > d[0], "{d:?}");
    // First click: from the box-step prediction (upper half missing).
    let [dd, h, w] = dims;
    let mut box_pred: Vec<bool> = gts.iter().map(|&v| v == 1).collect();
    box_pred[..(dd / 2) * h * w].fill(false);
    let gt1: Vec<bool> = gts.iter().map(|&v| v == 1).collect();
    let c1 = simulate_click(&box_pred, &gt1, dims).unwrap();
    assert_eq!(r.clicks[0].fg[0], c1.zyx);
    assert!(c1.foreground);
    // AUC over clicks 1..5 only: 0.5·d₁ + d₂ + d₃ + d₄ + 0.5·d₅.
    let want = 0.5 * d[1] + d[2] + d[3] + d[4] + 0.5 * d[5];
    assert!((r.dsc_auc - want).abs() < 1e-12);
    assert_eq!(r.dsc_final, d[5]);
    // NSD is computed when DSC > 0.2.
    assert!(r.steps.iter().all(|s| s.dsc <= 0.2 || s.nsd > 0.0));
}

#[test]
fn without_boxes_step_one_scores_zero_and_clicks_start_from_nothing() {
    let (img, gts, dims, sp, _) = case();
    let r = run_case(
        &mut Painter(gts.clone()),
        &img,
        &gts,
        dims,
        sp,
        None,
        ProtocolOptions::default(),
    )
    .unwrap();
    assert_eq!((r.steps[0].dsc, r.steps[0].seconds), (0.0, 0.0));
    let gt1: Vec<bool> = gts.iter().map(|&v| v == 1).collect();
    let first = simulate_click(&vec![false; gts.len()], &gt1, dims).unwrap();
    assert_eq!(r.clicks[0].fg[0], first.zyx);
}

#[test]
fn predictor_failures_and_bad_shapes_are_errors() {
    let (img, gts, dims, sp, boxes) = case();
    let e = run_case(
        &mut Failing,
        &img,
        &gts,
        dims,
        sp,
        Some(&boxes),
        ProtocolOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, ProtocolError::Predictor { step: 3, .. }), "{e}");
    let e = run_case(
        &mut Oracle(vec![0; 5]),
        &img,
        &gts,
        dims,
        sp,
        Some(&boxes),
        ProtocolOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("returned 5 voxels"), "{e}");
    let e = run_case(
        &mut Nothing,
        &img[1..],
        &gts,
        dims,
        sp,
        None,
        ProtocolOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, ProtocolError::Shape(_)));
}
