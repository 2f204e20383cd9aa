//! `segvol metrics` and `segvol next-click`.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;
use segvol_eval::metrics::per_label_metrics;
use segvol_eval::simulate_click;
use segvol_io::{FileKind, Volume, read_labels};
use serde_json::json;

use crate::sample::parse_zyx;

/// The two label maps both commands compare.
#[derive(Args, Debug)]
pub struct PairArgs {
    /// Prediction: NIfTI label map, or npz (`segs`, else `prev_pred`).
    #[arg(long)]
    pub pred: PathBuf,
    /// Ground truth: NIfTI label map, or npz (`gts`).
    #[arg(long)]
    pub gt: PathBuf,
    /// Only this label (default: every label in the ground truth).
    #[arg(long)]
    pub label: Option<u8>,
}

#[derive(Args, Debug)]
pub struct MetricsArgs {
    #[command(flatten)]
    pub pair: PairArgs,
    /// Spacing `z,y,x` in mm (default: from the ground-truth file; npz spacing as stored).
    #[arg(long)]
    pub spacing: Option<String>,
    /// NSD tolerance in mm.
    #[arg(long, default_value_t = 2.0)]
    pub tol: f64,
    /// Print JSON (infinite distances are written as null).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct NextClickArgs {
    #[command(flatten)]
    pub pair: PairArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn load_pair(pred: &Path, gt: &Path) -> Result<(Volume<u8>, Volume<u8>)> {
    let p = if FileKind::of(pred)? == FileKind::Npz {
        match read_labels(pred, Some("segs")) {
            Ok(v) => v,
            Err(segvol_io::IoError::MissingKey { .. }) => read_labels(pred, Some("prev_pred"))
                .map_err(|e| match e {
                    segvol_io::IoError::MissingKey { .. } => {
                        anyhow::anyhow!(
                            "{}: has neither `segs` nor `prev_pred` to use as the prediction",
                            pred.display()
                        )
                    }
                    other => other.into(),
                })?,
            Err(e) => return Err(e.into()),
        }
    } else {
        read_labels(pred, None)?
    };
    let g = if FileKind::of(gt)? == FileKind::Npz {
        read_labels(gt, Some("gts"))?
    } else {
        read_labels(gt, None)?
    };
    if p.dims != g.dims {
        bail!(
            "{} has shape {:?} but {} has {:?}",
            pred.display(),
            p.dims,
            gt.display(),
            g.dims
        );
    }
    Ok((p, g))
}

fn labels_of(gt: &Volume<u8>, only: Option<u8>) -> Result<Vec<u8>> {
    let counts = gt.label_counts();
    let present: Vec<u8> = (1..counts.len())
        .filter(|&l| counts[l] > 0)
        .map(|l| l as u8)
        .collect();
    match only {
        Some(l) if present.contains(&l) => Ok(vec![l]),
        Some(l) => bail!("label {l} is not in the ground truth (labels present: {present:?})"),
        None if present.is_empty() => bail!("the ground truth has no foreground label"),
        None => Ok(present),
    }
}

fn num(v: f64) -> serde_json::Value {
    if v.is_finite() {
        json!(v)
    } else {
        serde_json::Value::Null
    }
}

pub fn metrics(args: &MetricsArgs) -> Result<()> {
    let (p, g) = load_pair(&args.pair.pred, &args.pair.gt)?;
    let spacing = match &args.spacing {
        Some(s) => parse_zyx(s, "--spacing")?,
        None => g.spacing,
    };
    if args.tol.is_nan() || args.tol < 0.0 {
        bail!("--tol must be a non-negative number of mm");
    }
    labels_of(&g, args.pair.label)?; // a clear error for an absent label or an empty ground truth
    let (rows, mean) =
        per_label_metrics(&p.data, &g.data, g.dims, spacing, args.tol, args.pair.label);
    let mean = mean.ok_or_else(|| anyhow::anyhow!("no label to evaluate"))?;
    let means = [mean.dsc, mean.nsd, mean.hd95, mean.asd, mean.hd];
    if args.json {
        let classes: Vec<_> = rows
            .iter()
            .map(|(l, m)| json!({"label": l, "dsc": num(m.dsc), "nsd": num(m.nsd), "hd95": num(m.hd95), "asd": num(m.asd), "hd": num(m.hd)}))
            .collect();
        let j = json!({
            "pred": args.pair.pred, "gt": args.pair.gt, "spacing_zyx_mm": spacing, "tolerance_mm": args.tol,
            "classes": classes,
            "mean": {"dsc": num(means[0]), "nsd": num(means[1]), "hd95": num(means[2]), "asd": num(means[3]), "hd": num(means[4])},
        });
        out!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        out!(
            "spacing (z,y,x) {spacing:?} mm, NSD tolerance {} mm; HD95 = max of directed 95th percentiles, ASD = mean over both surfaces",
            args.tol
        );
        out!("| label | DSC | NSD | HD95 (mm) | ASD (mm) | HD (mm) |");
        out!("|---|---|---|---|---|---|");
        for (l, m) in &rows {
            out!(
                "| {l} | {:.4} | {:.4} | {:.3} | {:.3} | {:.3} |",
                m.dsc,
                m.nsd,
                m.hd95,
                m.asd,
                m.hd
            );
        }
        if rows.len() > 1 {
            out!(
                "| mean | {:.4} | {:.4} | {:.3} | {:.3} | {:.3} |",
                means[0],
                means[1],
                means[2],
                means[3],
                means[4]
            );
        }
    }
    Ok(())
}

pub fn next_click(args: &NextClickArgs) -> Result<()> {
    let (p, g) = load_pair(&args.pair.pred, &args.pair.gt)?;
    let labels = labels_of(&g, args.pair.label)?;
    let mut out = Vec::new();
    for &l in &labels {
        let pm: Vec<bool> = p.data.iter().map(|&v| v == l).collect();
        let gm: Vec<bool> = g.data.iter().map(|&v| v == l).collect();
        let c = simulate_click(&pm, &gm, g.dims);
        out.push((l, c));
    }
    let one = |c: &Option<segvol_eval::SimClick>| match c {
        Some(c) => json!({"click": c.zyx, "label": if c.foreground { "fg" } else { "bg" }}),
        None => json!({"click": null}),
    };
    if args.json {
        if args.pair.label.is_some() {
            out!("{}", one(&out[0].1));
        } else {
            let all: Vec<_> = out
                .iter()
                .map(|(l, c)| {
                    let mut j = one(c);
                    j["class"] = json!(l);
                    j
                })
                .collect();
            out!("{}", json!({ "clicks": all }));
        }
    } else {
        for (l, c) in &out {
            match c {
                Some(c) => out!(
                    "class {l}: click {:?} {}",
                    c.zyx,
                    if c.foreground { "fg" } else { "bg" }
                ),
                None => out!("class {l}: no error, no click"),
            }
        }
    }
    Ok(())
}
