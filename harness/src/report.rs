//! Run folders of [`crate::dataset::write_run`] read back ([`read_run`]): the shards of one
//! run merged into one ([`merge_shards`]), or several runs side by side, a table and one plot
//! with a line per run and variant ([`compare`]). `segvol report` is this.

use std::path::{Path, PathBuf};

use segvol_eval::report::{MetricsTable, merge, modality};
use serde_json::json;

use crate::HarnessError;
use crate::dataset::parse_shard;
use crate::error::{create_dir, write_file};
use crate::plot::{StepSeries, steps_png_and_svg};

type Result<T> = std::result::Result<T, HarnessError>;

/// One run folder: its variants' tables and its `summary.json`.
pub struct RunDir {
    /// The folder.
    pub dir: PathBuf,
    /// Per variant: (file name, variant name — `main` for a lone `metrics.csv`, table).
    pub tables: Vec<(String, String, MetricsTable)>,
    /// Its `summary.json`, when it has one.
    pub summary: Option<serde_json::Value>,
}

/// Reads a run folder: its `metrics*.csv` (`metrics.csv` is skipped when per-variant tables
/// exist: it is a copy of the main one) and its `summary.json`.
///
/// # Errors
/// The folder cannot be listed; a table or the summary cannot be read or parsed; no table.
pub fn read_run(dir: &Path) -> Result<RunDir> {
    let rd =
        std::fs::read_dir(dir).map_err(|e| HarnessError::file(dir, format!("cannot list: {e}")))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("metrics") && n.ends_with(".csv"))
        })
        .collect();
    files.sort();
    let has_variants = files
        .iter()
        .any(|p| p.file_name().is_some_and(|n| n != "metrics.csv"));
    let mut tables = Vec::new();
    for f in files {
        let file = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if has_variants && file == "metrics.csv" {
            continue; // a copy of the main variant's table
        }
        let variant = file
            .trim_start_matches("metrics")
            .trim_start_matches('_')
            .trim_end_matches(".csv")
            .to_string();
        let text = std::fs::read_to_string(&f)
            .map_err(|e| HarnessError::file(&f, format!("cannot read: {e}")))?;
        let t = MetricsTable::parse(&text).map_err(|e| HarnessError::file(&f, e))?;
        tables.push((
            file,
            if variant.is_empty() {
                "main".into()
            } else {
                variant
            },
            t,
        ));
    }
    if tables.is_empty() {
        return Err(HarnessError::file(
            dir,
            "no metrics*.csv (not a `segvol eval --data` run folder)",
        ));
    }
    let sp = dir.join("summary.json");
    let summary = match std::fs::read_to_string(&sp) {
        Ok(s) => Some(
            serde_json::from_str(&s)
                .map_err(|e| HarnessError::file(&sp, format!("not valid JSON: {e}")))?,
        ),
        Err(_) => None,
    };
    Ok(RunDir {
        dir: dir.to_path_buf(),
        tables,
        summary,
    })
}

fn mean(t: &MetricsTable, col: &str, keep: &dyn Fn(&str) -> bool) -> serde_json::Value {
    t.mean_sd(col, keep)
        .map_or(serde_json::Value::Null, |(m, _)| json!(m))
}

fn means(t: &MetricsTable, keep: &dyn Fn(&str) -> bool) -> serde_json::Value {
    let steps = t.steps();
    json!({
        "cases": t.cases().iter().filter(|c| keep(c)).count(),
        "DSC_AUC": mean(t, "DSC_AUC", keep), "NSD_AUC": mean(t, "NSD_AUC", keep),
        "DSC_Final": mean(t, "DSC_Final", keep), "NSD_Final": mean(t, "NSD_Final", keep),
        "DSC": (1..=steps).map(|i| mean(t, &format!("DSC_{i}"), keep)).collect::<Vec<_>>(),
        "NSD": (1..=steps).map(|i| mean(t, &format!("NSD_{i}"), keep)).collect::<Vec<_>>(),
        "TotalRunningTime": mean(t, "TotalRunningTime", keep),
    })
}

fn series(name: &str, t: &MetricsTable, metric: &str) -> StepSeries {
    StepSeries {
        name: format!("{name} {metric}"),
        values: (1..=t.steps())
            .map(|i| {
                t.mean_sd(&format!("{metric}_{i}"), &|_| true)
                    .unwrap_or((f64::NAN, 0.0))
            })
            .collect(),
    }
}

