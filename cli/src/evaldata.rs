//! `segvol eval --data DIR --out RUN`: the CVPR 2025 protocol over a folder of cases, one model
//! load and one encoder pass per case, written as the official evaluator's `metrics.csv` (one
//! per variant, `metrics.csv` itself for the main one: the corrector when there is one),
//! `summary.json` (means overall, per modality = case-name prefix, per class; versions; the
//! command line) and `dsc_per_click.png` (mean DSC and NSD per step with a ±1 SD band).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use segvol_backends::{Backend, BackendTask, dispatch};
use segvol_eval::protocol::{CaseResult, ProtocolOptions, csv_header, csv_row, run_case};
use segvol_interactive::SegVolPredictor;
use segvol_train::plot::{StepSeries, steps_png};
use segvol_train::run::write_atomic;
use serde_json::json;

use crate::case::{ModelFiles, read_case};
use crate::evalcase::{EvalArgs, variants};

/// The cases of `dir` this run takes: sorted, filtered by `--cases`, then by `--shard I/N`.
pub fn select_cases(
    dir: &Path,
    cases: Option<&[String]>,
    shard: Option<&str>,
) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "npz"))
        .collect();
    files.sort();
    if let Some(names) = cases {
        let stem = |p: &Path| {
            p.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        for n in names {
            if !files.iter().any(|f| stem(f) == *n) {
                bail!("--cases {n}: no {n}.npz in {}", dir.display());
            }
        }
        files.retain(|f| names.contains(&stem(f)));
    }
    if let Some(s) = shard {
        let (i, n) = s
            .split_once('/')
            .and_then(|(i, n)| {
                Some((
                    i.trim().parse::<usize>().ok()?,
                    n.trim().parse::<usize>().ok()?,
                ))
            })
            .with_context(|| format!("--shard {s}: expected I/N, e.g. 0/4"))?;
        if n == 0 || i >= n {
            bail!("--shard {s}: need 0 ≤ I < N");
        }
        files = files
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % n == i)
            .map(|(_, f)| f)
            .collect();
    }
    if files.is_empty() {
        bail!("{}: no case to run", dir.display());
    }
    Ok(files)
}

struct Dataset {
    files: ModelFiles,
    cases: Vec<PathBuf>,
    compare: bool,
    feedback: usize,
    zoom_in: bool,
    opts: ProtocolOptions,
}

