//! `segvol view IMAGE`: the browser viewer (docs/viewer.md). Argument parsing and file
//! handling only; the page and its server are `segvol_serve::ui`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::ProgressBar;
use segvol_backends::{Backend, BackendTask, dispatch};
use segvol_interactive::InteractiveSession;
use segvol_io::{Volume, read_image, write_nifti};
use segvol_serve::ui::{Action, ViewConfig, ViewImage, replay, view};

use crate::case::{CorrectorSource, ModelArgs, ModelFiles, check_voxels};

#[derive(Args, Debug)]
pub struct ViewArgs {
    /// The image: .nii / .nii.gz (shown as it is), a challenge .npz / .npy, or DICOM (a
    /// folder of slices, a DICOMDIR or a multi-frame .dcm).
    pub image: PathBuf,
    /// Which series of a DICOM folder: its number in `segvol info`'s listing or its UID.
    #[arg(long)]
    pub series: Option<String>,
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
    /// GRU corrector (a file, or `shipped`; the shipped model uses the shipped one).
    #[arg(long)]
    pub corrector: Option<PathBuf>,
    /// No page: apply the actions of a JSON list (as the page's /api/actions gives them)
    /// through the library and write the label map to --out.
    #[arg(long, requires = "out")]
    pub replay: Option<PathBuf>,
}

/// The label map as NIfTI bytes with the image's geometry (a temporary file, read back).
/// `geom` carries the geometry only (its voxels were moved into the session).
fn labels_nifti(geom: &Volume<f32>, labels: &[u8]) -> Result<Vec<u8>, String> {
    let v = Volume {
        data: labels.to_vec(),
        dims: geom.dims,
        spacing: geom.spacing,
        affine: geom.affine,
        header: geom.header.clone(),
    };
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let p = dir.path().join("labels.nii");
    write_nifti(&p, &v).map_err(|e| e.to_string())?;
    std::fs::read(&p).map_err(|e| e.to_string())
}

struct Task {
    args_out: Option<PathBuf>,
    host: String,
    port: u16,
    files: ModelFiles,
    image: ViewImage,
    geom: Volume<f32>,
    replay: Option<Vec<Action>>,
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
            let labels = replay(&mut s, &actions)?;
            let out = self.args_out.context("--replay needs --out")?;
            if let Some(save) = &self.image.save {
                save(&labels, &out).map_err(anyhow::Error::msg)?;
                out!("replayed {} actions into {}", actions.len(), out.display());
                return Ok(());
            }
            // write_nifti: gzip by the name, temporary file then rename.
            let v = Volume {
                data: labels,
                dims: self.geom.dims,
                spacing: self.geom.spacing,
                affine: self.geom.affine,
                header: self.geom.header.clone(),
            };
            write_nifti(&out, &v)?;
            out!("replayed {} actions into {}", actions.len(), out.display());
            return Ok(());
        }
        let cfg = ViewConfig {
            host: self.host,
            port: self.port,
            out: self.args_out,
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
    let mut files = ModelFiles::new(&args.model, args.corrector.as_ref())?;
    if files.is_shipped() && files.corrector.is_none() {
        files.corrector = Some(CorrectorSource::Shipped);
    }
    let is_dicom = segvol_io::FileKind::of(&args.image).ok() == Some(segvol_io::FileKind::Dicom);
    let seg_out = args
        .out
        .as_ref()
        .is_some_and(|o| segvol_io::FileKind::of(o).ok() == Some(segvol_io::FileKind::Dicom));
    if let Some(out) = &args.out {
        crate::case::refuse_same(&args.image, out, "--out")?;
        if seg_out && !is_dicom {
            bail!(
                "{}: a DICOM SEG references the DICOM series it segments; {} is not DICOM \
                 (write .nii.gz instead)",
                out.display(),
                args.image.display()
            );
        }
        if !is_nifti(out) && !seg_out {
            bail!(
                "{}: the label map is written as .nii or .nii.gz (or .dcm, a DICOM SEG, for a \
                 DICOM image)",
                out.display()
            );
        }
    }
    check_voxels(&args.image, args.model.max_voxels)?;
    let pick = args.series.as_deref().map_or(
        segvol_io::dicom::SeriesPick::Only,
        segvol_io::dicom::SeriesPick::parse,
    );
    let (img, series) = if is_dicom {
        let s = segvol_io::dicom::read_series(&args.image, &pick)?;
        (s.volume, Some(s.info))
    } else {
        (read_image(&args.image)?, None)
    };
    let geom = img.to_f32();
    drop(img);
    segvol_io::check_image(&args.image, geom.dims, &geom.data)?;
    // NiiVue reads NIfTI: the file itself when it is one, else the image written as one.
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
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("image.nii");
        write_nifti(&p, &geom)?;
        (std::fs::read(&p)?, "image.nii".to_string())
    };
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
    let save: Option<segvol_serve::ui::SaveLabels> = match series {
        Some(info) if seg_out => {
            let g3 = geom.clone();
            let version = args.model.weights_label();
            Some(Box::new(move |l: &[u8], out: &Path| {
                // `g3` holds the geometry only (its voxels went to the session).
                let v = Volume {
                    data: l.to_vec(),
                    dims: g3.dims,
                    spacing: g3.spacing,
                    affine: g3.affine,
                    header: None,
                };
                if !v.data.iter().any(|&x| x > 0) {
                    return Err("nothing is labelled yet: a DICOM SEG needs at least one \
                                segment (nothing written)"
                        .into());
                }
                let opts = segvol_io::dicom::SegOptions {
                    algorithm_version: version.clone(),
                    ..Default::default()
                };
                segvol_io::dicom::write_seg(out, &v, &info, &opts)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }))
        }
        _ => None,
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
            geom,
            replay,
        },
    )
}
