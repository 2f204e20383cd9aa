//! `segvol segment`: a box (and clicks) in, a mask with the image's geometry out.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::ProgressBar;
use segvol_backends::{Backend, BackendTask, dispatch};
use segvol_core::pipeline::{Session, VoxelClick, check_prompts};
use segvol_eval::protocol::{Box3, Clicks, PredictRequest, Predictor};
use segvol_gru::CorrectionSession;
use segvol_io::npy::{NpyArray, NpyData};
use segvol_io::{FileKind, write_nifti, write_segs};

use crate::case::{CaseInput, ModelArgs, ModelFiles, read_case, spinner};
use crate::sample::parse_clicks;
use segvol_harness::preview::write_preview;
use segvol_interactive::{
    BoxIntensity, ObjectPrompts, SegVolPredictor, SessionOptions, StepLog, object_logits,
};

#[derive(Args, Debug)]
pub struct SegmentArgs {
    /// Image: .nii / .nii.gz, a challenge .npz (`imgs`), a 3-D .npy, or DICOM (a folder of
    /// slices, a DICOMDIR or a multi-frame .dcm).
    #[arg(long)]
    pub image: PathBuf,
    /// Which series of a DICOM folder: its number in `segvol info`'s listing or its UID
    /// (needed when the folder holds several image series).
    #[arg(long)]
    pub series: Option<segvol_io::dicom::SeriesPick>,
    /// Box `z0,y0,x0,z1,y1,x1` in voxel indices of the image, max inclusive. With a challenge
    /// .npz and neither --box nor --points, every class of the case is segmented from its own
    /// `boxes` and accumulated `clicks` (a challenge step; label map out).
    #[arg(long = "box")]
    pub box_: Option<String>,
    /// Clicks `z,y,x,fg;z,y,x,bg` in voxel indices.
    #[arg(long, default_value = "")]
    pub points: String,
    /// Structure names as text prompts (SegVol's CLIP text tower; the weights must carry it, as
    /// the official checkpoint does). One name alone segments it in the whole volume; with
    /// --box / --points the prompts are combined, as SegVol does. Several names, comma
    /// separated (`liver,spleen`), give a label map: label i for the i-th name, each voxel to
    /// the name with the highest positive logit.
    #[arg(long, value_delimiter = ',')]
    pub text: Vec<String>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// The mask: .nii / .nii.gz (the image's geometry), .npz (challenge `segs`), or for a
    /// DICOM image a DICOM SEG (`.dcm`) referencing its series.
    #[arg(long)]
    pub out: PathBuf,
    /// The segment's name in a DICOM SEG (coded as the structure when known, e.g. liver;
    /// default: the --text names, else "SegVol segmentation").
    #[arg(long)]
    pub name: Option<String>,
    /// Also write the logits on the image grid as float32 .npy.
    #[arg(long)]
    pub logits: Option<PathBuf>,
    /// Also write a PNG montage (axial, coronal, sagittal through the mask) with the mask in red.
    #[arg(long)]
    pub preview: Option<PathBuf>,
    /// Skip the zoom-in refinement (sliding window over the ROI at native resolution, one
    /// encoder pass per window); the result is then the global zoom-out pass.
    #[arg(long)]
    pub no_zoom_in: bool,
    /// GRU corrector (a file, or `shipped`): after the prediction, run one correction round per click
    /// (replayed in click order, so the hidden state is rebuilt; GRU_CORRECTION.md §6, §9.2).
    #[arg(long)]
    pub corrector: Option<PathBuf>,
    /// (A challenge case's own clicks only: one-shot --points are prompts, not corrections.)
    #[command(flatten)]
    pub clicks: crate::case::ClickArgs,
}

impl SegmentArgs {
    /// The engine settings: batch defaults (zoom-in on), this command's flags on top.
    pub fn options(&self) -> SessionOptions {
        SessionOptions {
            zoom_in: !self.no_zoom_in,
            ..self.clicks.on(SessionOptions::batch())
        }
    }
}

struct Segment {
    /// Zoom-in, prompt feedback and the box's intensities (the click rules do not apply to
    /// one-shot prompts).
    options: SessionOptions,
    files: ModelFiles,
    image: Vec<f32>,
    dims: [usize; 3],
    boxes: Option<([usize; 3], [usize; 3])>,
    clicks: Vec<VoxelClick>,
    /// Text prompts: one prediction per name (none: one prediction without text).
    text: Vec<String>,
    bar: ProgressBar,
}

