//! `segvol report`: merges the shards of one `segvol eval --data` run (`--merge`), or puts
//! several runs side by side (a table and one plot with a line per run and variant).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use segvol_eval::report::{MetricsTable, merge, modality};
use segvol_train::plot::{StepSeries, steps_png, steps_svg};
use segvol_train::run::write_atomic;
use serde_json::json;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Run folders written by `segvol eval --data` (with --merge: the shards of one run).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Merge the folders as shards of one run: metrics CSVs, summary.json and the plot of
    /// the whole run go to --out.
    #[arg(long)]
    pub merge: bool,
    /// Output folder (report.md, report.png, report.svg; or the merged run).
    #[arg(long)]
    pub out: PathBuf,
    /// Names of the runs in the table and the legend (comma-separated; default: folder names).
    #[arg(long, value_delimiter = ',')]
    pub names: Option<Vec<String>>,
}

/// One run folder: its variants' tables (file name, variant, table) and its summary.json.
struct RunDir {
    dir: PathBuf,
    tables: Vec<(String, String, MetricsTable)>,
    summary: Option<serde_json::Value>,
}

fn read_run(dir: &Path) -> Result<RunDir> {
    let rd = std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?;
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
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("{}: cannot read", f.display()))?;
        let t = MetricsTable::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
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
        bail!(
            "{}: no metrics*.csv (not a `segvol eval --data` run folder)",
            dir.display()
        );
    }
    let sp = dir.join("summary.json");
    let summary = match std::fs::read_to_string(&sp) {
        Ok(s) => Some(
            serde_json::from_str(&s)
                .with_context(|| format!("{}: not valid JSON", sp.display()))?,
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

fn plots(out: &Path, stem: &str, title: &str, s: &[StepSeries]) -> Result<()> {
    steps_png(&out.join(format!("{stem}.png")), title, s)?;
    steps_svg(&out.join(format!("{stem}.svg")), title, s)?;
    Ok(())
}

fn merge_shards(args: &ReportArgs, runs: &[RunDir]) -> Result<()> {
    // The shards must be one run split by --shard I/N, all of them, each once.
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
            .filter_map(|s| {
                let (i, n) = s.split_once('/')?;
                Some((i.trim().parse().ok()?, n.trim().parse().ok()?))
            })
            .collect();
        let n = parsed.first().map_or(0, |p| p.1);
        if parsed.len() != runs.len() || parsed.iter().any(|p| p.1 != n) {
            bail!("the folders are not shards of one split (their --shard values: {shards:?})");
        }
        let missing: Vec<String> = (0..n)
            .filter(|i| !parsed.iter().any(|p| p.0 == *i))
            .map(|i| format!("{i}/{n}"))
            .collect();
        if !missing.is_empty() {
            bail!(
                "shard(s) {} missing: merge all {n} shards",
                missing.join(", ")
            );
        }
        if parsed.len() != n {
            bail!("a shard is given twice ({shards:?})");
        }
    }
    let variants: Vec<(String, String)> = runs[0]
        .tables
        .iter()
        .map(|(f, v, _)| (f.clone(), v.clone()))
        .collect();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create", args.out.display()))?;
    let mut summary_variants = Vec::new();
    let mut plot = Vec::new();
    for (k, (file, variant)) in variants.iter().enumerate() {
        let mut parts = Vec::new();
        for r in runs {
            let t = r
                .tables
                .iter()
                .find(|(f, _, _)| f == file)
                .with_context(|| {
                    format!(
                        "{}: no {file} (the shards ran other variants)",
                        r.dir.display()
                    )
                })?;
            parts.push(t.2.clone());
        }
        let m = merge(&parts).map_err(|e| anyhow::anyhow!("merging {file}: {e}"))?;
        write_atomic(&args.out.join(file), m.to_csv().as_bytes())?;
        if k + 1 == variants.len() {
            write_atomic(&args.out.join("metrics.csv"), m.to_csv().as_bytes())?;
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
        "command": std::env::args().collect::<Vec<_>>(),
        "merged_from": runs.iter().map(|r| r.dir.clone()).collect::<Vec<_>>(),
        "segvol_version": env!("CARGO_PKG_VERSION"),
        "data": first["data"], "cases": cases, "shard": null, "steps": first["steps"],
        "zoom_in": first["zoom_in"],
        "variants": summary_variants,
    });
    write_atomic(
        &args.out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    plots(
        &args.out,
        "dsc_per_click",
        &format!("{cases} cases: mean per step (band: ±1 SD over cases)"),
        &plot,
    )?;
    out!(
        "merged {} shards ({cases} cases) into {}",
        runs.len(),
        args.out.display()
    );
    Ok(())
}

fn compare(args: &ReportArgs, runs: &[RunDir]) -> Result<()> {
    let names: Vec<String> = match &args.names {
        Some(n) if n.len() == runs.len() => n.clone(),
        Some(n) => bail!("--names has {} names for {} runs", n.len(), runs.len()),
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
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("{}: cannot create", args.out.display()))?;
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
    write_atomic(&args.out.join("report.md"), md.as_bytes())?;
    plots(
        &args.out,
        "report",
        "mean DSC per step (band: ±1 SD over cases)",
        &plot,
    )?;
    out!("{}", md.trim_end());
    out!(
        "wrote {}/report.md, report.png, report.svg",
        args.out.display()
    );
    Ok(())
}

pub fn run(args: &ReportArgs) -> Result<()> {
    let runs = args
        .runs
        .iter()
        .map(|d| read_run(d))
        .collect::<Result<Vec<_>>>()?;
    if args.merge {
        merge_shards(args, &runs)
    } else {
        compare(args, &runs)
    }
}
