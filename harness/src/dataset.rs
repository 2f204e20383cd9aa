//! The CVPR 2025 protocol over a folder of cases: [`select_cases`] picks them (sorted, by name,
//! by shard), [`run_dataset`] runs a model's variants on each (one [`Predictor`] per case and
//! variant, from the caller), [`run_external`] runs a command as the model, and [`write_run`]
//! writes the official evaluator's `metrics.csv` (one per variant, `metrics.csv` itself for the
//! last, the main one), `summary.json` (means overall, per modality = case-name prefix, per
//! class) and `dsc_per_click.png`/`.svg` (mean DSC and NSD per step with a ±1 SD band).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use segvol_eval::protocol::{
    CaseResult, Predictor, ProtocolOptions, csv_header, csv_row, run_case,
};
use segvol_eval::report::modality;
use segvol_io::npy::{NpyArray, NpyData};
use serde_json::json;

use crate::case::{CaseInput, read_case};
use crate::error::{create_dir, write_file};
use crate::plot::{StepSeries, steps_png_and_svg};
use crate::{ExternalPredictor, HarnessError, Recording};

type Result<T> = std::result::Result<T, HarnessError>;

/// Per variant: (name, per case: (case file name, result)), in the order the variants ran.
pub type Results = Vec<(String, Vec<(String, CaseResult)>)>;

/// How a dataset run reads its cases and what it keeps.
#[derive(Debug, Clone)]
pub struct DatasetOptions {
    /// Protocol settings (click steps, NSD tolerance).
    pub protocol: ProtocolOptions,
    /// Ground truth from `gt_dir/<case file name>` (`gts`, as the official validation layout
    /// keeps it) instead of the case's own `gts`.
    pub gt_dir: Option<PathBuf>,
    /// Save every variant's masks under `masks/<variant>/<case>.npz` (the official
    /// evaluator's record: `segs` = the last step, `all_segs` = every step).
    pub masks: Option<PathBuf>,
    /// Refuse a case whose header declares more voxels than this.
    pub max_voxels: u64,
}

/// A case ready for the protocol: its file name, the input, the ground truth, and whether the
/// ground truth came from the case file itself (the official loop then passes `gts` on to the
/// predictor).
pub struct LoadedCase {
    /// The case's file name (`CT_x.npz`).
    pub name: String,
    /// The case.
    pub case: CaseInput,
    /// Ground-truth labels, the image's shape.
    pub gts: Vec<u8>,
    /// Whether `gts` is the case file's own.
    pub gts_in_case: bool,
}

/// The `.npz` cases of `dir` a run takes: sorted by name, only `cases` (file stems) when
/// given, then every `N`th from the `I`th for `shard = "I/N"`.
///
/// # Errors
/// `dir` cannot be listed; a named case is missing; a malformed shard; no case left.
pub fn select_cases(
    dir: &Path,
    cases: Option<&[String]>,
    shard: Option<&str>,
) -> Result<Vec<PathBuf>> {
    let rd =
        std::fs::read_dir(dir).map_err(|e| HarnessError::file(dir, format!("cannot list: {e}")))?;
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
                return Err(HarnessError::Invalid(format!(
                    "--cases {n}: no {n}.npz in {}",
                    dir.display()
                )));
            }
        }
        files.retain(|f| names.contains(&stem(f)));
    }
    if let Some(s) = shard {
        let (i, n) = parse_shard(s)?;
        files = files
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % n == i)
            .map(|(_, f)| f)
            .collect();
    }
    if files.is_empty() {
        return Err(HarnessError::file(dir, "no case to run"));
    }
    Ok(files)
}

/// `"I/N"` as `(I, N)` with `0 ≤ I < N`.
///
/// # Errors
/// [`HarnessError::Invalid`] naming `--shard` otherwise.
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let (i, n) = s
        .split_once('/')
        .and_then(|(i, n)| {
            Some((
                i.trim().parse::<usize>().ok()?,
                n.trim().parse::<usize>().ok()?,
            ))
        })
        .ok_or_else(|| HarnessError::Invalid(format!("--shard {s}: expected I/N, e.g. 0/4")))?;
    if n == 0 || i >= n {
        return Err(HarnessError::Invalid(format!(
            "--shard {s}: need 0 ≤ I < N"
        )));
    }
    Ok((i, n))
}

/// Reads `path` and its ground truth: from `gt_dir/<same name>` when given, otherwise from the
/// case's own `gts`.
///
/// # Errors
/// An unreadable or invalid case; ground truth missing or of another shape than the image.
pub fn load_case(path: &Path, gt_dir: Option<&Path>, max_voxels: u64) -> Result<LoadedCase> {
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
                return Err(HarnessError::file(
                    &gp,
                    format!(
                        "`gts` has shape {:?}, the image {} has {:?}",
                        g.dims,
                        path.display(),
                        case.dims
                    ),
                ));
            }
            (g.data, false)
        }
        None => {
            let g = case.gts.as_ref().ok_or_else(|| {
                HarnessError::file(path, "no `gts` (give --gt-dir for a separate GT folder)")
            })?;
            (g.data.clone(), true)
        }
    };
    Ok(LoadedCase {
        name,
        case,
        gts,
        gts_in_case,
    })
}

