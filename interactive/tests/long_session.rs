//! A long interactive session (issue 15): 200 click rounds on one case with the corrector on,
//! through the protocol runner. Every mask must be valid (the image's size, labels in range)
//! and the process's memory flat once the session is warm.

// Test code: a panic with the failing value is the right outcome.
#![allow(clippy::unwrap_used)]

use segvol_eval::protocol::{Box3, PredictRequest, Predictor, ProtocolOptions, run_case};
use segvol_interactive::SegVolPredictor;

mod common;
use common::{shared, tiny_corrector, tiny_model};

/// Resident memory of this process, kB (Linux; `None` elsewhere).
fn rss_kb() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let l = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    l.split_whitespace().nth(1)?.parse().ok()
}

/// Checks every mask and records memory after each step.
struct Watch<'a, P> {
    inner: P,
    rss: &'a mut Vec<Option<u64>>,
}

impl<P: Predictor> Predictor for Watch<'_, P> {
    fn predict(
        &mut self,
        req: &PredictRequest<'_>,
    ) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
        let m = self.inner.predict(req)?;
        assert_eq!(
            m.len(),
            req.dims.iter().product::<usize>(),
            "step {}",
            req.step
        );
        assert!(
            m.iter().all(|&v| usize::from(v) <= req.n_classes),
            "step {}: a label above {}",
            req.step,
            req.n_classes
        );
        self.rss.push(rss_kb());
        Ok(m)
    }
}

#[test]
fn two_hundred_rounds_with_the_corrector_keep_memory_flat_and_masks_valid() {
    let device = Default::default();
    let model = tiny_model();
    let corrector = tiny_corrector();
    let case =
        segvol_io::ChallengeCase::read(shared().join("data/npz/ct_kidney_right.npz")).unwrap();
    let img = case.imgs.as_ref().unwrap().to_f32();
    let image: Vec<u8> = img
        .data
        .iter()
        .map(|&v| v.clamp(0.0, 255.0) as u8)
        .collect();
    let gts = case.gts.as_ref().unwrap();
    let boxes: Vec<Box3> = case
        .boxes
        .as_ref()
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
    let mut rss = Vec::new();
    let mut p = Watch {
        inner: SegVolPredictor::new(&model, Some(&corrector), &device),
        rss: &mut rss,
    };
    let rounds = 200;
    let r = run_case(
        &mut p,
        &image,
        &gts.data,
        img.dims,
        case.spacing.unwrap_or([1.0; 3]),
        Some(&boxes),
        ProtocolOptions {
            click_steps: rounds,
            ..ProtocolOptions::default()
        },
    )
    .unwrap();
    assert_eq!(r.steps.len(), rounds + 1);
    assert!(r.steps.iter().all(|s| (0.0..=1.0).contains(&s.dsc)));
    if let (Some(Some(warm)), Some(Some(last))) = (rss.get(20), rss.last()) {
        // Flat: the last 180 rounds may not grow the process by more than 64 MB (each round
        // adds one click: a few bytes of prompt, nothing per voxel).
        let growth = last.saturating_sub(*warm);
        eprintln!("RSS after round 20: {warm} kB, after round {rounds}: {last} kB (+{growth} kB)");
        assert!(
            growth < 64 * 1024,
            "memory grew by {growth} kB over 180 rounds"
        );
    }
}
