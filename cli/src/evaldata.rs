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
use segvol_eval::protocol::Predictor;
use segvol_eval::protocol::{CaseResult, ProtocolOptions, csv_header, csv_row, run_case};
use segvol_interactive::{ExternalPredictor, Recording, SegVolPredictor, SessionOptions};
use segvol_io::npy::{NpyArray, NpyData};
use segvol_train::plot::{StepSeries, steps_png, steps_svg};
use segvol_train::run::write_atomic;
use serde_json::json;

use crate::case::{CaseInput, ModelFiles, read_case};
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
    options: SessionOptions,
    opts: ProtocolOptions,
    gt_dir: Option<PathBuf>,
    masks: Option<PathBuf>,
    max_voxels: u64,
    /// Class names as text prompts (--text-from-class-names).
    names: Option<crate::classnames::ClassNames>,
}

/// Per variant: (name, per case: (case file name, result)).
type Results = Vec<(&'static str, Vec<(String, CaseResult)>)>;

/// A case ready for the protocol: its file name, the input, the GT labels, and whether the GT
/// came from the case file itself (the official loop then passes `gts` on to the predictor).
struct Loaded {
    name: String,
    case: CaseInput,
    gts: Vec<u8>,
    gts_in_case: bool,
}

/// Reads `path` and its ground truth: from `gt_dir/<same name>` (`gts`, as the official
/// validation layout keeps it) when given, otherwise from the case's own `gts`.
fn load(path: &Path, gt_dir: Option<&Path>, max_voxels: u64) -> Result<Loaded> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let case = read_case(path, max_voxels)?;
    let (gts, gts_in_case) = match gt_dir {
        Some(dir) => {
            let gp = dir.join(&name);
            let g = segvol_io::read_labels(&gp, Some("gts"))?;
            if g.dims != case.dims {
                bail!(
                    "{}: `gts` has shape {:?}, the image {} has {:?}",
                    gp.display(),
                    g.dims,
                    path.display(),
                    case.dims
                );
            }
            (g.data, false)
        }
        None => {
            let g = case.gts.as_ref().with_context(|| {
                format!(
                    "{}: no `gts` (give --gt-dir for a separate GT folder)",
                    path.display()
                )
            })?;
            (g.data.clone(), true)
        }
    };
    Ok(Loaded {
        name,
        case,
        gts,
        gts_in_case,
    })
}

