//! What the model commands share: the model's arguments and files (weights, corrector, backend),
//! a spinner, and the challenge-case reader (from [`segvol_harness::case`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use segvol_backends::{Backend, BackendKind};
use segvol_core::weights::load_segvol;
use segvol_core::{SegVol, SegVolConfig};
use segvol_gru::{GruCorrector, load_corrector};
pub use segvol_harness::case::{CaseInput, check_voxels, read_case, read_case_bytes};
use segvol_interactive::SessionOptions;

/// A spinner with elapsed time and a message, ticking on its own.
pub fn spinner() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// `--click-radius`, `--click-grow`, `--grow-floor`, `--negative-reach`, `--box-intensity` and
/// the box's other rules: what every command that takes clicks accepts.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct ClickArgs {
    /// After the model answers, each click fixes its voxel and the wrong-labelled voxels
    /// connected to it within this radius in mm (docs/model-card.md, "Clicks that stick");
    /// `off`: the model's answer as it is.
    #[arg(long, value_name = "MM|off", default_value_t = ClickRadius(Some(segvol_interactive::DEFAULT_CLICK_RADIUS_MM)))]
    pub click_radius: ClickRadius,
    /// After the model answers, each positive click adds the voxels connected to it whose
    /// intensity is within 1.5 standard deviations of the clicked neighbourhood's mean, within
    /// this radius in mm and the box (docs/model-card.md, "Clicks that reach"); `off`: the
    /// model's answer as it is.
    #[arg(long, value_name = "MM|off", default_value_t = ClickRadius(Some(segvol_interactive::DEFAULT_GROW_RADIUS_MM)))]
    pub click_grow: ClickRadius,
    /// A positive click's grown region (--click-grow) takes no voxel whose logit, with the
    /// box's intensities, is at or below −2 (background the model is fairly sure of), nor
    /// passes through one (docs/model-card.md, "Positive clicks that stop where the model is
    /// sure"); `off`: intensity alone bounds it.
    #[arg(long, value_name = "on|off", value_parser = on_off, default_value = "on", action = clap::ArgAction::Set)]
    pub grow_floor: bool,
    /// After the model answers, each negative click clears the voxels connected to it whose
    /// logit is below 2 (the model is unsure), within this radius in mm and the box
    /// (docs/model-card.md, "Negative clicks that reach"); `off`: the model's answer as it is.
    #[arg(long, value_name = "MM|off", default_value_t = ClickRadius(Some(segvol_interactive::DEFAULT_NEGATIVE_REACH_MM)))]
    pub negative_reach: ClickRadius,
    /// With a box, the voxels the model is sure of teach an intensity model of the box, whose
    /// log-likelihood ratio moves every voxel's logit in it before the threshold
    /// (docs/model-card.md, "The box's own intensities"); `off`: the model's answer as it is.
    #[arg(long, value_name = "on|off", value_parser = on_off, default_value = "on", action = clap::ArgAction::Set)]
    pub box_intensity: bool,
    /// Each click's neighbourhood joins the box's intensity model on its side, so a click
    /// moves every voxel of its intensity in the box (docs/model-card.md, "Clicks that teach,
    /// and the box's smoothness"; with --box-intensity on); `off`: the model's sure voxels
    /// alone teach it.
    #[arg(long, value_name = "on|off", value_parser = on_off, default_value = "on", action = clap::ArgAction::Set)]
    pub click_teach: bool,
    /// With a box, the box's intensities against those of the voxels just outside it (2
    /// voxels deep) join its intensity model: what is common in the box and rare around it
    /// leans object (docs/model-card.md, "The box's surround, and sure voxels by rank"; with
    /// --box-intensity on); `off`: the model's sure voxels (and the clicks) alone teach it.
    #[arg(long, value_name = "on|off", value_parser = on_off, default_value = "on", action = clap::ArgAction::Set)]
    pub box_surround: bool,
    /// The box's intensity model learns from the box's top tenth of logits (above 0) as
    /// object and its bottom 40 % (below 0) as background (docs/model-card.md, "The box's
    /// surround, and sure voxels by rank"; with --box-intensity on); `off`: from every voxel
    /// above +2 and below −2, the rule before.
    #[arg(long, value_name = "on|off", value_parser = on_off, default_value = "on", action = clap::ArgAction::Set)]
    pub sure_by_rank: bool,
    /// With a box, five mean-field passes let each voxel's logit in the box lean towards its
    /// neighbours' side before the threshold, removing speckle (docs/model-card.md, "Clicks
    /// that teach, and the box's smoothness"); `off`: each voxel keeps its own.
    #[arg(long, value_name = "on|off", value_parser = on_off, default_value = "on", action = clap::ArgAction::Set)]
    pub box_smoothing: bool,
}

