//! [`InteractiveSession`] against independent expectations: its mask equals a direct decode
//! of the same prompts; undo restores the exact earlier mask (and corrector state); a 2-D box
//! is extended by half the shorter in-plane side; objects stack into a label map.

// Test code: a panic with the failing value is the right outcome.
#![allow(clippy::unwrap_used)]

use segvol_backends::Flex;
use segvol_core::SegVol;
use segvol_core::pipeline::{Session, VoxelClick};
use segvol_interactive::{InteractiveSession, diff_box};

mod common;
use common::{shared, tiny_corrector, tiny_model};

/// The image every test here runs on (the shipped kidney CT sample, as `f32`), its shape and
/// spacing.
fn kidney() -> (Vec<f32>, [usize; 3], [f64; 3]) {
    let img =
        segvol_io::read_image(shared().join("data/nifti/ct_kidney_right_img.nii.gz")).unwrap();
    let (dims, spacing) = (img.dims(), img.spacing());
    (img.to_f32().data, dims, spacing)
}

/// A box's mask as every engine finishes it from the model's `logits` with the default
/// options: the box's intensity model (sure voxels by rank and the box's surround) is fitted,
/// which is asserted, and its offsets move the logits that the box's smoothness
/// (`smooth_box`) thresholds.
fn finished(
    logits: &[f32],
    image: &[f32],
    dims: [usize; 3],
    bbox: ([usize; 3], [usize; 3]),
) -> Vec<u8> {
    finished_with(logits, image, dims, bbox, &[]).0
}

/// [`finished`] with `clicks` teaching the box's intensity model (as the live defaults have
/// it, `SessionOptions::intensity_fit`); also the fitted model, whose offsets the click rules
/// read.
fn finished_with(
    logits: &[f32],
    image: &[f32],
    dims: [usize; 3],
    bbox: ([usize; 3], [usize; 3]),
    clicks: &[VoxelClick],
) -> (Vec<u8>, segvol_interactive::BoxIntensity) {
    let idx = |p: [usize; 3]| (p[0] * dims[1] + p[1]) * dims[2] + p[2];
    let value = |i: usize| f64::from(image[i]);
    let at = |p: [usize; 3]| logits[idx(p)];
    let fit = segvol_interactive::SessionOptions::live().intensity_fit(clicks);
    let m = segvol_interactive::BoxIntensity::fit_with(dims, bbox, value, at, fit)
        .expect("the tiny model's box is fitted");
    let mut mask: Vec<u8> = logits.iter().map(|&l| u8::from(l > 0.0)).collect();
    segvol_interactive::smooth_box(&mut mask, dims, bbox, |p| {
        at(p) + m.offset(p, value(idx(p)))
    });
    (mask, m)
}

/// A positive click's finish as the engines apply it at the default radii: `mask` grown from
/// `clicks` within `bbox` (`grow_clicks_until`, stopped where `stops` holds; `|_| false` is
/// `grow_clicks`), then the clicks honoured. Returns how many voxels the grown region added.
fn grown_and_honoured<T: Copy + Into<f64>>(
    mask: &mut [u8],
    image: &[T],
    dims: [usize; 3],
    spacing: [f64; 3],
    clicks: &[VoxelClick],
    bbox: ([usize; 3], [usize; 3]),
    stops: impl Fn([usize; 3]) -> bool,
) -> usize {
    use segvol_interactive::{
        DEFAULT_CLICK_RADIUS_MM, DEFAULT_GROW_RADIUS_MM, grow_clicks_until, honour_clicks,
    };
    let grown = grow_clicks_until(
        mask,
        image,
        dims,
        spacing,
        clicks,
        Some(bbox),
        DEFAULT_GROW_RADIUS_MM,
        stops,
    );
    honour_clicks(mask, dims, spacing, clicks, DEFAULT_CLICK_RADIUS_MM, 1, 0);
    grown
}

