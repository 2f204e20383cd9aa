//! The shipped model: it loads strictly from the binary, and it keeps segmenting a fixed
//! held-out case at least as well as when it was shipped (a regression guard, not a quality
//! claim: the quality is in docs/model-card.md).

use std::path::Path;

use segvol_backends::Flex;
use segvol_eval::protocol::{ProtocolOptions, run_case};
use segvol_interactive::SegVolPredictor;
use segvol_io::ChallengeCase;

#[test]
fn shipped_weights_load_strictly() {
    let device = Default::default();
    let (_, report) = segvol_models::segvol::<Flex>(&device).expect("segvol");
    assert!(report.missing.is_empty(), "{:?}", report.missing);
    assert!(report.unused.is_empty(), "{:?}", report.unused);
    // Every tensor of the small model, the dense prompt vectors and the mask prompt (7
    // tensors) included.
    assert_eq!(report.applied.len(), 186);
    let c = segvol_models::config();
    assert!(
        c.mask_prompt && c.mask_prompt_image && c.box_mask_prompt,
        "{c:?}"
    );
    let c = segvol_models::corrector::<Flex>(&device).expect("corrector");
    assert_eq!(c.config().k, 100);
    // Together within the 25 MB.
    assert!(
        segvol_models::SEGVOL_BPK.len() + segvol_models::CORRECTOR_SAFETENSORS.len() < 25_000_000
    );
}

/// The shipped sample (validation split: never trained on), the vertebrae (label 7, what
/// `segvol demo` segments), through the CVPR25 protocol with zoom-in: box, then 3 clicks, in
/// the default variant of every command (SegVol with the mask prompt, no corrector).
#[test]
fn shipped_model_keeps_its_recorded_dsc_on_a_held_out_case() {
    let case = ChallengeCase::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/sample/mr_abdomen.npz"),
    )
    .expect("sample");
    let img = case.imgs.expect("imgs");
    let dims = img.dims();
    let image: Vec<u8> = img.to_f32().data.iter().map(|&v| v as u8).collect();
    let label = 7u8;
    let gt: Vec<u8> = case
        .gts
        .expect("gts")
        .data
        .iter()
        .map(|&g| u8::from(g == label))
        .collect();
    let (lo, hi) = case.boxes.expect("boxes")[usize::from(label) - 1].zyx_inclusive();
    let boxes = [segvol_eval::protocol::Box3 {
        lo: lo.map(|v| v as usize),
        hi: hi.map(|v| v as usize),
    }];
    let device = Default::default();
    let (model, _) = segvol_models::segvol::<Flex>(&device).expect("segvol");
    // The recorded values are the default variant's: SegVol without the corrector (checked
    // when this test compiles).
    const { assert!(!segvol_models::CORRECTOR_BY_DEFAULT) };
    let mut p = SegVolPredictor::new(&model, None, &device).with_zoom_in(true);
    let r = run_case(
        &mut p,
        &image,
        &gt,
        dims,
        case.spacing.expect("spacing"),
        Some(&boxes),
        ProtocolOptions {
            click_steps: 3,
            ..ProtocolOptions::default()
        },
    )
    .expect("protocol");
    let dsc: Vec<f64> = r.steps.iter().map(|s| s.dsc).collect();
    // Recorded when the model was shipped (`segvol demo` prints the same numbers): one DSC
    // per step, every step checked.
    assert_eq!(dsc.len(), RECORDED.len(), "steps run: {dsc:?}");
    for (i, (&d, &min)) in dsc.iter().zip(&RECORDED).enumerate() {
        assert!(
            d >= min,
            "step {i}: DSC {d:.4} < recorded {min:.4} (all: {dsc:?})"
        );
    }
}

/// DSC after the box and clicks 1..3 at shipping time (0.38898, 0.41020, 0.44498, 0.49161 from
/// `segvol demo`, the fifth model), rounded down to 3 decimals.
const RECORDED: [f64; 4] = [0.388, 0.410, 0.444, 0.491];

/// `Session::predict_mask` (the live path: thresholded on the model grid, pasted as bytes, no
/// full-grid float logits) gives exactly the voxels `predict`'s logits > 0 give, with and
/// without the previous mask the shipped model's mask prompt reads, with box and clicks.
#[test]
fn the_mask_path_equals_the_logits_path_thresholded() {
    use segvol_core::pipeline::{Session, VoxelClick};
    let case = ChallengeCase::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/sample/mr_abdomen.npz"),
    )
    .expect("sample");
    let img = case.imgs.expect("imgs");
    let dims = img.dims();
    let image = img.to_f32().data;
    let (lo, hi) = case.boxes.expect("boxes")[2].zyx_inclusive();
    let bbox = (lo.map(|v| v as usize), hi.map(|v| v as usize));
    let device = Default::default();
    let (model, _) = segvol_models::segvol::<Flex>(&device).expect("segvol");
    let mut s = Session::new(&model, &image, dims, &[bbox.0, bbox.1], &device).expect("session");
    let centre = [0, 1, 2].map(|a| (bbox.0[a] + bbox.1[a]) / 2);
    let clicks = [
        VoxelClick {
            zyx: centre,
            foreground: true,
        },
        VoxelClick {
            zyx: bbox.0,
            foreground: false,
        },
    ];
    let thresholded = |l: Vec<f32>| -> Vec<u8> { l.iter().map(|&v| u8::from(v > 0.0)).collect() };
    // Equal voxel for voxel (a count, not a dump of millions of voxels, when they differ).
    let same = |a: &[u8], b: &[u8]| {
        assert_eq!(a.len(), b.len());
        let differ = a.iter().zip(b).filter(|(x, y)| x != y).count();
        assert_eq!(differ, 0, "{differ} of {} voxels differ", a.len());
    };
    let box_only = s.predict_mask(Some(bbox), &[]).expect("mask");
    same(
        &box_only,
        &thresholded(s.predict(Some(bbox), &[]).expect("logits")),
    );
    let n = box_only.iter().filter(|&&m| m > 0).count();
    assert!(n > 100, "a mask worth comparing: {n} voxels");
    // The box step's mask as the previous mask (what a click round gives the model).
    s.set_previous_mask(Some(&box_only)).expect("previous");
    let with_prev = s.predict_mask(Some(bbox), &clicks).expect("mask");
    same(
        &with_prev,
        &thresholded(s.predict(Some(bbox), &clicks).expect("logits")),
    );
    // The previous mask is read: clearing it changes the answer (so the line above compared
    // the path that uses it).
    s.set_previous_mask(None).expect("clear");
    let without = s.predict_mask(Some(bbox), &clicks).expect("mask");
    same(
        &without,
        &thresholded(s.predict(Some(bbox), &clicks).expect("logits")),
    );
    assert_ne!(with_prev, without);
}
