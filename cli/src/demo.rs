//! `segvol demo`: the whole interactive loop on a shipped sample with the shipped model, no
//! file needed. SegVol segments one structure from its box, then the CVPR25 simulator clicks
//! on the largest error and the model (with the GRU corrector) corrects, for 3 clicks; DSC and
//! NSD after each step, a NIfTI mask per step and a preview picture.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use segvol_backends::{Backend, BackendTask, dispatch};
use segvol_eval::protocol::{Box3, CaseResult, ProtocolOptions, run_case};
use segvol_harness::Recording;
use segvol_interactive::{SegVolPredictor, SessionOptions};
use segvol_io::{Volume, write_nifti};

use crate::case::{ModelArgs, ModelFiles, read_case, read_case_bytes, spinner};

/// The shipped sample: the abdominal MR of the training set's validation split (20×91×117,
/// 3 mm; TotalSegmentator 2.18.0 test data, Apache-2.0; labels are TotalSegmentator output).
/// The model never saw it in training.
const SAMPLE: &[u8] = include_bytes!("../../data/sample/mr_abdomen.npz");

/// Its class names (`shared/data/train/manifest.json`).
const SAMPLE_NAMES: [&str; 14] = [
    "gallbladder",
    "stomach",
    "pancreas",
    "small_bowel",
    "duodenum",
    "colon",
    "vertebrae",
    "intervertebral_discs",
    "spinal_cord",
    "inferior_vena_cava",
    "portal_vein_and_splenic_vein",
    "autochthon_left",
    "autochthon_right",
    "iliopsoas_right",
];

/// The structure the demo segments unless told otherwise: the vertebrae, the class of this
/// sample closest to the shipped model's validation mean (docs/model-card.md: mean DSC 0.43
/// after the box, 0.48 after three clicks over 43 held-out structures; here 0.38 → 0.50). The
/// right back muscle (`--class autochthon_right`) is among its best (0.71 → 0.72), the colon
/// among its hard ones (0.11 → 0.03), and the pancreas (the third model's demo class) loses
/// with its clicks (0.34 → 0.31).
const DEFAULT_CLASS: &str = "vertebrae";

/// `segvol demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// A challenge case with `gts` and `boxes` instead of the shipped sample.
    #[arg(long)]
    pub case: Option<PathBuf>,
    /// The structure: its label number, or (for the shipped sample) its name
    /// (default: vertebrae, typical of the shipped model).
    #[arg(long)]
    pub class: Option<String>,
    /// Simulated correction clicks after the box.
    #[arg(long, default_value_t = 3)]
    pub clicks: usize,
    /// Output folder for the masks and the preview.
    #[arg(long, default_value = "segvol-demo")]
    pub out: PathBuf,
    /// Leave the GRU corrector out (the default with the shipped model; see
    /// `segvol_models::CORRECTOR_BY_DEFAULT`).
    #[arg(long)]
    pub no_corrector: bool,
    /// Prompt feedback (GRU_CORRECTION.md §6): up to this many corrected voxels go back to
    /// SegVol as point prompts after each correction (with a corrector); 0 = the corrector's
    /// write-back alone, the default of every command.
    #[arg(long, default_value_t = 0)]
    pub feedback: usize,
    /// Skip SegVol's zoom-in (faster, coarser).
    #[arg(long)]
    pub no_zoom_in: bool,
    /// GRU corrector: a file or `shipped` (default: none; `segvol_models::CORRECTOR_BY_DEFAULT`).
    #[arg(long)]
    pub corrector: Option<PathBuf>,
    #[command(flatten)]
    pub click_region: crate::case::ClickArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

impl DemoArgs {
    /// The engine settings: batch defaults (zoom-in on), this command's flags on top.
    pub fn options(&self) -> SessionOptions {
        SessionOptions {
            zoom_in: !self.no_zoom_in,
            feedback: self.feedback,
            ..self.click_region.on(SessionOptions::batch())
        }
    }
}