impl BackendTask for Segment {
    /// Logits on the image grid, one per name (one when there is no text).
    type Output = Result<Vec<Vec<f32>>>;
    fn run<B: Backend>(self, device: &B::Device) -> Result<Vec<Vec<f32>>> {
        let (model, corrector) = self.files.load::<B>(&self.bar, device)?;
        // Refuse a bad box or click before any model work, then one encoder pass on the crop
        // that covers the prompts (SEGVOL.md §9.1).
        check_prompts(self.dims, self.boxes, &self.clicks, !self.text.is_empty())?;
        let mut texts = Vec::with_capacity(self.text.len());
        for name in &self.text {
            self.bar.set_message(format!("encoding the text {name:?}"));
            texts.push(Some(model.embed_text(name)?));
        }
        if texts.is_empty() {
            texts.push(None);
        }
        let mut cover: Vec<[usize; 3]> = self.clicks.iter().map(|c| c.zyx).collect();
        if let Some((b0, b1)) = self.boxes {
            cover.extend([b0, b1]);
        }
        self.bar.set_message("encoding (zoom-out pass)");
        let mut session = Session::new(&model, &self.image, self.dims, &cover, device)?;
        // One-shot prompts, not corrections: no previous mask, and clicks that stick do not
        // apply (logits are returned, for --logits and the label map of several names).
        let mut out = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            if let Some(name) = self.text.get(i) {
                self.bar.set_message(format!("segmenting {name:?}"));
            }
            // The corrector corrects clicks: without any, no correction session is made.
            let mut corr = corrector
                .as_ref()
                .filter(|_| !self.clicks.is_empty())
                .map(|c| CorrectionSession::new(c, device));
            if corr.is_some() {
                self.bar.set_message(format!(
                    "decoding and correcting {} click(s)",
                    self.clicks.len()
                ));
            }
            let bar = &self.bar;
            let logits = object_logits(
                &mut session,
                ObjectPrompts {
                    bbox: self.boxes,
                    clicks: &self.clicks,
                    text: text.as_deref(),
                    previous: None,
                },
                corr.as_mut(),
                self.options,
                self.dims,
                &mut StepLog::default(),
                &mut |d, t| bar.set_message(format!("zoom-in: window {d}/{t}")),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut logits = logits;
            // A box's own intensities and its smoothness move its logits as in every other
            // command (the click rules, clicks that teach included, do not apply to one-shot
            // prompts).
            if let Some(b) = self.boxes.filter(|_| self.options.box_intensity) {
                let value = |i: usize| self.image.get(i).map_or(f64::NAN, |&v| f64::from(v));
                let [_, h, w] = self.dims;
                let at = |p: [usize; 3]| logits[(p[0] * h + p[1]) * w + p[2]];
                // One-shot points are prompts, not corrections: no clicks teach.
                let fit = self.options.intensity_fit(&[]);
                if let Some(m) = BoxIntensity::fit_with(self.dims, b, value, at, fit) {
                    m.add_to(&mut logits, value);
                }
            }
            if let Some(b) = self.boxes.filter(|_| self.options.box_smoothing) {
                segvol_interactive::smooth_box_in(&mut logits, self.dims, b);
            }
            out.push(logits);
        }
        Ok(out)
    }
}

/// A challenge step: every class of the case, from its boxes and accumulated clicks.
struct CaseStep {
    options: SessionOptions,
    files: ModelFiles,
    image: Vec<u8>,
    dims: [usize; 3],
    spacing: [f64; 3],
    boxes: Option<Vec<Box3>>,
    clicks: Vec<Clicks>,
    prev_pred: Option<Vec<u8>>,
    bar: ProgressBar,
}

impl BackendTask for CaseStep {
    type Output = Result<Vec<u8>>;
    fn run<B: Backend>(self, device: &B::Device) -> Result<Vec<u8>> {
        let (model, corrector) = self.files.load::<B>(&self.bar, device)?;
        self.bar.set_message("segmenting");
        challenge_step(
            &model,
            corrector.as_ref(),
            self.options,
            &self.image,
            self.dims,
            self.spacing,
            self.boxes.as_deref(),
            &self.clicks,
            self.prev_pred.as_deref(),
            device,
        )
    }
}