/// Merges `runs`, the shards of one run (`--shard I/N`, all of them, each once, when their
/// summaries say which shard they are), into `out`: the metrics tables, a `summary.json` whose
/// `command` is `command`, and the plot. Returns the number of cases.
///
/// # Errors
/// Shards of different splits, missing or repeated; a variant missing from a shard; tables
/// that do not merge; a file that cannot be written.
pub fn merge_shards(runs: &[RunDir], out: &Path, command: &[String]) -> Result<usize> {
    if runs.is_empty() {
        return Err(HarnessError::Invalid("no run folder to merge".into()));
    }
    let shards: Vec<Option<String>> = runs
        .iter()
        .map(|r| {
            r.summary
                .as_ref()
                .and_then(|s| s["shard"].as_str().map(String::from))
        })
        .collect();
    if shards.iter().all(Option::is_some) {
        let parsed: Vec<(usize, usize)> = shards
            .iter()
            .flatten()
            .filter_map(|s| parse_shard(s).ok())
            .collect();
        let n = parsed.first().map_or(0, |p| p.1);
        if parsed.len() != runs.len() || parsed.iter().any(|p| p.1 != n) {
            return Err(HarnessError::Invalid(format!(
                "the folders are not shards of one split (their --shard values: {shards:?})"
            )));
        }
        let missing: Vec<String> = (0..n)
            .filter(|i| !parsed.iter().any(|p| p.0 == *i))
            .map(|i| format!("{i}/{n}"))
            .collect();
        if !missing.is_empty() {
            return Err(HarnessError::Invalid(format!(
                "shard(s) {} missing: merge all {n} shards",
                missing.join(", ")
            )));
        }
        if parsed.len() != n {
            return Err(HarnessError::Invalid(format!(
                "a shard is given twice ({shards:?})"
            )));
        }
    }
    let variants: Vec<(String, String)> = runs[0]
        .tables
        .iter()
        .map(|(f, v, _)| (f.clone(), v.clone()))
        .collect();
    create_dir(out)?;
    let mut summary_variants = Vec::new();
    let mut plot = Vec::new();
    for (k, (file, variant)) in variants.iter().enumerate() {
        let mut parts = Vec::new();
        for r in runs {
            let t = r.tables.iter().find(|(f, _, _)| f == file).ok_or_else(|| {
                HarnessError::file(&r.dir, format!("no {file} (the shards ran other variants)"))
            })?;
            parts.push(t.2.clone());
        }
        let m = merge(&parts).map_err(|e| HarnessError::Invalid(format!("merging {file}: {e}")))?;
        write_file(&out.join(file), m.to_csv().as_bytes())?;
        if k + 1 == variants.len() {
            write_file(&out.join("metrics.csv"), m.to_csv().as_bytes())?;
        }
        let mut mods: Vec<&str> = m.cases().into_iter().map(modality).collect();
        mods.sort_unstable();
        mods.dedup();
        let per_class: Vec<serde_json::Value> = runs
            .iter()
            .filter_map(|r| r.summary.as_ref())
            .flat_map(|s| {
                s["variants"]
                    .as_array()
                    .and_then(|vs| vs.get(k))
                    .and_then(|v| v["per_class"].as_array().cloned())
                    .unwrap_or_default()
            })
            .collect();
        summary_variants.push(json!({
            "variant": variant, "metrics_csv": file, "mean": means(&m, &|_| true),
            "per_modality": mods.iter().map(|md| (md.to_string(), means(&m, &|c| modality(c) == *md))).collect::<serde_json::Map<_, _>>(),
            "per_class": per_class,
        }));
        plot.push(series(variant, &m, "DSC"));
        plot.push(series(variant, &m, "NSD"));
    }
    let cases = summary_variants
        .first()
        .map_or(json!(0), |v| v["mean"]["cases"].clone());
    let first = runs[0].summary.clone().unwrap_or_default();
    let summary = json!({
        "command": command,
        "merged_from": runs.iter().map(|r| r.dir.clone()).collect::<Vec<_>>(),
        "segvol_version": env!("CARGO_PKG_VERSION"),
        "data": first["data"], "cases": cases, "shard": null, "steps": first["steps"],
        "zoom_in": first["zoom_in"],
        "variants": summary_variants,
    });
    let sp = out.join("summary.json");
    let text = serde_json::to_string_pretty(&summary).map_err(|e| HarnessError::file(&sp, e))?;
    write_file(&sp, text.as_bytes())?;
    steps_png_and_svg(
        out,
        "dsc_per_click",
        &format!("{cases} cases: mean per step (band: ±1 SD over cases)"),
        &plot,
    )?;
    Ok(cases.as_u64().unwrap_or(0) as usize)
}

/// Puts `runs` side by side in `out`: `report.md` (a table: per run and variant, the means of
/// DSC after the box, final DSC and NSD, the AUCs and the time per case) and `report.png`/`.svg`
/// (mean DSC per step, one line per run and variant). `names` label the runs (default: the
/// folder names). Returns the table.
///
/// # Errors
/// `names` of another length than `runs`; a file that cannot be written.
pub fn compare(runs: &[RunDir], names: Option<&[String]>, out: &Path) -> Result<String> {
    let names: Vec<String> = match names {
        Some(n) if n.len() == runs.len() => n.to_vec(),
        Some(n) => {
            return Err(HarnessError::Invalid(format!(
                "--names has {} names for {} runs",
                n.len(),
                runs.len()
            )));
        }
        None => runs
            .iter()
            .map(|r| {
                r.dir.file_name().map_or_else(
                    || r.dir.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                )
            })
            .collect(),
    };
    create_dir(out)?;
    let mut md = String::from(
        "| run | variant | cases | DSC box | DSC final | NSD final | DSC_AUC | NSD_AUC | s / case |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let mut plot = Vec::new();
    let f = |v: Option<(f64, f64)>| v.map_or("–".to_string(), |(m, _)| format!("{m:.4}"));
    for (r, name) in runs.iter().zip(&names) {
        for (_, variant, t) in &r.tables {
            let all = |_: &str| true;
            md.push_str(&format!(
                "| {name} | {variant} | {} | {} | {} | {} | {} | {} | {} |\n",
                t.rows.len(),
                f(t.mean_sd("DSC_1", &all)),
                f(t.mean_sd("DSC_Final", &all)),
                f(t.mean_sd("NSD_Final", &all)),
                f(t.mean_sd("DSC_AUC", &all)),
                f(t.mean_sd("NSD_AUC", &all)),
                t.mean_sd("TotalRunningTime", &all)
                    .map_or("–".into(), |(m, _)| format!("{m:.2}")),
            ));
            let label = if r.tables.len() > 1 || runs.len() == 1 {
                format!("{name}/{variant}")
            } else {
                name.clone()
            };
            plot.push(series(&label, t, "DSC"));
        }
    }
    write_file(&out.join("report.md"), md.as_bytes())?;
    steps_png_and_svg(
        out,
        "report",
        "mean DSC per step (band: ±1 SD over cases)",
        &plot,
    )?;
    Ok(md)
}