/// Per variant: (name, per case: (case file name, result)).
type Results = Vec<(&'static str, Vec<(String, CaseResult)>)>;

impl BackendTask for Dataset {
    type Output = Result<Results>;
    fn run<B: Backend>(self, device: &B::Device) -> Result<Results> {
        let hidden = ProgressBar::hidden();
        let (model, corrector) = self.files.load::<B>(&hidden, device)?;
        let vs = variants(corrector.as_ref(), self.compare, self.feedback);
        let bar = ProgressBar::new((self.cases.len() * vs.len()) as u64);
        bar.set_style(
            ProgressStyle::with_template("[{bar:30}] {pos}/{len} {msg} (ETA {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let mut out: Results = vs.iter().map(|v| (v.0, Vec::new())).collect();
        for path in &self.cases {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let c = read_case(path)?;
            let gts = c
                .gts
                .with_context(|| format!("{}: no `gts`", path.display()))?;
            for (k, (vname, corr, feedback)) in vs.iter().enumerate() {
                bar.set_message(format!("{name} ({vname})"));
                let mut p = SegVolPredictor::new(&model, *corr, device)
                    .with_zoom_in(self.zoom_in)
                    .with_feedback(*feedback);
                let r = run_case(
                    &mut p,
                    &c.image,
                    &gts.data,
                    c.dims,
                    c.spacing,
                    c.boxes.as_deref(),
                    self.opts,
                )
                .with_context(|| format!("evaluating {}", path.display()))?;
                out[k].1.push((name.clone(), r));
                bar.inc(1);
            }
        }
        bar.finish_and_clear();
        Ok(out)
    }
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
    (m, var.sqrt())
}

fn means(rs: &[&CaseResult]) -> serde_json::Value {
    let steps = rs.first().map_or(0, |r| r.steps.len());
    let col =
        |f: &dyn Fn(&CaseResult) -> f64| mean_sd(&rs.iter().map(|r| f(r)).collect::<Vec<_>>()).0;
    json!({
        "cases": rs.len(),
        "DSC_AUC": col(&|r| r.dsc_auc), "NSD_AUC": col(&|r| r.nsd_auc),
        "DSC_Final": col(&|r| r.dsc_final), "NSD_Final": col(&|r| r.nsd_final),
        "DSC": (0..steps).map(|i| col(&|r| r.steps[i].dsc)).collect::<Vec<_>>(),
        "NSD": (0..steps).map(|i| col(&|r| r.steps[i].nsd)).collect::<Vec<_>>(),
        "TotalRunningTime": col(&|r| r.total_seconds),
    })
}

/// Runs `segvol eval --data`.
pub fn run(args: &EvalArgs, dir: &Path, files: ModelFiles) -> Result<()> {
    let Some(out) = &args.out else {
        bail!("--data needs --out RUN_DIR");
    };
    let cases = select_cases(dir, args.cases.as_deref(), args.shard.as_deref())?;
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let results = dispatch(
        args.model.backend()?,
        Dataset {
            files,
            cases: cases.clone(),
            compare: args.compare,
            feedback: args.feedback,
            zoom_in: args.zoom_in,
            opts: ProtocolOptions {
                click_steps: args.steps,
                ..ProtocolOptions::default()
            },
        },
    )?;
    let steps = args.steps + 1;
    let main = results.len() - 1;
    let mut summary_variants = Vec::new();
    let mut dsc_series = Vec::new();
    for (k, (vname, rows)) in results.iter().enumerate() {
        let mut csv = csv_header(steps);
        csv.push('\n');
        for (name, r) in rows {
            csv.push_str(&csv_row(name, r));
            csv.push('\n');
        }
        let file = format!("metrics_{}.csv", vname.replace('+', "_"));
        write_atomic(&out.join(&file), csv.as_bytes())?;
        if k == main {
            write_atomic(&out.join("metrics.csv"), csv.as_bytes())?;
        }
        let all: Vec<&CaseResult> = rows.iter().map(|(_, r)| r).collect();
        let mut by_modality: BTreeMap<String, Vec<&CaseResult>> = BTreeMap::new();
        for (name, r) in rows {
            let m = name.split(['_', '.']).next().unwrap_or("").to_string();
            by_modality.entry(m).or_default().push(r);
        }
        let per_class: Vec<serde_json::Value> = rows
            .iter()
            .flat_map(|(name, r)| {
                let n = r.steps.first().map_or(0, |s| s.class_dsc.len());
                (0..n).map(move |c| {
                    json!({
                        "case": name, "class": c + 1,
                        "DSC": r.steps.iter().map(|s| s.class_dsc[c]).collect::<Vec<_>>(),
                        "NSD": r.steps.iter().map(|s| s.class_nsd[c]).collect::<Vec<_>>(),
                    })
                })
            })
            .collect();
        summary_variants.push(json!({
            "variant": vname, "metrics_csv": file, "mean": means(&all),
            "per_modality": by_modality.iter().map(|(m, v)| (m.clone(), means(v))).collect::<BTreeMap<_, _>>(),
            "per_class": per_class,
        }));
        let per_step = |f: &dyn Fn(&CaseResult, usize) -> f64| -> Vec<(f64, f64)> {
            (0..steps)
                .map(|i| mean_sd(&all.iter().map(|r| f(r, i)).collect::<Vec<_>>()))
                .collect()
        };
        dsc_series.push(StepSeries {
            name: format!("{vname} DSC"),
            values: per_step(&|r, i| r.steps[i].dsc),
        });
        dsc_series.push(StepSeries {
            name: format!("{vname} NSD"),
            values: per_step(&|r, i| r.steps[i].nsd),
        });
    }
    let summary = json!({
        "command": std::env::args().collect::<Vec<_>>(),
        "segvol_version": env!("CARGO_PKG_VERSION"),
        "data": dir, "cases": cases.len(), "shard": args.shard, "steps": steps,
        "zoom_in": args.zoom_in,
        "variants": summary_variants,
    });
    let text = serde_json::to_string_pretty(&summary)?;
    write_atomic(&out.join("summary.json"), text.as_bytes())?;
    steps_png(
        &out.join("dsc_per_click.png"),
        &format!(
            "{} cases: mean per step (band: ±1 SD over cases)",
            cases.len()
        ),
        &dsc_series,
    )?;
    if args.json {
        out!("{text}");
        return Ok(());
    }
    out!("| variant | cases | DSC box | DSC final | DSC_AUC | NSD_AUC |");
    out!("|---|---|---|---|---|---|");
    for v in &summary["variants"].as_array().cloned().unwrap_or_default() {
        let m = &v["mean"];
        out!(
            "| {} | {} | {:.4} | {:.4} | {:.4} | {:.4} |",
            v["variant"].as_str().unwrap_or("?"),
            m["cases"],
            m["DSC"][0].as_f64().unwrap_or(f64::NAN),
            m["DSC_Final"].as_f64().unwrap_or(f64::NAN),
            m["DSC_AUC"].as_f64().unwrap_or(f64::NAN),
            m["NSD_AUC"].as_f64().unwrap_or(f64::NAN)
        );
    }
    out!(
        "wrote {}/metrics.csv, summary.json, dsc_per_click.png",
        out.display()
    );
    Ok(())
}
