//! The CVPR 2025 interactive protocol (CHALLENGE.md §4, §6.3–6.4): a box step, then five click
//! steps with clicks simulated from the previous prediction, DSC and NSD after every step,
//! DSC-AUC / NSD-AUC over clicks 1..5, and per-step wall time. Any model plugs in through
//! [`Predictor`].

use std::time::Instant;

use crate::click::simulate_click;
use crate::metrics::{dsc, nsd};

/// A box with both corners inclusive, voxel indices `[z, y, x]` (the challenge's
/// `[z_min, z_mid_y_min, z_mid_x_min] ..= [z_max, z_mid_y_max, z_mid_x_max]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Box3 {
    /// Low corner.
    pub lo: [usize; 3],
    /// High corner (inclusive).
    pub hi: [usize; 3],
}

/// One class's accumulated clicks, in time order per list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Clicks {
    /// Foreground clicks `[z, y, x]`.
    pub fg: Vec<[usize; 3]>,
    /// Background clicks `[z, y, x]`.
    pub bg: Vec<[usize; 3]>,
    /// Per step, which list got that step's click (`Some(true)` fg, `Some(false)` bg, `None`
    /// no click because the class had no error).
    pub order: Vec<Option<bool>>,
}

/// What a model is given at one step. Index `i` of `boxes` / `clicks` is class `i + 1`.
#[derive(Debug, Clone, Copy)]
pub struct PredictRequest<'a> {
    /// Shape `[z, y, x]`.
    pub dims: [usize; 3],
    /// Voxel spacing as stored in the case.
    pub spacing: [f64; 3],
    /// The image (challenge `imgs`, 0..255), raster order.
    pub image: &'a [u8],
    /// Number of classes.
    pub n_classes: usize,
    /// One box per class, when the case has boxes.
    pub boxes: Option<&'a [Box3]>,
    /// Accumulated clicks per class (empty at the box step).
    pub clicks: &'a [Clicks],
    /// The previous step's prediction (`None` at the first step the model is run).
    pub prev_pred: Option<&'a [u8]>,
    /// Step number, 1 (box) to 6 (fifth click).
    pub step: usize,
}

/// A segmentation model under the protocol: returns a label map (0 = background, class `i`
/// = label `i`) of `dims` voxels.
pub trait Predictor {
    /// Predicts all classes for one step.
    ///
    /// # Errors
    /// Anything the model reports; the runner stops and returns it.
    fn predict(
        &mut self,
        req: &PredictRequest<'_>,
    ) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>>;
}

/// Metrics and time of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepResult {
    /// Mean DSC over the GT classes.
    pub dsc: f64,
    /// Mean NSD over the GT classes, 0 unless `dsc > 0.2` (the evaluator's gate).
    pub nsd: f64,
    /// DSC per class.
    pub class_dsc: Vec<f64>,
    /// NSD per class (all 0 when the mean DSC is ≤ 0.2, as the evaluator's gate).
    pub class_nsd: Vec<f64>,
    /// Wall time of the model call, seconds (0 for a skipped box step).
    pub seconds: f64,
}

/// The whole case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    /// Steps 1 (box) .. 6 (fifth click).
    pub steps: Vec<StepResult>,
    /// `0.5·d₁ + d₂ + d₃ + d₄ + 0.5·d₅` over the DSC after clicks 1..5.
    pub dsc_auc: f64,
    /// The same for NSD.
    pub nsd_auc: f64,
    /// DSC after click 5.
    pub dsc_final: f64,
    /// NSD after click 5.
    pub nsd_final: f64,
    /// The clicks the simulator made, per class.
    pub clicks: Vec<Clicks>,
    /// Sum of the step times.
    pub total_seconds: f64,
}

/// Protocol settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProtocolOptions {
    /// NSD tolerance in mm (2.0).
    pub nsd_tolerance_mm: f64,
    /// Click steps after the box step (5).
    pub click_steps: usize,
}