impl ClickArgs {
    /// `base` with these click radii.
    pub fn on(self, base: SessionOptions) -> SessionOptions {
        SessionOptions {
            click_radius_mm: self.click_radius.0,
            click_grow_mm: self.click_grow.0,
            grow_floor: self.grow_floor,
            negative_reach_mm: self.negative_reach.0,
            box_intensity: self.box_intensity,
            click_teach: self.click_teach,
            box_surround: self.box_surround,
            sure_by_rank: self.sure_by_rank,
            box_smoothing: self.box_smoothing,
            ..base
        }
    }
}

/// A click region's radius in mm, or none (`off`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClickRadius(pub Option<f64>);

impl std::str::FromStr for ClickRadius {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(ClickRadius(None));
        }
        match s.parse::<f64>() {
            Ok(r) if r.is_finite() && r >= 0.0 => Ok(ClickRadius(Some(r))),
            _ => Err(format!("{s:?}: a radius in mm (0 or more) or `off`")),
        }
    }
}

impl std::fmt::Display for ClickRadius {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(r) => write!(f, "{r}"),
            None => f.write_str("off"),
        }
    }
}

/// `--weights`, `--config`, `--backend`: what every model command takes.
#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// SegVol weights: pytorch_model.bin, .safetensors, SegVol_v1.pth or our .bpk. Default:
    /// the shipped model (SegVol `small`, trained by segvol train; docs/model-card.md).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Model size of --weights: base (the released SegVol), small or tiny. Default: base with
    /// --weights, small for the shipped model; a `.bpk` written by segvol-rs carries its own,
    /// which is used instead.
    #[arg(long)]
    pub config: Option<String>,
    /// Backend (default: flex).
    #[arg(long)]
    pub backend: Option<String>,
    /// Refuse images with more voxels than this, before reading them (the pipeline holds about
    /// 15 bytes per voxel: docs/reliability.md). The default admits a 1000×512×512 CT.
    #[arg(long, default_value_t = DEFAULT_MAX_VOXELS)]
    pub max_voxels: u64,
    /// Start the box step from the filled box (`on`) or from nothing (`off`): the mask prompt
    /// is given the box as the mask to refine (a model with the mask prompt;
    /// docs/model-card.md). Default: what the weights were trained with (the shipped model:
    /// on).
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    pub box_start: Option<bool>,
}

/// `config` with `--box-start` applied (`None`: as it is); `weights` names them in the error
/// (weights without the mask prompt have nothing to start from).
pub fn with_box_start(
    config: SegVolConfig,
    on: Option<bool>,
    weights: &str,
) -> Result<SegVolConfig> {
    match on {
        Some(true) if !config.mask_prompt => {
            bail!("{weights}: --box-start on needs weights with the mask prompt")
        }
        Some(on) => Ok(config.with_box_mask_prompt(on)),
        None => Ok(config),
    }
}

/// `on` or `off` (any case).
pub fn on_off(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("expected on or off, got `{s}`")),
    }
}

/// Whether `out` names a DICOM SEG (`.dcm`); refused unless `image` is DICOM, since a SEG
/// references the series it segments.
pub fn seg_out(image: &Path, out: &Path) -> Result<bool> {
    use segvol_io::FileKind;
    let seg = FileKind::of(out).ok() == Some(FileKind::Dicom);
    if seg && FileKind::of(image).ok() != Some(FileKind::Dicom) {
        bail!(
            "{}: a DICOM SEG references the DICOM series it segments; {} is not DICOM (write \
             .nii.gz instead)",
            out.display(),
            image.display()
        );
    }
    Ok(seg)
}

/// `--max-voxels`' default: 600 million voxels (about 9 GB of pipeline memory).
pub const DEFAULT_MAX_VOXELS: u64 = 600_000_000;

impl ModelArgs {
    /// A name for the weights in use, for provenance (a DICOM SEG's algorithm version): the
    /// file name of --weights, else the shipped model's.
    pub fn weights_label(&self) -> String {
        match &self.weights {
            Some(p) => p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            None => "segvol-rs shipped small".into(),
        }
    }

    /// The named config, with `--box-start` applied.
    pub fn config(&self) -> Result<SegVolConfig> {
        with_box_start(self.named_config()?, self.box_start, &self.weights_label())
    }