#[test]
fn session_matches_direct_decodes_and_undoes_exactly() {
    let device = Default::default();
    let model = tiny_model();
    let corrector = tiny_corrector();
    let (image, dims, spacing) = kidney();
    let mut s = InteractiveSession::new(
        &model,
        Some(&corrector),
        &device,
        image.clone(),
        dims,
        spacing,
    )
    .unwrap();
    let (lo, hi) = ([4, 8, 8], [16, 30, 28]);
    let u = s.set_box(lo, hi).unwrap();
    assert!(u.ran && u.encode_s > 0.0);
    // The same box through the pipeline directly (same crop: the box's corners covered).
    let direct = Session::new(&model, &image, dims, &[lo, hi], &device).unwrap();
    let want = finished(
        &direct.predict(Some((lo, hi)), &[]).unwrap(),
        &image,
        dims,
        (lo, hi),
    );
    assert_eq!(s.mask(), &want[..]);
    assert_eq!(u.changed, diff_box(&vec![0; want.len()], &want, dims));
    let after_box = s.mask().to_vec();
    let u = s.add_point([10, 20, 20], true).unwrap();
    assert_eq!(
        u.encode_s, 0.0,
        "clicks inside the crop re-decode, never re-encode"
    );
    let after_pos = s.mask().to_vec();
    s.add_point([10, 12, 12], false).unwrap();
    let after_neg = s.mask().to_vec();
    // The history keeps each action's changed box, not whole masks.
    let n = after_neg.len();
    let boxed = |a: &[u8], b: &[u8]| {
        diff_box(a, b, dims).map_or(0, |(l, h)| (0..3).map(|k| h[k] + 1 - l[k]).product())
    };
    assert_eq!(
        s.history_bytes(),
        boxed(&vec![0; n], &after_box)
            + boxed(&after_box, &after_pos)
            + boxed(&after_pos, &after_neg)
    );
    // Undo twice: back to the box's mask, exactly.
    assert!(s.undo().is_some());
    assert_eq!(s.mask(), &after_pos[..]);
    assert!(s.undo().is_some());
    assert_eq!(s.mask(), &after_box[..]);
    // Redo the same two clicks: the corrector state was restored, so the result is the same.
    s.add_point([10, 20, 20], true).unwrap();
    assert_eq!(s.mask(), &after_pos[..]);
    s.add_point([10, 12, 12], false).unwrap();
    assert_eq!(s.mask(), &after_neg[..]);
    assert_eq!(s.prompts().clicks.len(), 2);
    assert_eq!(
        s.prompts().clicks[1],
        VoxelClick {
            zyx: [10, 12, 12],
            foreground: false
        }
    );
    // A second prediction without a new action (the corrector turned off, then predict):
    // undo still returns to the mask from before the click, not the one in between.
    s.undo().unwrap();
    s.undo().unwrap();
    assert_eq!(s.mask(), &after_box[..]);
    s.add_point([10, 20, 20], true).unwrap();
    let corrected = s.mask().to_vec();
    assert_eq!(corrected, after_pos);
    s.set_corrector(false);
    s.predict().unwrap();
    assert_ne!(
        s.mask(),
        &corrected[..],
        "the corrector changes this click's mask (else the merge is not exercised)"
    );
    s.undo().unwrap();
    assert_eq!(s.mask(), &after_box[..]);
    s.set_corrector(true);
    s.add_point([10, 20, 20], true).unwrap();
    s.add_point([10, 12, 12], false).unwrap();
    assert_eq!(s.mask(), &after_neg[..]);
    // A 2-D box on slice 10: in-plane 11 × 9 voxels of 3 mm; depth ±(27 mm / 2) / 3 mm = ±4.5
    // → 5 slices (rounded) on each side, clipped to the image (24 slices).
    assert_eq!(
        s.extend_2d(0, [10, 5, 5], [10, 15, 13]),
        ([5, 5, 5], [15, 15, 13])
    );
    assert_eq!(s.extend_2d(0, [1, 5, 5], [1, 15, 13]).0[0], 0);
    // Objects: commit, reset, a second one; the label map holds both.
    assert_eq!(s.next_object(), Some(1));
    assert!(s.mask().iter().all(|&m| m == 0));
    assert_eq!(s.undo_depth(), 0);
    s.set_box([2, 2, 2], [6, 10, 10]).unwrap();
    let labels = s.label_map();
    for (i, &l) in labels.iter().enumerate() {
        let want = if s.mask()[i] > 0 {
            2
        } else if after_neg[i] > 0 {
            1
        } else {
            0
        };
        assert_eq!(l, want, "voxel {i}");
    }
    // Prompts outside the image are errors, not panics.
    assert!(s.add_point([99, 0, 0], true).is_err());
    assert!(s.set_box([5, 5, 5], [1, 1, 1]).is_err());
}

