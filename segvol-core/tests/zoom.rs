//! The zoom-in: window arithmetic against MONAI 0.9.0's own functions (recorded by
//! reference/zoom_reference.py), and the whole zoom-out + zoom-in on a real CT case with the
//! tiny fixture weights.

// Test code: a panic with the failing value is the right outcome.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use segvol_backends::Flex;
use segvol_core::pipeline::Session;
use segvol_core::weights::load_segvol;
use segvol_core::zoom::{roi_axis, window_starts};
use segvol_core::{SegVol, SegVolConfig};

fn shared() -> PathBuf {
    std::env::var_os("SEGVOL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

/// The tiny parity fixture's model and a development case.
fn tiny_model_and_case(name: &str) -> (SegVol<Flex>, segvol_io::ChallengeCase) {
    let mut model = SegVol::<Flex>::new(&SegVolConfig::tiny(), &Default::default());
    load_segvol(
        &mut model,
        shared().join("fixtures/segvol_tiny/weights.safetensors"),
    )
    .unwrap();
    let case = segvol_io::ChallengeCase::read(shared().join(format!("data/npz/{name}.npz")));
    (model, case.unwrap())
}

#[test]
fn window_starts_match_monai_0_9() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/zoom_reference.json"),
    )
    .unwrap();
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(j["monai"], "0.9.0");
    let cases = j["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 10);
    let v = |x: &serde_json::Value| -> Vec<usize> {
        x.as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap() as usize)
            .collect()
    };
    for c in cases {
        let (size, roi) = (v(&c["size"]), v(&c["roi"]));
        let starts: Vec<Vec<usize>> = (0..3).map(|a| window_starts(size[a], roi[a])).collect();
        for a in 0..3 {
            assert_eq!(starts[a], v(&c["starts"][a]), "size {size:?} axis {a}");
        }
        // MONAI enumerates windows with D outermost, as our nested loops do.
        let mut order = Vec::new();
        for &z in &starts[0] {
            for &y in &starts[1] {
                for &x in &starts[2] {
                    order.push(vec![z, y, x]);
                }
            }
        }
        let want: Vec<Vec<usize>> = c["order"].as_array().unwrap().iter().map(v).collect();
        assert_eq!(order, want, "size {size:?}");
    }
}

#[test]
fn zoom_in_refines_inside_the_roi_only() {
    let (model, case) = tiny_model_and_case("ct_kidney_right");
    let device = Default::default();
    let img = case.imgs.unwrap().to_f32();
    let dims = img.dims;
    let (lo, hi) = case.boxes.unwrap()[0].zyx_inclusive();
    let bx = (lo.map(|v| v as usize), hi.map(|v| v as usize));
    let session = Session::new(&model, &img.data, dims, &[bx.0, bx.1], &device).unwrap();
    let global = session.predict(Some(bx), &[]).unwrap();
    let mut calls = Vec::new();
    let (zoomed, rep) = session
        .predict_zoom_in(Some(bx), &[], &mut |d, t| calls.push((d, t)))
        .unwrap();
    let (rlo, rhi) = rep.roi.unwrap();
    let zoom = session.zoom();
    let grid = [32, 64, 64];
    let crop = [0, 1, 2].map(|a| zoom.crop_hi[a] - zoom.crop_lo[a]);
    // The ROI covers the box (crop coordinates) and follows §9.2's arithmetic.
    for a in 0..3 {
        assert!(rlo[a] <= bx.0[a] - zoom.crop_lo[a] && bx.1[a] - zoom.crop_lo[a] < rhi[a]);
        assert!(rhi[a] <= crop[a]);
    }
    // Windows: the product of the starts over the ROI padded to at least one window.
    let n: usize = (0..3)
        .map(|a| window_starts((rhi[a] - rlo[a]).max(grid[a]), grid[a]).len())
        .product();
    assert_eq!(rep.windows, n);
    assert_eq!(calls.len(), n);
    assert_eq!(calls.last(), Some(&(n, n)));
    eprintln!("dims {dims:?} crop {crop:?} roi {rlo:?}..{rhi:?}, {n} windows");
    // Outside the ROI: the global logits exactly; inside: refined (different) values.
    let (mut inside_changed, mut outside_same, mut outside) = (0usize, 0usize, 0usize);
    for z in 0..dims[0] {
        for y in 0..dims[1] {
            for x in 0..dims[2] {
                let i = (z * dims[1] + y) * dims[2] + x;
                let c = [z, y, x];
                let in_roi = (0..3)
                    .all(|a| c[a] >= zoom.crop_lo[a] + rlo[a] && c[a] < zoom.crop_lo[a] + rhi[a]);
                if in_roi {
                    inside_changed += usize::from(zoomed[i] != global[i]);
                } else {
                    outside += 1;
                    outside_same += usize::from(zoomed[i] == global[i]);
                }
            }
        }
    }
    assert_eq!(outside_same, outside);
    assert!(inside_changed > 0);
    // Sanity of the check itself: roi_axis grows small extents to the window.
    assert_eq!(roi_axis(10, 12, 32, 100), (0, 27));
}