    /// The config of `--weights`/`--config`.
    fn named_config(&self) -> Result<SegVolConfig> {
        match (&self.weights, self.config.as_deref()) {
            (None, None | Some("small")) => Ok(segvol_models::config()),
            (None, Some(other)) => {
                bail!("--config {other} needs --weights: the shipped model is `small`")
            }
            (Some(w), name) => {
                // A burnpack written by segvol-rs carries its configuration, flags included
                // (which a preset name does not): that one is used.
                let is_bpk = w.extension().is_some_and(|e| e.eq_ignore_ascii_case("bpk"));
                match is_bpk
                    .then(|| segvol_core::weights::stored_config(w))
                    .transpose()?
                    .flatten()
                {
                    Some(c) => Ok(c),
                    None => SegVolConfig::named(name.unwrap_or("base")).context("--config"),
                }
            }
        }
    }

    /// The chosen backend.
    pub fn backend(&self) -> Result<BackendKind> {
        backend_kind(self.backend.as_deref())
    }
}

/// The backend named by `--backend`, else the default CPU one.
pub fn backend_kind(name: Option<&str>) -> Result<BackendKind> {
    Ok(match name {
        Some(s) => s.parse::<BackendKind>()?,
        None => BackendKind::default_cpu()?,
    })
}

/// Where a corrector comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorrectorSource {
    /// The one shipped with the default model.
    Shipped,
    /// A file.
    File(PathBuf),
}

impl CorrectorSource {
    /// `shipped` or a path.
    pub fn parse(arg: &std::path::Path) -> Self {
        if arg.as_os_str() == "shipped" {
            CorrectorSource::Shipped
        } else {
            CorrectorSource::File(arg.to_path_buf())
        }
    }
}

/// What a model command loads: the SegVol config and weights, and optionally a corrector.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// The model size.
    pub config: SegVolConfig,
    /// SegVol weights (`None`: the shipped model).
    pub weights: Option<PathBuf>,
    /// GRU corrector.
    pub corrector: Option<CorrectorSource>,
}

impl ModelFiles {
    /// From the command line: `--weights/--config` and `--corrector` (a path or `shipped`).
    pub fn new(model: &ModelArgs, corrector: Option<&PathBuf>) -> Result<Self> {
        Ok(ModelFiles {
            config: model.config()?,
            weights: model.weights.clone(),
            corrector: corrector.map(|p| CorrectorSource::parse(p)),
        })
    }

    /// With the shipped model and no corrector named: the shipped corrector when
    /// [`segvol_models::CORRECTOR_BY_DEFAULT`] says so (every interactive command's one
    /// default).
    pub fn with_default_corrector(mut self) -> Self {
        if self.is_shipped() && self.corrector.is_none() && segvol_models::CORRECTOR_BY_DEFAULT {
            self.corrector = Some(CorrectorSource::Shipped);
        }
        self
    }

    /// Whether SegVol is the shipped model.
    pub fn is_shipped(&self) -> bool {
        self.weights.is_none()
    }

    /// SegVol with the weights (strict) and, when given, the corrector.
    pub fn load<B: Backend>(
        &self,
        bar: &ProgressBar,
        device: &B::Device,
    ) -> Result<(SegVol<B>, Option<GruCorrector<B>>)> {
        bar.set_message("loading weights");
        let model = match &self.weights {
            Some(w) => {
                let mut model = SegVol::<B>::new(&self.config, device);
                load_segvol(&mut model, w)?;
                model
            }
            None => segvol_models::segvol_with::<B>(&self.config, device)?.0,
        };
        let corrector = match &self.corrector {
            None => None,
            Some(CorrectorSource::Shipped) => Some(segvol_models::corrector::<B>(device)?),
            Some(CorrectorSource::File(p)) => Some(load_corrector::<B>(p, device)?),
        };
        Ok((model, corrector))
    }
}

/// Refuses an output that is the input itself (the same file, or the same folder for
/// folder-to-folder commands): writing it would destroy the input.
pub fn refuse_same(input: &Path, output: &Path, what: &str) -> Result<()> {
    let same = match (std::fs::canonicalize(input), std::fs::canonicalize(output)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        bail!(
            "{}: {what} is the input {}; writing it would destroy the input",
            output.display(),
            input.display()
        );
    }
    Ok(())
}

/// The log of the long-running commands (`serve`, `view`): stderr, `RUST_LOG` or `info`.
pub fn init_log() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}