/// One challenge step on a case: every class from its box (if any) and accumulated clicks,
/// the corrector's hidden state rebuilt by replaying the clicks; later classes overwrite
/// earlier ones.
///
/// # Errors
/// The model's error.
#[allow(clippy::too_many_arguments)]
pub fn challenge_step<B: Backend>(
    model: &segvol_core::SegVol<B>,
    corrector: Option<&segvol_gru::GruCorrector<B>>,
    options: SessionOptions,
    image: &[u8],
    dims: [usize; 3],
    spacing: [f64; 3],
    boxes: Option<&[Box3]>,
    clicks: &[Clicks],
    prev_pred: Option<&[u8]>,
    device: &B::Device,
) -> Result<Vec<u8>> {
    let n_classes = boxes.map_or(clicks.len(), |b| b.len().max(clicks.len()));
    let mut clicks = clicks.to_vec();
    clicks.resize(n_classes, Clicks::default());
    let mut p = SegVolPredictor::new(model, corrector, device).with_options(options);
    let steps = clicks.iter().map(|c| c.order.len()).max().unwrap_or(0);
    let req = PredictRequest {
        dims,
        spacing,
        image,
        n_classes,
        boxes,
        clicks: &clicks,
        prev_pred,
        step: steps + 1,
    };
    p.predict(&req).map_err(|e| anyhow::anyhow!("{e}"))
}

/// `segvol segment --image CASE.npz --out SEGS.npz` with neither --box nor --points: the
/// case's own boxes and clicks (one class each), as a challenge step.
fn run_case_step(args: &SegmentArgs, files: ModelFiles, out_kind: FileKind) -> Result<()> {
    if args.logits.is_some() {
        bail!("--logits needs one object (--box / --points); a whole case gives a label map only");
    }
    let path = args.image.display();
    let CaseInput {
        image,
        volume: fvol,
        dims,
        spacing,
        boxes,
        clicks,
        prev_pred,
        ..
    } = read_case(&args.image, args.model.max_voxels)?;
    if boxes.is_none() && clicks.iter().all(|c| c.fg.is_empty() && c.bg.is_empty()) {
        bail!("{path}: no --box / --points given and the case has neither `boxes` nor clicks");
    }
    let kind = args.model.backend()?;
    let bar = spinner();
    let labels = dispatch(
        kind,
        CaseStep {
            options: args.options(),
            files,
            image,
            dims,
            spacing,
            boxes,
            clicks,
            prev_pred,
            bar: bar.clone(),
        },
    )
    .with_context(|| format!("segmenting {path}"))?;
    bar.finish_and_clear();
    let voxels = labels.iter().filter(|&&m| m > 0).count();
    if let Some(p) = &args.preview {
        write_preview(p, &fvol.data, dims, fvol.spacing, &labels)?;
    }
    let mvol = fvol.with_data(labels)?;
    match out_kind {
        FileKind::Npz => write_segs(&args.out, &mvol)?,
        _ => write_nifti(&args.out, &mvol)?,
    }
    out!(
        "wrote {} ({voxels} voxels labelled, shape {dims:?})",
        args.out.display()
    );
    Ok(())
}