struct Demo {
    files: ModelFiles,
    image: Vec<u8>,
    gt: Vec<u8>,
    dims: [usize; 3],
    spacing: [f64; 3],
    boxes: Vec<Box3>,
    clicks: usize,
    options: SessionOptions,
}

impl BackendTask for Demo {
    type Output = Result<(CaseResult, Vec<Vec<u8>>)>;
    fn run<B: Backend>(self, device: &B::Device) -> Self::Output {
        let bar = spinner();
        let (model, corrector) = self.files.load::<B>(&bar, device)?;
        bar.set_message("segmenting");
        let feedback = if corrector.is_some() {
            self.options.feedback
        } else {
            0
        };
        let mut p =
            SegVolPredictor::new(&model, corrector.as_ref(), device).with_options(SessionOptions {
                feedback,
                ..self.options
            });
        let mut rec = Recording::new(&mut p);
        let r = run_case(
            &mut rec,
            &self.image,
            &self.gt,
            self.dims,
            self.spacing,
            Some(&self.boxes),
            ProtocolOptions {
                click_steps: self.clicks,
                ..ProtocolOptions::default()
            },
        )?;
        bar.finish_and_clear();
        Ok((r, rec.masks))
    }
}

fn write_mask(path: &Path, mask: &[u8], dims: [usize; 3], spacing: [f64; 3]) -> Result<()> {
    let v = Volume::new(mask.to_vec(), dims, spacing)?;
    write_nifti(path, &v)?;
    Ok(())
}

