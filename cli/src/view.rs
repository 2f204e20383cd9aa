//! `segvol view IMAGE`: the browser viewer (docs/viewer.md). Argument parsing and file
//! handling only; the page and its server are `segvol_serve::ui`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::ProgressBar;
use segvol_backends::{Backend, BackendTask, dispatch};
use segvol_interactive::{InteractiveSession, SessionOptions};
use segvol_io::{AnyVolume, Volume, nifti_bytes, write_nifti};
use segvol_serve::ui::{Action, ViewConfig, ViewImage, replay, view};

use crate::case::{ModelArgs, ModelFiles, check_voxels};

#[derive(Args, Debug)]
pub struct ViewArgs {
    /// The image: .nii / .nii.gz (shown as it is), a challenge .npz / .npy, or DICOM (a
    /// folder of slices, a DICOMDIR or a multi-frame .dcm).
    pub image: PathBuf,
    /// Which series of a DICOM folder: its number in `segvol info`'s listing or its UID.
    #[arg(long)]
    pub series: Option<segvol_io::dicom::SeriesPick>,
    /// "Save" also writes the label map here: NIfTI (the image's geometry), or for a DICOM
    /// image a DICOM SEG (`.dcm`, one segment per label) referencing its series.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Address (127.0.0.1: this machine only).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0 = any free one; the URL is printed).
    #[arg(long, default_value_t = 8765)]
    pub port: u16,
    #[command(flatten)]
    pub model: ModelArgs,
    /// GRU corrector (a file, or `shipped`; default: none, `segvol_models::CORRECTOR_BY_DEFAULT`).
    #[arg(long)]
    pub corrector: Option<PathBuf>,
    #[command(flatten)]
    pub clicks: crate::case::ClickArgs,
    /// No page: apply the actions of a JSON list (as the page's /api/actions gives them)
    /// through the library and write the label map to --out.
    #[arg(long, requires = "out")]
    pub replay: Option<PathBuf>,
}

impl ViewArgs {
    /// The engine settings: live defaults (zoom-in off), this command's flags on top.
    pub fn options(&self) -> SessionOptions {
        self.clicks.on(SessionOptions::live())
    }
}

/// A label map on the image's grid. `geom` carries the geometry only (its voxels were moved
/// into the session), so `with_data` cannot be used.
fn labels_volume(geom: &Volume<f32>, labels: &[u8]) -> Volume<u8> {
    Volume {
        data: labels.to_vec(),
        dims: geom.dims,
        spacing: geom.spacing,
        affine: geom.affine,
        header: geom.header.clone(),
    }
}

/// The label map as NIfTI bytes with the image's geometry.
fn labels_nifti(geom: &Volume<f32>, labels: &[u8]) -> Result<Vec<u8>, String> {
    nifti_bytes(&labels_volume(geom, labels), "labels.nii").map_err(|e| e.to_string())
}

struct Task {
    args_out: Option<PathBuf>,
    host: String,
    port: u16,
    files: ModelFiles,
    image: ViewImage,
    replay: Option<Vec<Action>>,
    options: SessionOptions,
}

impl BackendTask for Task {
    type Output = Result<()>;
    fn run<B: Backend>(self, device: &B::Device) -> Result<()> {
        let (model, corrector) = self.files.load::<B>(&ProgressBar::hidden(), device)?;
        if let Some(actions) = self.replay {
            let mut s = InteractiveSession::new(
                &model,
                corrector.as_ref(),
                device,
                self.image.data,
                self.image.dims,
                self.image.spacing,
            )?;
            s.set_options(self.options);
            let labels = replay(&mut s, &actions)?;
            let out = self.args_out.context("--replay needs --out")?;
            (self.image.save)(&labels, &out).map_err(anyhow::Error::msg)?;
            out!("replayed {} actions into {}", actions.len(), out.display());
            return Ok(());
        }
        let cfg = ViewConfig {
            host: self.host,
            port: self.port,
            out: self.args_out,
            options: self.options,
        };
        view(
            cfg,
            self.image,
            &model,
            corrector.as_ref(),
            device,
            |addr| {
                println!("segvol view: open http://{addr}/ in a browser (Ctrl-C to stop)");
            },
        )?;
        Ok(())
    }
}

