//! The evaluation harness of segvol-rs, everything around a model that scores it: challenge
//! cases read and checked ([`case`]), the CVPR 2025 protocol over a folder of cases with the
//! official evaluator's `metrics.csv` and a `summary.json` ([`dataset`]), any program as a
//! model the way the official loop runs a team's container ([`ExternalPredictor`]), shards
//! merged and runs compared ([`report`]), per-step plots ([`plot`]) and PNG previews of masks
//! ([`preview`]).
//!
//! It knows nothing of SegVol or burn: a model comes in as a
//! [`segvol_eval::protocol::Predictor`], so the `segvol` CLI plugs in SegVol (any backend) and
//! a tool builder plugs in their own. The interactive engine itself lives in
//! `segvol-interactive`.
#![deny(missing_docs)]

pub mod case;
pub mod classnames;
pub mod dataset;
mod error;
mod external;
pub mod plot;
pub mod preview;
pub mod report;

pub use error::HarnessError;
pub use external::{CommandRun, ExternalError, ExternalPredictor, Recording};

/// A progress bar as the harness draws one: `[=====>    ] 3/10 message (ETA 12s)`.
pub fn progress_bar(len: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("[{bar:30}] {pos}/{len} {msg} (ETA {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}
