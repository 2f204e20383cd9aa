//! `segvol eval`: SegVol (optionally with the GRU corrector) through the CVPR 2025 protocol on
//! a challenge case with ground truth: the box step, then simulated clicks; DSC / NSD per step,
//! DSC-AUC, NSD-AUC and the time of every step. `--compare` runs the baseline and the corrector
//! on the same case (GRU_CORRECTION.md D9).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::ProgressBar;
use segvol_backends::{Backend, BackendTask, dispatch};
use segvol_eval::protocol::{Box3, CaseResult, ProtocolOptions, run_case};
use serde_json::json;

use crate::case::{CorrectorSource, ModelArgs, ModelFiles, read_case, spinner};
use segvol_interactive::{SegVolPredictor, SessionOptions, StepLog};

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Challenge case .npz with `imgs`, `gts` and (for the box step) `boxes`.
    #[arg(long, required_unless_present = "data", conflicts_with = "data")]
    pub case: Option<PathBuf>,
    /// A folder of such cases: run them all and write metrics.csv, summary.json and
    /// dsc_per_click.png into --out.
    #[arg(long, requires = "out")]
    pub data: Option<PathBuf>,
    /// Output folder of a --data run.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// With --data: ground truth from this folder (`gts` in an npz of the same name, the
    /// official validation layout) instead of each case's own `gts`.
    #[arg(long, requires = "data")]
    pub gt_dir: Option<PathBuf>,
    /// With --data: keep every step's prediction as `RUN_DIR/masks/<variant>/<case>.npz`
    /// (`segs` = last step, `all_segs` = every step, as the official evaluator stores them).
    #[arg(long, requires = "data")]
    pub save_masks: bool,
    /// With --data: score an external predictor instead of our model. The command runs
    /// (`sh -c`) once per step in a workspace with `inputs/<case>.npz` (boxes, clicks,
    /// clicks_order, prev_pred as the official evaluator writes them) and must write
    /// `outputs/<case>.npz` with `segs`, exactly as a challenge container's `predict.sh`.
    #[arg(long, requires = "data", conflicts_with_all = ["compare", "feedback", "corrector", "zoom_in", "no_zoom_in"])]
    pub predict_cmd: Option<String>,
    /// With --data: only these cases (file stems, comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub cases: Option<Vec<String>>,
    /// With --data: run shard I of N (0-based, `I/N`): case k of the sorted list belongs to
    /// shard k mod N, for a Slurm array or an indexed job.
    #[arg(long)]
    pub shard: Option<String>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub clicks: crate::case::ClickArgs,
    /// GRU corrector: a file (.safetensors / .pth) or `shipped`; corrects every click step.
    /// With the shipped model, --compare and --feedback use the shipped corrector.
    #[arg(long)]
    pub corrector: Option<PathBuf>,
    /// Run the baseline and the corrector on the same case and print both.
    #[arg(long)]
    pub compare: bool,
    /// Skip the zoom-in sliding window. By default it runs at every step, as in `segment`,
    /// `predict` and `demo` (each window is encoded once per case and decoded again at a step
    /// that changes its prompts; without it each click step re-decodes the cached global
    /// embedding: faster, coarser).
    #[arg(long)]
    pub no_zoom_in: bool,
    /// Accepted for older scripts: the zoom-in is the default.
    #[arg(long, hide = true, conflicts_with = "no_zoom_in")]
    pub zoom_in: bool,
    /// With --corrector: also (or, without --compare, instead) run the prompt-feedback variant,
    /// feeding up to this many corrected voxels back to SegVol as point prompts.
    #[arg(long, default_value_t = 0)]
    pub feedback: usize,
    /// Add each class's name as SegVol's text prompt to its box and clicks (the weights must
    /// carry the text tower). Names come from --class-names, else from the manifest.json in
    /// the data folder or its parent (shared/data and shared/data/train have one).
    #[arg(long, conflicts_with = "predict_cmd")]
    pub text_from_class_names: bool,
    /// JSON with the class names per case (see --text-from-class-names).
    #[arg(long, requires = "text_from_class_names")]
    pub class_names: Option<PathBuf>,
    /// Click steps after the box step.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl EvalArgs {
    /// The engine settings: batch defaults (zoom-in on), this command's flags on top.
    pub fn options(&self) -> SessionOptions {
        SessionOptions {
            zoom_in: !self.no_zoom_in,
            feedback: self.feedback,
            ..self.clicks.on(SessionOptions::batch())
        }
    }
}

struct Eval {
    options: SessionOptions,
    files: ModelFiles,
    compare: bool,
    image: Vec<u8>,
    gts: Vec<u8>,
    dims: [usize; 3],
    spacing: [f64; 3],
    boxes: Option<Vec<Box3>>,
    opts: ProtocolOptions,
    /// Class names (text prompts) of this case, with its file name.
    names: Option<(crate::classnames::ClassNames, String)>,
    bar: ProgressBar,
}

