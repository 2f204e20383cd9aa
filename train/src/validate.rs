//! Validation on the held-out cases: a quick box-step DSC during training, and the final table
//! of the CVPR25 protocol (box + clicks) for three variants on the same boxes:
//! (a) SegVol with the clicks as point prompts, (b) (a) + the GRU corrector, (c) the
//! prompt-feedback variant (GRU_CORRECTION.md §6, D9).

use std::collections::BTreeMap;

use burn::tensor::backend::Backend;
use segvol_core::SegVol;
use segvol_core::pipeline::Session;
use segvol_eval::protocol::{ProtocolOptions, run_case};
use segvol_gru::GruCorrector;
use segvol_interactive::{SegVolPredictor, SessionOptions};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::config::ValidationSettings;
use crate::data::ValCase;

/// The quick validation: box step, zoom-out only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuickVal {
    /// Mean DSC over every validation class.
    pub mean_dsc: f64,
    /// Mean DSC per case.
    pub per_case: BTreeMap<String, f64>,
}

/// DSC of the box-step prediction (zoom-out pass, the case's own boxes) for every class of
/// every validation case.
///
/// # Errors
/// [`TrainError::Model`] when SegVol rejects a case.
pub fn quick_validate<B: Backend>(
    model: &SegVol<B>,
    val: &[ValCase],
    device: &B::Device,
) -> Result<QuickVal, TrainError> {
    let mut all = Vec::new();
    let mut per_case = BTreeMap::new();
    for case in val {
        let image: Vec<f32> = case.image.iter().map(|&v| f32::from(v)).collect();
        let cover: Vec<[usize; 3]> = case.boxes.iter().flat_map(|b| [b.lo, b.hi]).collect();
        let session = Session::new(model, &image, case.dims, &cover, device)
            .map_err(|e| TrainError::Model(format!("{}: {e}", case.name)))?;
        let mut ds = Vec::new();
        for (i, b) in case.boxes.iter().enumerate() {
            let logits = session
                .predict(Some((b.lo, b.hi)), &[])
                .map_err(|e| TrainError::Model(format!("{}: {e}", case.name)))?;
            let label = (i + 1) as u8;
            let pred: Vec<bool> = logits.iter().map(|&l| l > 0.0).collect();
            let gt: Vec<bool> = case.gts.iter().map(|&g| g == label).collect();
            ds.push(segvol_eval::dice(&pred, &gt));
        }
        per_case.insert(
            case.name.clone(),
            ds.iter().sum::<f64>() / ds.len().max(1) as f64,
        );
        all.extend(ds);
    }
    Ok(QuickVal {
        mean_dsc: all.iter().sum::<f64>() / all.len().max(1) as f64,
        per_case,
    })
}

/// A reference "model" that fills each class's box (the challenge box: its z range with the
/// in-plane box of the middle slice) and ignores clicks: what a box alone is worth.
pub struct BoxFill;

impl segvol_eval::protocol::Predictor for BoxFill {
    fn predict(
        &mut self,
        req: &segvol_eval::protocol::PredictRequest<'_>,
    ) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
        let [_, h, w] = req.dims;
        let mut out = vec![0u8; req.dims.iter().product()];
        for (i, b) in req.boxes.unwrap_or_default().iter().enumerate() {
            let label = u8::try_from(i + 1)?;
            for z in b.lo[0]..=b.hi[0] {
                for y in b.lo[1]..=b.hi[1] {
                    let row = (z * h + y) * w;
                    out[row + b.lo[2]..=row + b.hi[2]].fill(label);
                }
            }
        }
        Ok(out)
    }
}

/// One class under one variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassRow {
    /// Case name.
    pub case: String,
    /// Class name.
    pub class: String,
    /// DSC after each step (box, click 1..5).
    pub dsc: Vec<f64>,
    /// NSD after each step.
    pub nsd: Vec<f64>,
    /// `0.5·d₁ + d₂ + d₃ + d₄ + 0.5·d₅` over clicks 1..5 (CHALLENGE.md).
    pub dsc_auc: f64,
    /// The same for NSD.
    pub nsd_auc: f64,
}

/// One variant over every validation class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantReport {
    /// `a`, `b` or `c` with a description.
    pub name: String,
    /// Per class.
    pub classes: Vec<ClassRow>,
    /// Mean DSC per step over the classes.
    pub mean_dsc: Vec<f64>,
    /// Mean NSD per step.
    pub mean_nsd: Vec<f64>,
    /// Mean DSC-AUC.
    pub mean_dsc_auc: f64,
    /// Mean NSD-AUC.
    pub mean_nsd_auc: f64,
    /// Seconds the variant took.
    pub seconds: f64,
}

fn auc(v: &[f64]) -> f64 {
    v.windows(2).map(|w| (w[0] + w[1]) / 2.0).sum()
}

/// Runs the protocol for one variant over every validation case.
///
/// # Errors
/// [`TrainError::Model`] when the protocol fails on a case.
#[allow(clippy::too_many_arguments)]
pub fn run_variant<B: Backend>(
    name: &str,
    model: &SegVol<B>,
    corrector: Option<&GruCorrector<B>>,
    feedback: usize,
    val: &[ValCase],
    settings: &ValidationSettings,
    device: &B::Device,
    progress: &mut dyn FnMut(&str),
) -> Result<VariantReport, TrainError> {
    let mut make = || -> Box<dyn segvol_eval::protocol::Predictor + '_> {
        Box::new(
            SegVolPredictor::new(model, corrector, device).with_options(SessionOptions {
                zoom_in: settings.zoom_in,
                feedback,
                ..SessionOptions::batch()
            }),
        )
    };
    run_predictor(name, &mut make, val, settings, progress)
}

