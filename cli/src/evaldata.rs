//! `segvol eval --data DIR --out RUN`: the CVPR 2025 protocol over a folder of cases, one model
//! load and one encoder pass per case, written as the official evaluator's `metrics.csv` (one
//! per variant, `metrics.csv` itself for the main one: the corrector when there is one),
//! `summary.json` (means overall, per modality = case-name prefix, per class; versions; the
//! command line) and `dsc_per_click.png` (mean DSC and NSD per step with a ±1 SD band). The
//! harness ([`segvol_harness::dataset`]) does the work; this plugs SegVol in and prints.

use std::path::Path;

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use segvol_backends::{Backend, BackendTask, dispatch};
use segvol_eval::protocol::{Predictor, ProtocolOptions};
use segvol_harness::dataset::{
    DatasetOptions, LoadedCase, Results, run_dataset, run_external, select_cases, write_run,
};
use segvol_harness::progress_bar;
use segvol_interactive::{SegVolPredictor, SessionOptions};
use serde_json::json;

use crate::case::ModelFiles;
use crate::evalcase::{EvalArgs, variants};

struct Dataset {
    files: ModelFiles,
    cases: Vec<std::path::PathBuf>,
    compare: bool,
    options: SessionOptions,
    opts: DatasetOptions,
    /// Class names as text prompts (--text-from-class-names).
    names: Option<crate::classnames::ClassNames>,
}

impl BackendTask for Dataset {
    type Output = Result<Results>;
    fn run<B: Backend>(self, device: &B::Device) -> Result<Results> {
        let hidden = ProgressBar::hidden();
        let (model, corrector) = self.files.load::<B>(&hidden, device)?;
        let vs = variants(corrector.as_ref(), self.compare, self.options.feedback);
        let names: Vec<&str> = vs.iter().map(|v| v.0).collect();
        // The text embeddings of the case being run, made once for all its variants.
        let mut texts: Option<(String, Vec<Option<Vec<f32>>>)> = None;
        let bar = progress_bar(0);
        let (model, options) = (&model, self.options);
        let results = run_dataset(
            &self.cases,
            &names,
            &self.opts,
            |l: &LoadedCase, k| -> Result<Box<dyn Predictor + '_>> {
                let case_texts = match &self.names {
                    Some(names) => {
                        if texts.as_ref().is_none_or(|t| t.0 != l.name) {
                            let t = crate::classnames::class_texts(model, names, &l.name)?;
                            texts = Some((l.name.clone(), t));
                        }
                        texts.as_ref().map(|t| t.1.clone()).unwrap_or_default()
                    }
                    None => Vec::new(),
                };
                let (_, corr, feedback) = vs[k];
                Ok(Box::new(
                    SegVolPredictor::new(model, corr, device)
                        .with_options(SessionOptions {
                            feedback,
                            ..options
                        })
                        .with_class_texts(case_texts),
                ))
            },
            &bar,
        );
        bar.finish_and_clear();
        Ok(results?)
    }
}

/// Runs `segvol eval --data`.
pub fn run(args: &EvalArgs, dir: &Path, files: ModelFiles) -> Result<()> {
    let Some(out) = &args.out else {
        bail!("--data needs --out RUN_DIR");
    };
    let cases = select_cases(dir, args.cases.as_deref(), args.shard.as_deref())?;
    // Made before the run, so a folder that cannot be written fails now, not after it.
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let opts = DatasetOptions {
        protocol: ProtocolOptions {
            click_steps: args.steps,
            ..ProtocolOptions::default()
        },
        gt_dir: args.gt_dir.clone(),
        masks: args.save_masks.then(|| out.join("masks")),
        max_voxels: args.model.max_voxels,
    };
    let names = if args.text_from_class_names {
        let m = crate::classnames::manifest_path(args.class_names.as_deref(), dir)?;
        Some(crate::classnames::read_class_names(&m)?)
    } else {
        None
    };
    let results = match &args.predict_cmd {
        Some(cmd) => {
            let bar = progress_bar(0);
            let r = run_external(cmd, &cases, &opts, &out.join(".work"), &bar);
            bar.finish_and_clear();
            r?
        }
        None => dispatch(
            args.model.backend()?,
            Dataset {
                files,
                cases: cases.clone(),
                compare: args.compare,
                options: args.options(),
                opts,
                names,
            },
        )?,
    };
    let steps = args.steps + 1;
    let header = json!({
        "command": std::env::args().collect::<Vec<_>>(),
        "data": dir, "cases": cases.len(), "shard": args.shard, "steps": steps,
        "zoom_in": !args.no_zoom_in && args.predict_cmd.is_none(),
        "click_radius_mm": args.predict_cmd.is_none().then_some(args.clicks.click_radius.0).flatten(),
        "click_grow_mm": args.predict_cmd.is_none().then_some(args.clicks.click_grow.0).flatten(),
        "grow_floor": args.predict_cmd.is_none().then_some(args.clicks.grow_floor),
        "negative_reach_mm": args.predict_cmd.is_none().then_some(args.clicks.negative_reach.0).flatten(),
        "box_intensity": args.predict_cmd.is_none().then_some(args.clicks.box_intensity),
        "click_teach": args.predict_cmd.is_none().then_some(args.clicks.click_teach),
        "box_surround": args.predict_cmd.is_none().then_some(args.clicks.box_surround),
        "sure_by_rank": args.predict_cmd.is_none().then_some(args.clicks.sure_by_rank),
        "box_smoothing": args.predict_cmd.is_none().then_some(args.clicks.box_smoothing),
        "gt_dir": args.gt_dir, "predict_cmd": args.predict_cmd,
    });
    let serde_json::Value::Object(header) = header else {
        bail!("internal: the summary header is not a JSON object");
    };
    let summary = write_run(out, &results, steps, header)?;
    if args.json {
        out!("{}", serde_json::to_string_pretty(&summary)?);
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