/// The tiny parity model without and with a randomly initialised full-size CLIP tower
/// (`dim_align` 512 → 96; backend RNG seeded with `seed`).
fn tiny_with_text(seed: u64) -> (SegVol<Flex>, SegVol<Flex>) {
    use segvol_core::text::{TextConfig, TextEncoder};
    let device = Default::default();
    let mut model = tiny_model();
    let plain = model.clone();
    <Flex as burn::tensor::backend::Backend>::seed(&device, seed);
    model.set_text_encoder(Some(TextEncoder::new(&TextConfig::clip_b32(96), &device)));
    (plain, model)
}

/// A text prompt: alone it equals the pipeline's text-only decode, with a box the pipeline's
/// text + box decode; undo restores the box-only state; clearing it returns to the box's mask;
/// weights without a tower give a clear error and leave the session as it was.
#[test]
fn text_prompt_alone_and_with_a_box() {
    let device = Default::default();
    let (plain, model) = tiny_with_text(7);
    let (image, dims, spacing) = kidney();
    let mask = |l: Vec<f32>| -> Vec<u8> { l.iter().map(|&v| u8::from(v > 0.0)).collect() };
    let text = model.embed_text("kidney").unwrap();

    let mut s =
        InteractiveSession::new(&model, None, &device, image.clone(), dims, spacing).unwrap();
    let u = s.set_text(Some("kidney")).unwrap();
    assert!(u.ran);
    let mut direct = Session::new(&model, &image, dims, &[], &device).unwrap();
    direct.set_text(Some(text.clone())).unwrap();
    assert_eq!(s.mask(), &mask(direct.predict(None, &[]).unwrap())[..]);
    assert_eq!(s.prompts().text.as_deref(), Some("kidney"));

    let (lo, hi) = ([4, 8, 8], [16, 30, 28]);
    let mut s =
        InteractiveSession::new(&model, None, &device, image.clone(), dims, spacing).unwrap();
    s.set_box(lo, hi).unwrap();
    let box_only = s.mask().to_vec();
    s.set_text(Some("kidney")).unwrap();
    let mut direct = Session::new(&model, &image, dims, &[lo, hi], &device).unwrap();
    direct.set_text(Some(text)).unwrap();
    let want = finished(
        &direct.predict(Some((lo, hi)), &[]).unwrap(),
        &image,
        dims,
        (lo, hi),
    );
    assert_eq!(s.mask(), &want[..]);
    assert_ne!(
        want, box_only,
        "the text changes the mask (else undo proves nothing)"
    );
    s.undo().unwrap();
    assert_eq!(s.mask(), &box_only[..]);
    assert_eq!(s.prompts().text, None);
    s.set_text(Some("kidney")).unwrap();
    assert_eq!(s.mask(), &want[..]);
    s.set_text(None).unwrap();
    assert_eq!(s.mask(), &box_only[..]);

    // No tower: refused with the reason, nothing changed.
    let mut s = InteractiveSession::new(&plain, None, &device, image, dims, spacing).unwrap();
    s.set_box(lo, hi).unwrap();
    let before = s.mask().to_vec();
    let err = s.set_text(Some("kidney")).unwrap_err().to_string();
    assert!(err.contains("no text tower"), "{err}");
    assert!(s.set_text(Some("  ")).is_err());
    assert_eq!(s.mask(), &before[..]);
    assert_eq!(s.undo_depth(), 1);
}

/// The CVPR25 predictor with per-class text prompts gives, class by class, the pipeline's
/// decode with that text (and without texts, the plain decode): the texts reach the model.
#[test]
fn predictor_class_texts_reach_the_decoder() {
    use segvol_eval::protocol::{Box3, Clicks, PredictRequest, Predictor};
    use segvol_interactive::SegVolPredictor;
    let device = Default::default();
    let (_, model) = tiny_with_text(11);
    let img =
        segvol_io::read_image(shared().join("data/nifti/ct_kidney_right_img.nii.gz")).unwrap();
    let dims = img.dims();
    let f = img.to_f32().data;
    let (lo, hi) = f
        .iter()
        .fold((f32::MAX, f32::MIN), |a, &v| (a.0.min(v), a.1.max(v)));
    let image: Vec<u8> = f
        .iter()
        .map(|&v| ((v - lo) / (hi - lo) * 255.0).round() as u8)
        .collect();
    let boxes = [Box3 {
        lo: [4, 8, 8],
        hi: [16, 30, 28],
    }];
    let clicks = [Clicks::default()];
    let req = PredictRequest {
        dims,
        spacing: [3.0; 3],
        image: &image,
        n_classes: 1,
        boxes: Some(&boxes),
        clicks: &clicks,
        prev_pred: None,
        step: 1,
    };
    let text = model.embed_text("kidney").unwrap();
    let as_f32: Vec<f32> = image.iter().map(|&v| f32::from(v)).collect();
    let mut direct =
        Session::new(&model, &as_f32, dims, &[boxes[0].lo, boxes[0].hi], &device).unwrap();
    let b = (boxes[0].lo, boxes[0].hi);
    let plain = finished(&direct.predict(Some(b), &[]).unwrap(), &as_f32, dims, b);
    direct.set_text(Some(text.clone())).unwrap();
    let with_text = finished(&direct.predict(Some(b), &[]).unwrap(), &as_f32, dims, b);
    assert_ne!(plain, with_text);
    let mut p = SegVolPredictor::new(&model, None, &device);
    assert_eq!(p.predict(&req).unwrap(), plain);
    let mut p = SegVolPredictor::new(&model, None, &device).with_class_texts(vec![Some(text)]);
    assert_eq!(p.predict(&req).unwrap(), with_text);
}