/// Runs the protocol for any predictor (a fresh one per case from `make`).
///
/// # Errors
/// [`TrainError::Model`] when the protocol fails on a case.
pub fn run_predictor<'p>(
    name: &str,
    make: &mut dyn FnMut() -> Box<dyn segvol_eval::protocol::Predictor + 'p>,
    val: &[ValCase],
    settings: &ValidationSettings,
    progress: &mut dyn FnMut(&str),
) -> Result<VariantReport, TrainError> {
    let t = std::time::Instant::now();
    let mut classes = Vec::new();
    for case in val {
        progress(&format!("{name}: {}", case.name));
        let mut p = make();
        let r = run_case(
            p.as_mut(),
            &case.image,
            &case.gts,
            case.dims,
            case.spacing,
            Some(&case.boxes),
            ProtocolOptions {
                click_steps: settings.click_steps,
                ..ProtocolOptions::default()
            },
        )
        .map_err(|e| TrainError::Model(format!("{}: {e}", case.name)))?;
        for (c, cname) in case.names.iter().enumerate() {
            let dsc: Vec<f64> = r.steps.iter().map(|s| s.class_dsc[c]).collect();
            let nsd: Vec<f64> = r.steps.iter().map(|s| s.class_nsd[c]).collect();
            classes.push(ClassRow {
                case: case.name.clone(),
                class: cname.clone(),
                dsc_auc: auc(&dsc[1..]),
                nsd_auc: auc(&nsd[1..]),
                dsc,
                nsd,
            });
        }
    }
    let steps = settings.click_steps + 1;
    let n = classes.len().max(1) as f64;
    let mean_at = |f: &dyn Fn(&ClassRow) -> f64| classes.iter().map(f).sum::<f64>() / n;
    Ok(VariantReport {
        name: name.to_string(),
        mean_dsc: (0..steps).map(|i| mean_at(&|c| c.dsc[i])).collect(),
        mean_nsd: (0..steps).map(|i| mean_at(&|c| c.nsd[i])).collect(),
        mean_dsc_auc: mean_at(&|c| c.dsc_auc),
        mean_nsd_auc: mean_at(&|c| c.nsd_auc),
        seconds: t.elapsed().as_secs_f64(),
        classes,
    })
}

/// The three variants (the corrector ones only when there is a corrector).
///
/// # Errors
/// As [`run_variant`].
pub fn validate_protocol<B: Backend>(
    model: &SegVol<B>,
    corrector: Option<&GruCorrector<B>>,
    val: &[ValCase],
    settings: &ValidationSettings,
    device: &B::Device,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<VariantReport>, TrainError> {
    let mut out = vec![run_predictor(
        "box: the box filled (reference, no model)",
        &mut || Box::new(BoxFill),
        val,
        settings,
        progress,
    )?];
    out.push(run_variant(
        "a: SegVol, clicks as points",
        model,
        None,
        0,
        val,
        settings,
        device,
        progress,
    )?);
    if let Some(c) = corrector {
        out.push(run_variant(
            "b: (a) + GRU corrector",
            model,
            Some(c),
            0,
            val,
            settings,
            device,
            progress,
        )?);
        if settings.feedback > 0 {
            out.push(run_variant(
                &format!("c: prompt feedback (M = {})", settings.feedback),
                model,
                Some(c),
                settings.feedback,
                val,
                settings,
                device,
                progress,
            )?);
        }
    }
    Ok(out)
}

/// The report as a Markdown table: mean per step and AUCs per variant, then per class.
pub fn markdown(reports: &[VariantReport]) -> String {
    let mut s = String::new();
    s.push_str("| variant | DSC box | DSC c1 | c2 | c3 | c4 | c5 | DSC_AUC | NSD box | NSD c5 | NSD_AUC |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in reports {
        let d = |i: usize| r.mean_dsc.get(i).copied().unwrap_or(f64::NAN);
        let last = r.mean_nsd.len().saturating_sub(1);
        s.push_str(&format!(
            "| {} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} |\n",
            r.name,
            d(0),
            d(1),
            d(2),
            d(3),
            d(4),
            d(5),
            r.mean_dsc_auc,
            r.mean_nsd.first().copied().unwrap_or(f64::NAN),
            r.mean_nsd.get(last).copied().unwrap_or(f64::NAN),
            r.mean_nsd_auc
        ));
    }
    s.push_str("\nPer class (DSC after the box / after click 5 / DSC_AUC, per variant):\n\n");
    s.push_str("| case | class |");
    for r in reports {
        s.push_str(&format!(" {} |", r.name.split(':').next().unwrap_or("?")));
    }
    s.push('\n');
    s.push_str("|---|---|");
    for _ in reports {
        s.push_str("---|");
    }
    s.push('\n');
    if let Some(first) = reports.first() {
        for (i, row) in first.classes.iter().enumerate() {
            s.push_str(&format!("| {} | {} |", row.case, row.class));
            for r in reports {
                if let Some(c) = r.classes.get(i) {
                    let last = c.dsc.last().copied().unwrap_or(f64::NAN);
                    s.push_str(&format!(
                        " {:.3} / {:.3} / {:.3} |",
                        c.dsc[0], last, c.dsc_auc
                    ));
                }
            }
            s.push('\n');
        }
    }
    s
}