fn progress(len: usize) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("[{bar:30}] {pos}/{len} {msg} (ETA {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// Runs one variant on one case, saving its masks under `masks/<variant>/` when asked (the
/// official evaluator's record: `segs` = the last step, `all_segs` = every step).
fn run_one(
    p: &mut dyn Predictor,
    l: &Loaded,
    opts: ProtocolOptions,
    masks: Option<&Path>,
    variant: &str,
) -> Result<CaseResult> {
    let c = &l.case;
    let mut rec = Recording::new(p);
    let r = run_case(
        &mut rec,
        &c.image,
        &l.gts,
        c.dims,
        c.spacing,
        c.boxes.as_deref(),
        opts,
    )
    .with_context(|| format!("evaluating {}", l.name))?;
    if let Some(dir) = masks {
        let dir = dir.join(variant.replace('+', "_"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
        let n: usize = c.dims.iter().product();
        let last = rec.masks.last().cloned().unwrap_or_else(|| vec![0; n]);
        let mut shape = vec![rec.masks.len()];
        shape.extend(c.dims);
        let all = NpyArray {
            shape,
            data: NpyData::U8(rec.masks.concat()),
        };
        let segs = NpyArray {
            shape: c.dims.to_vec(),
            data: NpyData::U8(last),
        };
        segvol_io::write_npz(dir.join(&l.name), &[("segs", &segs), ("all_segs", &all)])?;
    }
    Ok(r)
}

impl BackendTask for Dataset {
    type Output = Result<Results>;
    fn run<B: Backend>(self, device: &B::Device) -> Result<Results> {
        let hidden = ProgressBar::hidden();
        let (model, corrector) = self.files.load::<B>(&hidden, device)?;
        let vs = variants(corrector.as_ref(), self.compare, self.options.feedback);
        let bar = progress(self.cases.len() * vs.len());
        let mut out: Results = vs.iter().map(|v| (v.0, Vec::new())).collect();
        for path in &self.cases {
            let l = load(path, self.gt_dir.as_deref(), self.max_voxels)?;
            let texts = match &self.names {
                Some(names) => crate::classnames::class_texts(&model, names, &l.name)?,
                None => Vec::new(),
            };
            for (k, (vname, corr, feedback)) in vs.iter().enumerate() {
                bar.set_message(format!("{} ({vname})", l.name));
                let mut p = SegVolPredictor::new(&model, *corr, device)
                    .with_options(SessionOptions {
                        feedback: *feedback,
                        ..self.options
                    })
                    .with_class_texts(texts.clone());
                let r = run_one(&mut p, &l, self.opts, self.masks.as_deref(), vname)?;
                out[k].1.push((l.name.clone(), r));
                bar.inc(1);
            }
        }
        bar.finish_and_clear();
        Ok(out)
    }
}

/// `--predict-cmd`: the command as the model, one workspace per case under `out/.work`.
fn run_external(
    cmd: &str,
    cases: &[PathBuf],
    gt_dir: Option<&Path>,
    out: &Path,
    opts: ProtocolOptions,
    masks: Option<&Path>,
    max_voxels: u64,
) -> Result<Results> {
    let bar = progress(cases.len());
    let mut rows = Vec::new();
    let work_root = out.join(".work");
    for path in cases {
        let l = load(path, gt_dir, max_voxels)?;
        bar.set_message(l.name.clone());
        let work = work_root.join(path.file_stem().unwrap_or_default());
        let mut p = ExternalPredictor::new(cmd, &work, path, l.gts_in_case)?;
        let r = run_one(&mut p, &l, opts, masks, "external")?;
        for run in &p.runs {
            if !run.wrote_output {
                bar.suspend(|| {
                    eprintln!(
                        "warning: {} step {}: the command wrote no outputs/{} (exit {:?}); \
                         scored as the previous file or zeros, as the official loop does",
                        l.name, run.step, l.name, run.exit_code
                    );
                });
            }
        }
        rows.push((l.name.clone(), r));
        bar.inc(1);
    }
    bar.finish_and_clear();
    std::fs::remove_dir_all(&work_root).ok();
    Ok(vec![("external", rows)])
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
    let opts = ProtocolOptions {
        click_steps: args.steps,
        ..ProtocolOptions::default()
    };
    let masks = args.save_masks.then(|| out.join("masks"));
    let names = if args.text_from_class_names {
        let m = crate::classnames::manifest_path(args.class_names.as_deref(), dir)?;
        Some(crate::classnames::read_class_names(&m)?)
    } else {
        None
    };
    let results = match &args.predict_cmd {
        Some(cmd) => run_external(
            cmd,
            &cases,
            args.gt_dir.as_deref(),
            out,
            opts,
            masks.as_deref(),
            args.model.max_voxels,
        )?,
        None => dispatch(
            args.model.backend()?,
            Dataset {
                files,
                cases: cases.clone(),
                compare: args.compare,
                options: args.options(),
                opts,
                gt_dir: args.gt_dir.clone(),
                masks,
                max_voxels: args.model.max_voxels,
                names,
            },
        )?,
    };
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
        "zoom_in": !args.no_zoom_in && args.predict_cmd.is_none(),
        "click_radius_mm": args.predict_cmd.is_none().then_some(args.clicks.click_radius.0).flatten(), "gt_dir": args.gt_dir, "predict_cmd": args.predict_cmd,
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
    steps_svg(
        &out.join("dsc_per_click.svg"),
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
        "wrote {}/metrics.csv, summary.json, dsc_per_click.png/.svg",
        out.display()
    );
    Ok(())
}