/// Runs `segvol demo`.
pub fn run(a: &DemoArgs) -> Result<()> {
    let shown = a
        .case
        .as_ref()
        .map_or("the shipped sample (mr_abdomen)".to_string(), |p| {
            p.display().to_string()
        });
    // The shipped sample is read straight from the binary's bytes.
    let (input, names) = match &a.case {
        Some(p) => (read_case(p, u64::MAX), Vec::new()),
        None => (
            read_case_bytes(SAMPLE, Path::new(&shown)),
            SAMPLE_NAMES.iter().map(|s| s.to_string()).collect(),
        ),
    };
    let input = input.with_context(|| format!("reading {shown}"))?;
    let gts = input
        .gts
        .with_context(|| format!("{shown}: no `gts`: the demo scores against ground truth"))?;
    let boxes = input
        .boxes
        .with_context(|| format!("{shown}: no `boxes`: the demo starts from a box"))?;
    let class_arg = a.class.clone().unwrap_or_else(|| {
        if a.case.is_some() {
            "1".into()
        } else {
            DEFAULT_CLASS.into()
        }
    });
    let class: usize = match class_arg.parse::<usize>() {
        Ok(n) => n,
        Err(_) => match names.iter().position(|n| *n == class_arg) {
            Some(i) => i + 1,
            None if names.is_empty() => bail!("--class {class_arg}: give a label number"),
            None => bail!("--class {class_arg}: not one of {}", names.join(", ")),
        },
    };
    if class == 0 || class > boxes.len() {
        bail!("--class {class}: {shown} has classes 1..={}", boxes.len());
    }
    let label = u8::try_from(class).context("class number over 255")?;
    let gt: Vec<u8> = gts.data.iter().map(|&g| u8::from(g == label)).collect();
    let mut files = ModelFiles::new(&a.model, a.corrector.as_ref())?.with_default_corrector();
    if a.no_corrector {
        files.corrector = None;
    }
    let with_corrector = files.corrector.is_some();
    let name = names
        .get(class - 1)
        .cloned()
        .unwrap_or_else(|| format!("class {class}"));
    out!(
        "segvol demo: {name} (label {class}) in {shown}, {:?} voxels at {:?} mm",
        input.dims,
        input.spacing
    );
    out!(
        "model: {}; corrector: {}; zoom-in: {}",
        if files.is_shipped() {
            "shipped SegVol small".to_string()
        } else {
            a.model
                .weights
                .as_ref()
                .map(|w| w.display().to_string())
                .unwrap_or_default()
        },
        match (with_corrector, a.feedback) {
            (false, _) => "off".to_string(),
            (true, 0) => "on".to_string(),
            (true, m) => format!("on, prompt feedback of up to {m} points"),
        },
        if a.no_zoom_in { "off" } else { "on" }
    );
    let (r, masks) = dispatch(
        a.model.backend()?,
        Demo {
            files,
            image: input.image.clone(),
            gt: gt.clone(),
            dims: input.dims,
            spacing: input.spacing,
            boxes: vec![boxes[class - 1]],
            clicks: a.clicks,
            options: a.options(),
        },
    )?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("{}: cannot create the output folder", a.out.display()))?;
    let b = boxes[class - 1];
    out!(
        "{:<6} {:<22} {:>7} {:>7} {:>8}",
        "step",
        "prompt",
        "DSC",
        "NSD",
        "seconds"
    );
    let click_of = |k: usize| -> String {
        let c = &r.clicks[0];
        let (mut f, mut g) = (0usize, 0usize);
        for (i, o) in c.order.iter().enumerate() {
            let this = match o {
                Some(true) => {
                    f += 1;
                    c.fg.get(f - 1).map(|p| format!("fg {p:?}"))
                }
                Some(false) => {
                    g += 1;
                    c.bg.get(g - 1).map(|p| format!("bg {p:?}"))
                }
                None => Some("none (no error)".into()),
            };
            if i + 1 == k {
                return this.unwrap_or_default();
            }
        }
        String::new()
    };
    let mut written = Vec::new();
    for (i, s) in r.steps.iter().enumerate() {
        let prompt = if i == 0 {
            format!("box z{}..{}", b.lo[0], b.hi[0])
        } else {
            click_of(i)
        };
        out!(
            "{:<6} {:<22} {:>7.4} {:>7.4} {:>8.2}",
            if i == 0 {
                "box".to_string()
            } else {
                format!("click{i}")
            },
            prompt,
            s.dsc,
            s.nsd,
            s.seconds
        );
        if let Some(m) = masks.get(i) {
            let f = a.out.join(if i == 0 {
                "mask_box.nii.gz".to_string()
            } else {
                format!("mask_click{i}.nii.gz")
            });
            write_mask(&f, m, input.dims, input.spacing)?;
            written.push(f);
        }
    }
    let img = a.out.join("image.nii.gz");
    write_nifti(&img, &input.volume)?;
    let preview = a.out.join("preview.png");
    // The clicks in the order they were made (a step without an error has none).
    let mut made: Vec<Option<([usize; 3], bool)>> = Vec::new();
    if let Some(c) = r.clicks.first() {
        let (mut f, mut g) = (c.fg.iter(), c.bg.iter());
        for o in &c.order {
            made.push(match o {
                Some(true) => f.next().map(|p| (*p, true)),
                Some(false) => g.next().map(|p| (*p, false)),
                None => None,
            });
        }
    }
    let rows: Vec<segvol_harness::preview::DemoRow<'_>> = masks
        .iter()
        .enumerate()
        .map(|(i, m)| segvol_harness::preview::DemoRow {
            mask: m,
            clicks: made.iter().take(i).flatten().copied().collect(),
        })
        .collect();
    segvol_harness::preview::write_demo_montage(
        &preview,
        &input.volume.data,
        input.dims,
        input.spacing,
        &rows,
        &gt,
        (b.lo, b.hi),
        240,
    )?;
    out!(
        "DSC_AUC {:.4}  NSD_AUC {:.4}  (over the clicks, CVPR25 rule)",
        r.dsc_auc,
        r.nsd_auc
    );
    out!(
        "wrote {} masks, {} and {} (rows: box, then each click; red = mask, green = \
         ground-truth outline, yellow = box, dots = clicks: cyan foreground, magenta background, \
         the step's own ringed)",
        written.len(),
        img.display(),
        preview.display()
    );
    Ok(())
}
