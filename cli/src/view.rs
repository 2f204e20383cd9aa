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
    /// The image: .nii / .nii.gz (shown as it is), or a challenge .npz / .npy.
    pub image: PathBuf,
    /// "Save" also writes the label map here (NIfTI, the image's geometry).
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
            let bytes = labels_nifti(&self.geom, &labels).map_err(anyhow::Error::msg)?;
            let tmp = out.with_extension("part");
            std::fs::write(&tmp, bytes)
                .with_context(|| format!("{}: cannot write", tmp.display()))?;
            std::fs::rename(&tmp, &out)
                .with_context(|| format!("{}: cannot write", out.display()))?;
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
    if let Some(out) = &args.out {
        crate::case::refuse_same(&args.image, out, "--out")?;
        if !is_nifti(out) {
            bail!(
                "{}: the label map is written as .nii or .nii.gz",
                out.display()
            );
        }
    }
    check_voxels(&args.image, args.model.max_voxels)?;
    let img = read_image(&args.image)?;
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
    let image = ViewImage {
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