/// One class's single click, foreground or background, as the protocol accumulates it.
fn one_click(zyx: [usize; 3], fg: bool) -> segvol_eval::protocol::Clicks {
    segvol_eval::protocol::Clicks {
        fg: if fg { vec![zyx] } else { vec![] },
        bg: if fg { vec![] } else { vec![zyx] },
        order: vec![Some(fg)],
    }
}

/// The protocol's first click step (step 2) for one class with its box and clicks.
fn first_click_step<'a>(
    dims: [usize; 3],
    spacing: [f64; 3],
    image: &'a [u8],
    boxes: &'a [segvol_eval::protocol::Box3],
    clicks: &'a [segvol_eval::protocol::Clicks],
) -> segvol_eval::protocol::PredictRequest<'a> {
    segvol_eval::protocol::PredictRequest {
        dims,
        spacing,
        image,
        n_classes: 1,
        boxes: Some(boxes),
        clicks,
        prev_pred: None,
        step: 2,
    }
}

/// Clicks that stick (`segvol_interactive::honour`): with the default click radius the
/// session's mask after a click is the model's own answer (radius off) with
/// [`honour_clicks`] applied to it — and the case is chosen so that the model alone leaves a
/// negative click's voxel in the mask, so the step has something to do. The protocol predictor
/// applies the same step to the same answer.
#[test]
fn clicks_stick_in_the_session_and_the_predictor() {
    use segvol_eval::protocol::{Box3, Predictor};
    use segvol_interactive::{
        DEFAULT_CLICK_RADIUS_MM, SegVolPredictor, SessionOptions, honour_clicks,
    };
    let device = Default::default();
    let model = tiny_model();
    let (image, dims, spacing) = kidney();
    let (lo, hi) = ([4, 8, 8], [16, 30, 28]);
    // Negative clicks that reach clear a negative click's voxel whatever the model says (their
    // own test is below): off here, so the model alone can leave the voxel in.
    let no_reach = SessionOptions {
        negative_reach_mm: None,
        ..SessionOptions::default()
    };
    let session = |radius: Option<f64>| {
        let mut s =
            InteractiveSession::new(&model, None, &device, image.clone(), dims, spacing).unwrap();
        s.set_options(SessionOptions {
            click_radius_mm: radius,
            ..no_reach
        });
        s.set_box(lo, hi).unwrap();
        s
    };
    let mut raw = session(None);
    let after_box = raw.mask().to_vec();
    let idx = |p: [usize; 3]| (p[0] * dims[1] + p[1]) * dims[2] + p[2];
    // A foreground voxel of the box's mask that a negative click there leaves foreground.
    let mut found = None;
    'search: for z in (lo[0]..=hi[0]).step_by(3) {
        for y in (lo[1]..=hi[1]).step_by(4) {
            for x in (lo[2]..=hi[2]).step_by(4) {
                if after_box[idx([z, y, x])] == 0 {
                    continue;
                }
                raw.add_point([z, y, x], false).unwrap();
                if raw.mask()[idx([z, y, x])] == 1 {
                    found = Some([z, y, x]);
                    break 'search;
                }
                raw.undo().unwrap();
            }
        }
    }
    let zyx = found.expect("a negative click the tiny model ignores");
    let clicks = [VoxelClick {
        zyx,
        foreground: false,
    }];
    let mut want = raw.mask().to_vec();
    let n = honour_clicks(
        &mut want,
        dims,
        spacing,
        &clicks,
        DEFAULT_CLICK_RADIUS_MM,
        1,
        0,
    );
    assert!(n > 0);
    let mut stuck = session(Some(DEFAULT_CLICK_RADIUS_MM));
    stuck.add_point(zyx, false).unwrap();
    assert_eq!(
        stuck.mask()[idx(zyx)],
        0,
        "the clicked voxel leaves the mask"
    );
    assert_eq!(stuck.mask(), &want[..]);
    // The default radius is on.
    let mut default =
        InteractiveSession::new(&model, None, &device, image.clone(), dims, spacing).unwrap();
    default.set_options(no_reach);
    default.set_box(lo, hi).unwrap();
    default.add_point(zyx, false).unwrap();
    assert_eq!(default.mask(), &want[..]);

    // The predictor: the same click as the protocol's first click step.
    let image_u8: Vec<u8> = image.iter().map(|&v| v.clamp(0.0, 255.0) as u8).collect();
    let boxes = [Box3 { lo, hi }];
    let cl = [one_click(zyx, false)];
    let req = first_click_step(dims, spacing, &image_u8, &boxes, &cl);
    let mut p_raw = SegVolPredictor::new(&model, None, &device).with_options(SessionOptions {
        click_radius_mm: None,
        ..no_reach
    });
    let mut want = p_raw.predict(&req).unwrap();
    honour_clicks(
        &mut want,
        dims,
        spacing,
        &clicks,
        DEFAULT_CLICK_RADIUS_MM,
        1,
        0,
    );
    let mut p = SegVolPredictor::new(&model, None, &device).with_options(no_reach);
    assert_eq!(p.predict(&req).unwrap(), want);
}