/// Runs the protocol with `p` on one loaded case, saving its masks under
/// `masks/<variant>/<case>` when asked (`+` in a variant's name becomes `_`).
///
/// # Errors
/// [`HarnessError::Protocol`] naming the case; the masks cannot be written.
pub fn run_one(
    p: &mut dyn Predictor,
    l: &LoadedCase,
    opts: &DatasetOptions,
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
        opts.protocol,
    )
    .map_err(|source| HarnessError::Protocol {
        case: l.name.clone(),
        source,
    })?;
    if let Some(dir) = &opts.masks {
        let dir = dir.join(variant.replace('+', "_"));
        create_dir(&dir)?;
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

/// Runs every variant on every case: each case is read once, then `predictor(case, k)` makes
/// the predictor of variant `k` (of `variants`) for it, which runs the protocol. The bar
/// advances once per case and variant.
///
/// # Errors
/// A case cannot be read or run; `predictor` fails ([`HarnessError::Model`]).
pub fn run_dataset<'m, E>(
    cases: &[PathBuf],
    variants: &[&str],
    opts: &DatasetOptions,
    mut predictor: impl FnMut(&LoadedCase, usize) -> std::result::Result<Box<dyn Predictor + 'm>, E>,
    bar: &ProgressBar,
) -> Result<Results>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    bar.set_length((cases.len() * variants.len()) as u64);
    let mut out: Results = variants
        .iter()
        .map(|v| (v.to_string(), Vec::new()))
        .collect();
    for path in cases {
        let l = load_case(path, opts.gt_dir.as_deref(), opts.max_voxels)?;
        for (k, vname) in variants.iter().enumerate() {
            bar.set_message(format!("{} ({vname})", l.name));
            let mut p = predictor(&l, k).map_err(|e| HarnessError::Model(e.into()))?;
            let r = run_one(p.as_mut(), &l, opts, vname)?;
            out[k].1.push((l.name.clone(), r));
            bar.inc(1);
        }
    }
    Ok(out)
}

/// Runs `cmd` as the model (see [`ExternalPredictor`]), one workspace per case under
/// `work_root` (removed at the end), as the single variant `external`. A step where the
/// command wrote no output is scored as the official loop scores it and reported on stderr
/// (above the bar).
///
/// # Errors
/// A case cannot be read or run; a workspace cannot be made; an output of the wrong shape.
pub fn run_external(
    cmd: &str,
    cases: &[PathBuf],
    opts: &DatasetOptions,
    work_root: &Path,
    bar: &ProgressBar,
) -> Result<Results> {
    bar.set_length(cases.len() as u64);
    let mut rows = Vec::new();
    for path in cases {
        let l = load_case(path, opts.gt_dir.as_deref(), opts.max_voxels)?;
        bar.set_message(l.name.clone());
        let work = work_root.join(path.file_stem().unwrap_or_default());
        let mut p = ExternalPredictor::new(cmd, &work, path, l.gts_in_case)?;
        let r = run_one(&mut p, &l, opts, "external")?;
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
    std::fs::remove_dir_all(work_root).ok();
    Ok(vec![("external".to_string(), rows)])
}

/// Mean and population standard deviation (0, 0 for no values).
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
    (m, var.sqrt())
}

/// The means `summary.json` gives for a set of cases.
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

/// Writes a run's outputs into `out`: `metrics_<variant>.csv` per variant (`+` as `_`) and
/// `metrics.csv` (the last variant's), `summary.json` (`header`'s fields — what ran, on what —
/// then `segvol_version` and `variants`: per variant its means overall, per modality and per
/// class) and `dsc_per_click.png`/`.svg`. `steps` counts the box step. Returns the summary.
///
/// # Errors
/// A file cannot be written.
pub fn write_run(
    out: &Path,
    results: &Results,
    steps: usize,
    header: serde_json::Map<String, serde_json::Value>,
) -> Result<serde_json::Value> {
    create_dir(out)?;
    let main = results.len().saturating_sub(1);
    let mut summary_variants = Vec::new();
    let mut dsc_series = Vec::new();
    let mut n_cases = 0;
    for (k, (vname, rows)) in results.iter().enumerate() {
        n_cases = n_cases.max(rows.len());
        let mut csv = csv_header(steps);
        csv.push('\n');
        for (name, r) in rows {
            csv.push_str(&csv_row(name, r));
            csv.push('\n');
        }
        let file = format!("metrics_{}.csv", vname.replace('+', "_"));
        write_file(&out.join(&file), csv.as_bytes())?;
        if k == main {
            write_file(&out.join("metrics.csv"), csv.as_bytes())?;
        }
        let all: Vec<&CaseResult> = rows.iter().map(|(_, r)| r).collect();
        let mut by_modality: BTreeMap<String, Vec<&CaseResult>> = BTreeMap::new();
        for (name, r) in rows {
            by_modality
                .entry(modality(name).to_string())
                .or_default()
                .push(r);
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
    let mut summary = header;
    summary.insert("segvol_version".into(), json!(env!("CARGO_PKG_VERSION")));
    summary.insert("variants".into(), json!(summary_variants));
    let summary = serde_json::Value::Object(summary);
    let text = serde_json::to_string_pretty(&summary)
        .map_err(|e| HarnessError::file(&out.join("summary.json"), e))?;
    write_file(&out.join("summary.json"), text.as_bytes())?;
    let title = format!("{n_cases} cases: mean per step (band: ±1 SD over cases)");
    steps_png_and_svg(out, "dsc_per_click", &title, &dsc_series)?;
    Ok(summary)
}