fn is_nifti(p: &Path) -> bool {
    let n = p.to_string_lossy().to_lowercase();
    n.ends_with(".nii") || n.ends_with(".nii.gz")
}

pub fn run(args: &ViewArgs) -> Result<()> {
    let files = ModelFiles::new(&args.model, args.corrector.as_ref())?.with_default_corrector();
    let mut seg_out = false;
    if let Some(out) = &args.out {
        crate::case::refuse_same(&args.image, out, "--out")?;
        seg_out = crate::case::seg_out(&args.image, out)?;
        if !is_nifti(out) && !seg_out {
            bail!(
                "{}: the label map is written as .nii or .nii.gz (or .dcm, a DICOM SEG, for a \
                 DICOM image)",
                out.display()
            );
        }
    }
    check_voxels(&args.image, args.model.max_voxels)?;
    let pick = args.series.clone().unwrap_or_default();
    let (img, series) = segvol_io::read_image_source(&args.image, &pick)?;
    // NiiVue reads NIfTI: the file itself when it is one, else the image written as one in
    // its own voxel type (a CT's int16 is half the bytes of float to send and upload).
    let (file, name) = if is_nifti(&args.image) {
        let name = args
            .image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image.nii.gz".into());
        (
            std::fs::read(&args.image)
                .with_context(|| format!("{}: cannot read", args.image.display()))?,
            name,
        )
    } else {
        let name = "image.nii";
        let bytes = match &img {
            AnyVolume::U8(v) => nifti_bytes(v, name),
            AnyVolume::I16(v) => nifti_bytes(v, name),
            AnyVolume::I32(v) => nifti_bytes(&v.map(|&x| x as f32), name),
            AnyVolume::F32(v) => nifti_bytes(v, name),
            AnyVolume::F64(v) => nifti_bytes(&v.map(|&x| x as f32), name),
        }
        .with_context(|| format!("{}: as NIfTI for the page", args.image.display()))?;
        (bytes, name.to_string())
    };
    let geom = img.to_f32();
    drop(img);
    segvol_io::check_image(&args.image, geom.dims, &geom.data)?;
    let replay = match &args.replay {
        None => None,
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("{}: cannot read", p.display()))?;
            Some(
                serde_json::from_str::<Vec<Action>>(&text)
                    .with_context(|| format!("{}: not a list of actions", p.display()))?,
            )
        }
    };
    if replay.is_none() {
        crate::case::init_log();
    }
    // The voxels go to the session once; the label writer needs only the geometry.
    let mut geom = geom;
    let data = std::mem::take(&mut geom.data);
    let g2 = geom.clone();
    // "Save" and --replay write --out: a DICOM SEG of the series, else NIfTI (write_nifti:
    // gzip by the name, a temporary file, then a rename).
    let g3 = geom.clone();
    let save: segvol_serve::ui::SaveLabels = match series {
        Some(info) if seg_out => {
            let version = args.model.weights_label();
            Box::new(move |l: &[u8], out: &Path| {
                let opts = segvol_io::dicom::SegOptions {
                    algorithm_version: version.clone(),
                    ..Default::default()
                };
                // An empty map is refused there: a SEG holds at least one frame.
                segvol_io::dicom::write_seg(out, &labels_volume(&g3, l), &info, &opts)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        }
        _ => Box::new(move |l: &[u8], out: &Path| {
            write_nifti(out, &labels_volume(&g3, l)).map_err(|e| e.to_string())
        }),
    };
    let image = ViewImage {
        save,
        file,
        name,
        data,
        dims: geom.dims,
        spacing: geom.spacing,
        labels_nifti: Box::new(move |l: &[u8]| labels_nifti(&g2, l)),
    };
    dispatch(
        args.model.backend()?,
        Task {
            args_out: args.out.clone(),
            host: args.host.clone(),
            port: args.port,
            files,
            image,
            replay,
            options: args.options(),
        },
    )
}
