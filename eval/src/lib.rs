#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod click;
pub mod components;
pub mod edt;
pub mod metrics;
pub mod protocol;
pub mod report;
pub mod rng;
mod surfel_table;

pub use click::{SimClick, simulate_click, simulate_clicks};
pub use components::{Connectivity, label, largest_component};
pub use metrics::{
    AsdMode, ClassMetrics, Hd95Mode, asd, class_metrics, hd, hd95, nsd, per_label_metrics,
};
pub use protocol::{
    Box3, CaseResult, Clicks, PredictRequest, Predictor, ProtocolOptions, run_case,
};

/// Dice similarity coefficient `2|P ∩ G| / (|P| + |G|)` of two binary masks of equal length.
///
/// Both empty gives `NaN` (MONAI's `ignore_empty` convention: skip it when averaging).
///
/// # Panics
/// When the masks differ in length.
///
/// # Examples
/// ```
/// use segvol_eval::dice;
/// // |P| = 3, |G| = 2, |P ∩ G| = 2 → 4 / 5.
/// assert_eq!(dice(&[true, true, true, false], &[true, true, false, false]), 0.8);
/// assert!(dice(&[false], &[false]).is_nan());
/// ```
pub fn dice(pred: &[bool], gt: &[bool]) -> f64 {
    assert_eq!(pred.len(), gt.len(), "masks of different sizes");
    let (mut inter, mut p, mut g) = (0u64, 0u64, 0u64);
    for (&a, &b) in pred.iter().zip(gt) {
        inter += u64::from(a && b);
        p += u64::from(a);
        g += u64::from(b);
    }
    if p + g == 0 {
        f64::NAN
    } else {
        2.0 * inter as f64 / (p + g) as f64
    }
}