/// (name, result, per-step log)
type Run = (&'static str, CaseResult, Vec<StepLog>);

/// The variants a run compares: (name, corrector, feedback points).
pub fn variants<B: Backend>(
    corrector: Option<&segvol_gru::GruCorrector<B>>,
    compare: bool,
    feedback: usize,
) -> Vec<(&'static str, Option<&segvol_gru::GruCorrector<B>>, usize)> {
    let mut v = Vec::new();
    if corrector.is_none() || compare {
        v.push(("segvol", None, 0));
    }
    if let Some(c) = corrector {
        if feedback == 0 || compare {
            v.push(("segvol+gru", Some(c), 0));
        }
        if feedback > 0 {
            v.push(("segvol+gru+feedback", Some(c), feedback));
        }
    }
    v
}

impl BackendTask for Eval {
    type Output = Result<Vec<Run>>;
    fn run<B: Backend>(self, device: &B::Device) -> Result<Vec<Run>> {
        let (model, corrector) = self.files.load::<B>(&self.bar, device)?;
        let texts = match &self.names {
            Some((names, case)) => crate::classnames::class_texts(&model, names, case)?,
            None => Vec::new(),
        };
        let mut runs = Vec::new();
        for (name, corr, feedback) in
            variants(corrector.as_ref(), self.compare, self.options.feedback)
        {
            self.bar
                .set_message(format!("{name}: running the protocol"));
            let mut p = SegVolPredictor::new(&model, corr, device)
                .with_options(SessionOptions {
                    feedback,
                    ..self.options
                })
                .with_class_texts(texts.clone());
            let r = run_case(
                &mut p,
                &self.image,
                &self.gts,
                self.dims,
                self.spacing,
                self.boxes.as_deref(),
                self.opts,
            )?;
            runs.push((name, r, p.log));
        }
        Ok(runs)
    }
}

/// The weights (and corrector, if `--compare` or `--feedback` want one) an eval runs with.
pub fn model_files(args: &EvalArgs) -> Result<ModelFiles> {
    let mut files = ModelFiles::new(&args.model, args.corrector.as_ref())?;
    let wants_corrector = args.compare || args.feedback > 0;
    if wants_corrector && files.corrector.is_none() {
        // The shipped model comes with its corrector; other weights need one named.
        if files.is_shipped() {
            files.corrector = Some(CorrectorSource::Shipped);
        } else if args.compare {
            bail!("--compare needs --corrector (a file, or `shipped`)");
        } else {
            bail!("--feedback needs --corrector (a file, or `shipped`)");
        }
    }
    Ok(files)
}

/// `segvol eval --case FILE` (`--data DIR` is [`crate::evaldata::run`]).
pub fn run(args: &EvalArgs, files: ModelFiles) -> Result<()> {
    let Some(case) = &args.case else {
        bail!("give --case FILE or --data DIR");
    };
    let path = case.display();
    let input = read_case(case, args.model.max_voxels)?;
    let gts = input
        .gts
        .with_context(|| format!("{path}: no `gts`: `segvol eval` needs ground truth"))?;
    let (image, dims, boxes) = (input.image, input.dims, input.boxes);
    let names = if args.text_from_class_names {
        let m = crate::classnames::manifest_path(args.class_names.as_deref(), case)?;
        let file = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Some((crate::classnames::read_class_names(&m)?, file))
    } else {
        None
    };
    let kind = args.model.backend()?;
    let bar = spinner();
    let runs = dispatch(
        kind,
        Eval {
            options: args.options(),
            files,
            compare: args.compare,
            image,
            gts: gts.data,
            dims,
            spacing: input.spacing,
            boxes,
            opts: ProtocolOptions {
                click_steps: args.steps,
                ..ProtocolOptions::default()
            },
            names,
            bar: bar.clone(),
        },
    )
    .with_context(|| format!("evaluating {path}"))?;
    bar.finish_and_clear();
    if args.json {
        let all: Vec<_> = runs
            .iter()
            .map(|(name, r, log)| {
                json!({
                    "model": name,
                    "dsc_auc": r.dsc_auc, "nsd_auc": r.nsd_auc,
                    "dsc_final": r.dsc_final, "nsd_final": r.nsd_final,
                    "total_seconds": r.total_seconds,
                    "steps": r.steps.iter().enumerate().map(|(i, s)| json!({
                        "step": i + 1, "dsc": s.dsc, "nsd": s.nsd, "class_dsc": s.class_dsc,
                        "seconds": s.seconds,
                    })).collect::<Vec<_>>(),
                    "calls": log.iter().map(|l| json!({
                        "step": l.step, "encode_s": l.encode_s, "decodes": l.decodes,
                        "decode_s": l.decode_s, "correction_rounds": l.rounds,
                        "correction_ms": l.correct_ms,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        out!(
            "{}",
            serde_json::to_string_pretty(&json!({"case": case, "runs": all}))?
        );
        return Ok(());
    }
    out!(
        "{} ({dims:?}, {} classes)",
        path,
        runs[0].1.steps[0].class_dsc.len()
    );
    for (name, r, log) in &runs {
        out!("\n{name}");
        out!("| step | prompt | DSC | NSD | seconds | decodes | corr. rounds | corr. ms |");
        out!("|---|---|---|---|---|---|---|---|");
        let has_box = r.steps[0].seconds > 0.0;
        let mut li = log.iter();
        for (i, s) in r.steps.iter().enumerate() {
            let l = if i == 0 && !has_box { None } else { li.next() };
            let prompt = if i == 0 {
                "box".to_string()
            } else {
                format!("click {i}")
            };
            out!(
                "| {} | {prompt} | {:.4} | {:.4} | {:.3} | {} | {} | {:.2} |",
                i + 1,
                s.dsc,
                s.nsd,
                s.seconds,
                l.map_or(0, |l| l.decodes),
                l.map_or(0, |l| l.rounds),
                l.map_or(0.0, |l| l.correct_ms)
            );
        }
        out!(
            "DSC-AUC {:.4}  NSD-AUC {:.4}  final DSC {:.4}  final NSD {:.4}  total {:.2} s",
            r.dsc_auc,
            r.nsd_auc,
            r.dsc_final,
            r.nsd_final,
            r.total_seconds
        );
    }
    Ok(())
}