/// Positive clicks that reach (`segvol_interactive::grow_clicks`): with the defaults but the
/// grow floor (tested on its own below), the session's mask after a positive click is the
/// model's own answer (both rules off) with [`grown_and_honoured`] unstopped (`grow_clicks`,
/// then `honour_clicks`) applied to it, on the session's own image; the protocol predictor does the same on its `u8` image.
/// The click is one the tiny model leaves out, so the region has something to add.
#[test]
fn positive_clicks_reach_in_the_session_and_the_predictor() {
    use segvol_eval::protocol::{Box3, Predictor};
    use segvol_interactive::{SegVolPredictor, SessionOptions};
    let unfloored = SessionOptions {
        grow_floor: false,
        ..SessionOptions::live()
    };
    let device = Default::default();
    let model = tiny_model();
    let (image, dims, spacing) = kidney();
    let (lo, hi) = ([4, 8, 8], [16, 30, 28]);
    let idx = |p: [usize; 3]| (p[0] * dims[1] + p[1]) * dims[2] + p[2];
    let mut raw =
        InteractiveSession::new(&model, None, &device, image.clone(), dims, spacing).unwrap();
    raw.set_options(unfloored);
    raw.set_click_radius(None);
    raw.set_click_grow(None);
    raw.set_box(lo, hi).unwrap();
    let after_box = raw.mask().to_vec();
    let zyx = [10, 19, 18];
    assert_eq!(
        after_box[idx(zyx)],
        0,
        "the tiny model leaves the click's voxel out"
    );
    raw.add_point(zyx, true).unwrap();
    let clicks = [VoxelClick {
        zyx,
        foreground: true,
    }];
    let adds = |grown: usize| {
        assert!(
            grown > 1,
            "the region adds more than the clicked voxel: {grown}"
        );
    };
    let mut want = raw.mask().to_vec();
    adds(grown_and_honoured(
        &mut want,
        &image,
        dims,
        spacing,
        &clicks,
        (lo, hi),
        |_| false,
    ));
    let mut default =
        InteractiveSession::new(&model, None, &device, image.clone(), dims, spacing).unwrap();
    default.set_options(unfloored);
    default.set_box(lo, hi).unwrap();
    default.add_point(zyx, true).unwrap();
    assert_eq!(default.mask(), &want[..]);

    // The predictor, on the challenge's u8 image.
    let image_u8: Vec<u8> = image.iter().map(|&v| v.clamp(0.0, 255.0) as u8).collect();
    let boxes = [Box3 { lo, hi }];
    let cl = [one_click(zyx, true)];
    let req = first_click_step(dims, spacing, &image_u8, &boxes, &cl);
    let mut p_raw = SegVolPredictor::new(&model, None, &device)
        .with_click_radius(None)
        .with_click_grow(None);
    let mut want = p_raw.predict(&req).unwrap();
    adds(grown_and_honoured(
        &mut want,
        &image_u8,
        dims,
        spacing,
        &clicks,
        (lo, hi),
        |_| false,
    ));
    let mut p = SegVolPredictor::new(&model, None, &device).with_options(unfloored);
    assert_eq!(p.predict(&req).unwrap(), want);
}

