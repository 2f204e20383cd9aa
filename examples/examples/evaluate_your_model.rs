//! Score your own model with segvol-rs's evaluation harness, exactly as `segvol eval --data`
//! scores SegVol: the CVPR 2025 protocol (a box step, then five simulated clicks) over a folder
//! of challenge `.npz` cases, the official `metrics.csv`, a `summary.json` and a DSC-per-click
//! plot. The harness has no burn in it: a model is anything that implements
//! `segvol_eval::protocol::Predictor`.
//!
//! The model here is a deliberately simple one to replace with yours: inside each class's box,
//! voxels brighter than the box's mean; each foreground click adds its 3×3×3 neighbourhood,
//! each background click removes it.
//!
//! ```text
//! cargo run -p segvol-examples --example evaluate_your_model -- ../shared/data/npz /tmp/run
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result};
use segvol_eval::protocol::{PredictRequest, Predictor, ProtocolOptions};
use segvol_harness::dataset::{DatasetOptions, run_dataset, select_cases, write_run};

/// Your model. It is made afresh for every case, so it may keep state across a case's steps.
struct BrighterThanTheBox;

impl Predictor for BrighterThanTheBox {
    fn predict(
        &mut self,
        req: &PredictRequest<'_>,
    ) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
        let [d, h, w] = req.dims;
        let at = |z: usize, y: usize, x: usize| (z * h + y) * w + x;
        let mut seg = vec![0u8; d * h * w];
        for (i, b) in req.boxes.unwrap_or_default().iter().enumerate() {
            let label = (i + 1) as u8;
            let voxels = || {
                (b.lo[0]..=b.hi[0]).flat_map(move |z| {
                    (b.lo[1]..=b.hi[1])
                        .flat_map(move |y| (b.lo[2]..=b.hi[2]).map(move |x| at(z, y, x)))
                })
            };
            let n = voxels().count().max(1) as f64;
            let mean = voxels().map(|v| f64::from(req.image[v])).sum::<f64>() / n;
            for v in voxels() {
                if f64::from(req.image[v]) > mean {
                    seg[v] = label;
                }
            }
        }
        for (i, c) in req.clicks.iter().enumerate() {
            let label = (i + 1) as u8;
            for (list, fg) in [(&c.fg, true), (&c.bg, false)] {
                for &[z, y, x] in list {
                    for z in z.saturating_sub(1)..(z + 2).min(d) {
                        for y in y.saturating_sub(1)..(y + 2).min(h) {
                            for x in x.saturating_sub(1)..(x + 2).min(w) {
                                let v = &mut seg[at(z, y, x)];
                                if fg {
                                    *v = label;
                                } else if *v == label {
                                    *v = 0;
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(seg)
    }
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1).map(PathBuf::from);
    let usage = "usage: evaluate_your_model CASES_DIR OUT_DIR";
    let data = args.next().context(usage)?;
    let out = args.next().context(usage)?;

    // 1. The cases: every .npz of the folder, sorted (or some of them, or one shard of N).
    let cases = select_cases(&data, None, None)?;

    // 2. Run the protocol: one predictor per case and variant (here one variant).
    let opts = DatasetOptions {
        protocol: ProtocolOptions::default(),
        gt_dir: None,
        masks: None,
        max_voxels: 200_000_000,
    };
    let bar = segvol_harness::progress_bar(cases.len());
    let results = run_dataset(
        &cases,
        &["brighter-than-the-box"],
        &opts,
        |_case, _variant| -> Result<Box<dyn Predictor>> { Ok(Box::new(BrighterThanTheBox)) },
        &bar,
    )?;
    bar.finish_and_clear();

    // 3. The run folder: metrics.csv as the official evaluator writes it, summary.json, plot.
    let mut header = serde_json::Map::new();
    header.insert("data".into(), serde_json::json!(data));
    let summary = write_run(&out, &results, opts.protocol.click_steps + 1, header)?;
    let mean = &summary["variants"][0]["mean"];
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    println!(
        "{} cases: DSC after the box {:.3}, after 5 clicks {:.3}, DSC_AUC {:.3}",
        mean["cases"],
        num(&mean["DSC"][0]),
        num(&mean["DSC_Final"]),
        num(&mean["DSC_AUC"])
    );
    println!(
        "wrote {}/metrics.csv, summary.json, dsc_per_click.png",
        out.display()
    );
    // Compare runs (yours, SegVol's from `segvol eval --data`) with `segvol report RUN1 RUN2
    // --out DIR`, or `segvol_harness::report::compare` from code.
    Ok(())
}