pub fn run(args: &SegmentArgs) -> Result<()> {
    let files = ModelFiles::new(&args.model, args.corrector.as_ref())?.with_default_corrector();
    crate::case::refuse_same(&args.image, &args.out, "--out")?;
    let out_kind = FileKind::of(&args.out)?;
    if out_kind == FileKind::Npy {
        bail!(
            "{}: write the mask as .nii, .nii.gz or .npz",
            args.out.display()
        );
    }
    if args.box_.is_none()
        && args.points.trim().is_empty()
        && args.text.is_empty()
        && FileKind::of(&args.image)? == FileKind::Npz
    {
        return run_case_step(args, files, out_kind);
    }
    if let Some(bad) = args.text.iter().find(|t| t.trim().is_empty()) {
        bail!("--text {bad:?}: an empty name (separate names with single commas)");
    }
    if args.text.len() > 1 && (args.box_.is_some() || !args.points.trim().is_empty()) {
        bail!(
            "--text with {} names takes no --box / --points: a box or a click belongs to one \
             structure (segment one name with its box, or the names alone)",
            args.text.len()
        );
    }
    if args.text.len() > 1 && args.logits.is_some() {
        bail!("--logits needs one object; several --text names give a label map only");
    }
    if args.text.len() > 255 {
        bail!(
            "--text: {} names, at most 255 labels fit a mask",
            args.text.len()
        );
    }
    crate::case::check_voxels(&args.image, args.model.max_voxels)?;
    crate::case::seg_out(&args.image, &args.out)?;
    let pick = args.series.clone().unwrap_or_default();
    let (img, series) = segvol_io::read_image_source(&args.image, &pick)?;
    let dims = img.dims();
    let clicks: Vec<VoxelClick> = parse_clicks(&args.points)?
        .into_iter()
        .map(|c| VoxelClick {
            zyx: c.zyx,
            foreground: c.foreground,
        })
        .collect();
    let kind = args.model.backend()?;
    let bar = spinner();
    let mut vol = img.to_f32();
    // Memory: the file's own type is not needed past here, and the float image only for the
    // preview (docs/reliability.md counts the bytes per voxel).
    drop(img);
    segvol_io::check_image(&args.image, dims, &vol.data)?;
    let boxes = match &args.box_ {
        None => None,
        Some(s) => Some(segvol_io::prompt::parse_box(s, Some(dims))?),
    };
    let image = if args.preview.is_some() {
        vol.data.clone()
    } else {
        std::mem::take(&mut vol.data)
    };
    let per_name = dispatch(
        kind,
        Segment {
            options: args.options(),
            files,
            image,
            dims,
            boxes,
            clicks,
            text: args.text.clone(),
            bar: bar.clone(),
        },
    )
    .with_context(|| format!("segmenting {}", args.image.display()))?;
    bar.finish_and_clear();
    let mask = label_map(&per_name);
    let voxels = mask.iter().filter(|&&m| m > 0).count();
    let logits = per_name.into_iter().next().unwrap_or_default();
    let logits = if args.logits.is_some() {
        logits
    } else {
        drop(logits);
        Vec::new()
    };
    let mvol = segvol_io::Volume {
        data: mask,
        dims: vol.dims,
        spacing: vol.spacing,
        affine: vol.affine,
        header: vol.header.clone(),
    };
    match (out_kind, &series) {
        (FileKind::Npz, _) => write_segs(&args.out, &mvol)?,
        // An empty mask is refused by write_seg (a SEG holds at least one frame).
        (FileKind::Dicom, Some(info)) => {
            let names: Vec<String> = match (&args.name, args.text.len()) {
                (Some(n), _) => vec![n.clone()],
                (None, 0) => vec!["SegVol segmentation".into()],
                (None, _) => args.text.clone(),
            };
            let opts = segvol_io::dicom::SegOptions {
                segments: names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| {
                        let label = u8::try_from(i + 1).unwrap_or(u8::MAX);
                        segvol_io::dicom::SegSegment {
                            label,
                            name: n.clone(),
                            color: segvol_io::dicom::default_color(label),
                        }
                    })
                    .filter(|s| mvol.data.contains(&s.label))
                    .collect(),
                algorithm_version: args.model.weights_label(),
                ..Default::default()
            };
            segvol_io::dicom::write_seg(&args.out, &mvol, info, &opts)?;
        }
        _ => write_nifti(&args.out, &mvol)?,
    }
    if let Some(p) = &args.preview {
        write_preview(p, &vol.data, dims, vol.spacing, &mvol.data)?;
    }
    if let Some(l) = &args.logits {
        segvol_io::write_npy(
            l,
            &NpyArray {
                shape: dims.to_vec(),
                data: NpyData::F32(logits),
            },
        )?;
    }
    out!(
        "wrote {} ({voxels} voxels segmented, shape {dims:?})",
        args.out.display()
    );
    for (i, name) in args.text.iter().enumerate().filter(|_| args.text.len() > 1) {
        let label = i + 1;
        let n = mvol
            .data
            .iter()
            .filter(|&&m| usize::from(m) == label)
            .count();
        out!("  label {label}: {name} ({n} voxels)");
    }
    Ok(())
}

/// One object's mask (`logits > 0`), or for several, the label `i + 1` of the object with the
/// highest positive logit at each voxel (0 where none is positive).
fn label_map(logits: &[Vec<f32>]) -> Vec<u8> {
    let n = logits.first().map_or(0, Vec::len);
    (0..n)
        .map(|v| {
            let mut best = (0u8, 0.0f32);
            for (i, l) in logits.iter().enumerate() {
                let x = l.get(v).copied().unwrap_or(f32::NEG_INFINITY);
                if x > best.1 {
                    best = (u8::try_from(i + 1).unwrap_or(u8::MAX), x);
                }
            }
            best.0
        })
        .collect()
}