impl Default for ProtocolOptions {
    fn default() -> Self {
        ProtocolOptions {
            nsd_tolerance_mm: 2.0,
            click_steps: 5,
        }
    }
}

/// Why a case could not be run.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Image, ground truth and dims disagree, or the boxes are not one per class.
    Shape(String),
    /// The predictor failed at this step.
    Predictor {
        /// The step (1..=6).
        step: usize,
        /// Its error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtocolError::Shape(s) => write!(f, "{s}"),
            ProtocolError::Predictor { step, source } => {
                write!(f, "predictor failed at step {step}: {source}")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

fn score(
    segs: &[u8],
    gts: &[u8],
    dims: [usize; 3],
    spacing: [f64; 3],
    n: usize,
    tol: f64,
    seconds: f64,
) -> StepResult {
    let mut class_dsc = Vec::with_capacity(n);
    let mut masks = Vec::with_capacity(n);
    for c in 1..=n as u8 {
        let p: Vec<bool> = segs.iter().map(|&v| v == c).collect();
        let g: Vec<bool> = gts.iter().map(|&v| v == c).collect();
        class_dsc.push(dsc(&p, &g));
        masks.push((p, g));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let d = mean(&class_dsc);
    let class_nsd: Vec<f64> = if d > 0.2 {
        masks
            .iter()
            .map(|(p, g)| nsd(p, g, dims, spacing, tol))
            .collect()
    } else {
        vec![0.0; n]
    };
    StepResult {
        dsc: d,
        nsd: mean(&class_nsd),
        class_dsc,
        class_nsd,
        seconds,
    }
}

/// Runs one case through the protocol. `gts` labels must be `0..=n` with every class present
/// (the challenge's consecutive labels); `boxes`, when given, holds one box per class.
///
/// # Errors
/// [`ProtocolError::Shape`] for inconsistent inputs, [`ProtocolError::Predictor`] when the
/// model fails or returns a mask of the wrong size.
pub fn run_case(
    predictor: &mut dyn Predictor,
    image: &[u8],
    gts: &[u8],
    dims: [usize; 3],
    spacing: [f64; 3],
    boxes: Option<&[Box3]>,
    opts: ProtocolOptions,
) -> Result<CaseResult, ProtocolError> {
    let nvox: usize = dims.iter().product();
    if image.len() != nvox || gts.len() != nvox {
        return Err(ProtocolError::Shape(format!(
            "image has {} voxels and gts {}, dims {dims:?} need {nvox}",
            image.len(),
            gts.len()
        )));
    }
    let n = gts.iter().copied().max().unwrap_or(0) as usize;
    if let Some(b) = boxes
        && b.len() != n
    {
        return Err(ProtocolError::Shape(format!(
            "{} boxes for {n} classes",
            b.len()
        )));
    }
    let mut clicks = vec![Clicks::default(); n];
    let mut steps = Vec::with_capacity(1 + opts.click_steps);
    let call = |p: &mut dyn Predictor,
                req: &PredictRequest<'_>|
     -> Result<(Vec<u8>, f64), ProtocolError> {
        let t = Instant::now();
        let out = p.predict(req).map_err(|source| ProtocolError::Predictor {
            step: req.step,
            source,
        })?;
        let secs = t.elapsed().as_secs_f64();
        if out.len() != nvox {
            return Err(ProtocolError::Predictor {
                step: req.step,
                source: format!("returned {} voxels, expected {nvox}", out.len()).into(),
            });
        }
        Ok((out, secs))
    };
    let scored =
        |segs: &[u8], secs: f64| score(segs, gts, dims, spacing, n, opts.nsd_tolerance_mm, secs);
    // The fields every step shares; each step fills in clicks, prev_pred and its number.
    let template = PredictRequest {
        dims,
        spacing,
        image,
        n_classes: n,
        boxes,
        clicks: &[],
        prev_pred: None,
        step: 1,
    };
    // Step 1: the box (skipped, scoring 0, when the case has no boxes).
    let mut segs = vec![0u8; nvox];
    if boxes.is_some() {
        let (out, secs) = call(
            predictor,
            &PredictRequest {
                clicks: &clicks,
                ..template
            },
        )?;
        segs = out;
        steps.push(scored(&segs, secs));
    } else {
        steps.push(StepResult {
            dsc: 0.0,
            nsd: 0.0,
            class_dsc: vec![0.0; n],
            class_nsd: vec![0.0; n],
            seconds: 0.0,
        });
    }
    // Steps 2..: one simulated click per class with error, then the model.
    for k in 0..opts.click_steps {
        for (c, cl) in clicks.iter_mut().enumerate() {
            let class = (c + 1) as u8;
            let p: Vec<bool> = segs.iter().map(|&v| v == class).collect();
            let g: Vec<bool> = gts.iter().map(|&v| v == class).collect();
            match simulate_click(&p, &g, dims) {
                Some(click) => {
                    if click.foreground {
                        cl.fg.push(click.zyx);
                    } else {
                        cl.bg.push(click.zyx);
                    }
                    cl.order.push(Some(click.foreground));
                }
                None => cl.order.push(None),
            }
        }
        // The evaluator passes zeros when the previous step wrote nothing.
        let (out, secs) = call(
            predictor,
            &PredictRequest {
                clicks: &clicks,
                prev_pred: Some(&segs),
                step: k + 2,
                ..template
            },
        )?;
        segs = out;
        steps.push(scored(&segs, secs));
    }
    let clicks_only = &steps[1..];
    let auc = |f: &dyn Fn(&StepResult) -> f64| -> f64 {
        let v: Vec<f64> = clicks_only.iter().map(f).collect();
        if v.len() < 2 {
            return v.first().copied().unwrap_or(0.0);
        }
        // Trapezoid rule with unit spacing.
        v.windows(2).map(|w| (w[0] + w[1]) / 2.0).sum()
    };
    let last = clicks_only
        .last()
        .cloned()
        .unwrap_or_else(|| steps[0].clone());
    Ok(CaseResult {
        dsc_auc: auc(&|s| s.dsc),
        nsd_auc: auc(&|s| s.nsd),
        dsc_final: last.dsc,
        nsd_final: last.nsd,
        total_seconds: steps.iter().map(|s| s.seconds).sum(),
        steps,
        clicks,
    })
}

/// The official evaluator's `metrics.csv` header for `steps` steps (6 in the challenge):
/// `CaseName,TotalRunningTime,RunningTime_1..,DSC_AUC,NSD_AUC,DSC_Final,NSD_Final,DSC_1..,
/// NSD_1..,num_class,runtime_upperbound`.
pub fn csv_header(steps: usize) -> String {
    let mut cols = vec!["CaseName".to_string(), "TotalRunningTime".to_string()];
    cols.extend((1..=steps).map(|i| format!("RunningTime_{i}")));
    cols.extend(["DSC_AUC", "NSD_AUC", "DSC_Final", "NSD_Final"].map(String::from));
    cols.extend((1..=steps).map(|i| format!("DSC_{i}")));
    cols.extend((1..=steps).map(|i| format!("NSD_{i}")));
    cols.extend(["num_class", "runtime_upperbound"].map(String::from));
    cols.join(",")
}

/// One `metrics.csv` row for a case (`name` with its `.npz`, as the evaluator writes it);
/// `runtime_upperbound` is the challenge's 90 s per class.
pub fn csv_row(name: &str, r: &CaseResult) -> String {
    let n = r.steps.first().map_or(0, |s| s.class_dsc.len());
    let mut v = vec![name.to_string(), format!("{}", r.total_seconds)];
    v.extend(r.steps.iter().map(|s| format!("{}", s.seconds)));
    v.extend([r.dsc_auc, r.nsd_auc, r.dsc_final, r.nsd_final].map(|x| format!("{x}")));
    v.extend(r.steps.iter().map(|s| format!("{}", s.dsc)));
    v.extend(r.steps.iter().map(|s| format!("{}", s.nsd)));
    v.push(n.to_string());
    v.push((90 * n).to_string());
    v.join(",")
}