/// Positive clicks that stop where the model is sure (`segvol_interactive::GROW_FLOOR`): with
/// the defaults, the session's mask after a positive click is the model's answer to box and
/// click (a direct decode) finished by the box's rules (its intensity model, taught by the
/// click, moving the logits that the smoothness thresholds), grown and honoured
/// ([`grown_and_honoured`]) with the region stopped at the voxels whose logit with those
/// offsets is at or below −2. The
/// floor bites here (the click was found by a scan of the box; the tiny model's logits are
/// rarely that sure): unstopped, the region is larger, and that is the session's mask with
/// `grow_floor` off.
#[test]
fn positive_clicks_stop_where_the_model_is_sure() {
    use segvol_interactive::{GROW_FLOOR, SessionOptions};
    let device = Default::default();
    let model = tiny_model();
    let (image, dims, spacing) = kidney();
    let (lo, hi) = ([4, 8, 8], [16, 30, 28]);
    let zyx = [15, 23, 17];
    let clicks = [VoxelClick {
        zyx,
        foreground: true,
    }];
    let idx = |p: [usize; 3]| (p[0] * dims[1] + p[1]) * dims[2] + p[2];
    let direct = Session::new(&model, &image, dims, &[lo, hi], &device).unwrap();
    let logits = direct.predict(Some((lo, hi)), &clicks).unwrap();
    let (base, fit) = finished_with(&logits, &image, dims, (lo, hi), &clicks);
    let logit = |p: [usize; 3]| logits[idx(p)] + fit.offset(p, f64::from(image[idx(p)]));
    let live = SessionOptions::live();
    let grown = |stops: &dyn Fn([usize; 3]) -> bool| {
        let mut m = base.clone();
        grown_and_honoured(&mut m, &image, dims, spacing, &clicks, (lo, hi), stops);
        m
    };
    let want = grown(&|p| logit(p) <= GROW_FLOOR);
    let unstopped = grown(&|_| false);
    let on = |m: &[u8]| m.iter().filter(|&&v| v == 1).count();
    assert!(
        on(&unstopped) > on(&want),
        "the floor stops the region: {} vs {}",
        on(&unstopped),
        on(&want)
    );
    for (options, want) in [
        (live, want),
        (
            SessionOptions {
                grow_floor: false,
                ..live
            },
            unstopped,
        ),
    ] {
        let mut s =
            InteractiveSession::new(&model, None, &device, image.clone(), dims, spacing).unwrap();
        s.set_options(options);
        s.set_box(lo, hi).unwrap();
        s.add_point(zyx, true).unwrap();
        assert!(s.mask() == &want[..], "grow_floor {}", options.grow_floor);
    }
}

/// Both engines start from the same settings (`SessionOptions::default()`, the live ones) and
/// take a whole `SessionOptions` at once; the session's zoom-in setting changes its answer
/// exactly as a direct zoom-in decode does.
#[test]
fn both_engines_start_from_one_set_of_options() {
    use segvol_interactive::{SegVolPredictor, SessionOptions};
    let device = Default::default();
    let model = tiny_model();
    assert_eq!(SessionOptions::default(), SessionOptions::live());
    let p = SegVolPredictor::new(&model, None, &device);
    assert_eq!(p.options(), SessionOptions::default());
    let batch = SessionOptions::batch();
    assert_eq!(p.with_options(batch).options(), batch);
    let (image, dims, spacing) = kidney();
    let mut s =
        InteractiveSession::new(&model, None, &device, image.clone(), dims, spacing).unwrap();
    assert_eq!(s.options(), SessionOptions::default());
    s.set_options(batch);
    assert_eq!(s.options(), batch);
    // With batch options the box's mask is the zoom-in decode's.
    let (lo, hi) = ([4, 8, 8], [16, 30, 28]);
    s.set_box(lo, hi).unwrap();
    let direct = Session::new(&model, &image, dims, &[lo, hi], &device).unwrap();
    let z = direct
        .predict_zoom_in(Some((lo, hi)), &[], &mut |_, _| {})
        .unwrap()
        .0;
    let want = finished(&z, &image, dims, (lo, hi));
    assert!(
        s.mask() == want.as_slice(),
        "the session's box mask is not the zoom-in decode"
    );
}