/// A second zoom-in pass of a session reuses its windows' encodings (none encoded again when
/// the ROI is the same) and gives, bit for bit, what a fresh session gives for that pass; a
/// third with the same prompts decodes nothing.
#[test]
fn a_later_pass_reuses_the_window_encodings_and_changes_nothing() {
    // 53×96×116: a box larger than the tiny model's 32×64×64 window on every axis.
    let (model, case) = tiny_model_and_case("ct_heart_thick");
    let device = Default::default();
    let img = case.imgs.unwrap().to_f32();
    let dims = img.dims;
    let bx = ([10, 16, 20], [43, 80, 96]);
    let cover = [bx.0, bx.1];
    let mid = [0, 1, 2].map(|a| (bx.0[a] + bx.1[a]) / 2);
    let click = [segvol_core::pipeline::VoxelClick {
        zyx: mid,
        foreground: false,
    }];
    let warm = Session::new(&model, &img.data, dims, &cover, &device).unwrap();
    let (_, first) = warm.predict_zoom_in(Some(bx), &[], &mut |_, _| {}).unwrap();
    assert!(first.windows >= 8, "{first:?}");
    assert_eq!(first.encoded, first.windows);
    let (again, rep) = warm
        .predict_zoom_in(Some(bx), &click, &mut |_, _| {})
        .unwrap();
    let fresh = Session::new(&model, &img.data, dims, &cover, &device).unwrap();
    let (want, want_rep) = fresh
        .predict_zoom_in(Some(bx), &click, &mut |_, _| {})
        .unwrap();
    assert_eq!(want_rep.encoded, want_rep.windows);
    assert_eq!(rep.windows, want_rep.windows);
    assert_eq!(rep.roi, want_rep.roi);
    if rep.roi == first.roi {
        assert_eq!(rep.encoded, 0, "same ROI, nothing to encode again");
    }
    assert!(rep.encoded < rep.windows, "{rep:?}");
    assert!(
        again == want,
        "the cached pass differs from a fresh session's"
    );
    // The same request again: every window's prompts are the last pass's, nothing is decoded.
    let (third, rep3) = warm
        .predict_zoom_in(Some(bx), &click, &mut |_, _| {})
        .unwrap();
    assert_eq!((rep3.encoded, rep3.decoded), (0, 0), "{rep3:?}");
    assert!(third == again);
}

/// Every zoom-in window's box prompt is the user's box clipped to that window (in the window's
/// coordinates; none for a window the box misses), whatever the global pass predicted. The
/// expected boxes are derived here from the box, the reported ROI, §9.3's padding and MONAI's
/// window starts. SegVol's challenge code takes them from the global prediction when there are
/// several windows; we do not (`segvol_core::zoom::window_box`).
#[test]
fn every_window_takes_the_users_box() {
    let (model, case) = tiny_model_and_case("ct_heart_thick");
    let device = Default::default();
    let img = case.imgs.unwrap().to_f32();
    let dims = img.dims;
    let grid = [32, 64, 64];
    let bx = ([10, 16, 20], [43, 80, 96]);
    let click = [segvol_core::pipeline::VoxelClick {
        zyx: [30, 50, 60],
        foreground: true,
    }];
    let session = Session::new(&model, &img.data, dims, &[bx.0, bx.1], &device).unwrap();
    for clicks in [&[][..], &click[..]] {
        let (_, rep) = session
            .predict_zoom_in(Some(bx), clicks, &mut |_, _| {})
            .unwrap();
        let (rlo, rhi) = rep.roi.unwrap();
        let clo = session.zoom().crop_lo;
        let rd = [0, 1, 2].map(|a| rhi[a] - rlo[a]);
        let pd = [0, 1, 2].map(|a| rd[a].max(grid[a]));
        let before = [0, 1, 2].map(|a| (pd[a] - rd[a]) / 2);
        // The box in the padded ROI's coordinates.
        let (b0, b1) = (
            [0, 1, 2].map(|a| bx.0[a] - clo[a] - rlo[a] + before[a]),
            [0, 1, 2].map(|a| bx.1[a] - clo[a] - rlo[a] + before[a]),
        );
        let starts: Vec<Vec<usize>> = (0..3).map(|a| window_starts(pd[a], grid[a])).collect();
        let mut want = Vec::new();
        for &z in &starts[0] {
            for &y in &starts[1] {
                for &x in &starts[2] {
                    let s = [z, y, x];
                    let lo = [0, 1, 2].map(|a| b0[a].max(s[a]));
                    let hi = [0, 1, 2].map(|a| b1[a].min(s[a] + grid[a] - 1));
                    want.push((0..3).all(|a| lo[a] <= hi[a]).then_some((lo, hi)).map(
                        |(lo, hi)| {
                            (
                                [0, 1, 2].map(|a| lo[a] - s[a]),
                                [0, 1, 2].map(|a| hi[a] - s[a]),
                            )
                        },
                    ));
                }
            }
        }
        assert!(
            want.len() >= 8,
            "several windows: {} (roi {rlo:?}..{rhi:?})",
            want.len()
        );
        // Some window holds only a part of the box: the clipping is exercised.
        assert!(
            want.iter()
                .flatten()
                .any(|(lo, hi)| *lo == [0; 3] || hi.iter().zip(grid).any(|(h, g)| *h == g - 1)),
            "{want:?}"
        );
        assert_eq!(rep.boxes, want, "{} clicks", clicks.len());
    }
}
