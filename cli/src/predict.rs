//! `segvol predict`: the CVPR 2025 challenge entry point. Every `.npz` of an input folder
//! (`imgs`, `spacing`, `boxes`, `clicks`, `clicks_order`, `prev_pred`) is segmented, every
//! class, and its `segs` (uint8, the image's shape) written under the same name in the output
//! folder. The model is loaded once; a case that cannot be read or segmented is reported and
//! skipped (nothing written for it) while the others complete, and the exit code says whether
//! any failed.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use segvol_backends::{Backend, BackendTask, dispatch};
use segvol_interactive::SessionOptions;
use segvol_io::write_segs;

use crate::case::{ModelArgs, ModelFiles, read_case};

/// `segvol predict`.
#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// Folder of challenge `.npz` inputs.
    #[arg(long)]
    pub input_dir: PathBuf,
    /// Folder for the outputs (created if missing).
    #[arg(long)]
    pub output_dir: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// GRU corrector (a file, or `shipped`); its state is rebuilt by replaying the clicks.
    #[arg(long)]
    pub corrector: Option<PathBuf>,
    /// Skip SegVol's zoom-in (faster, coarser).
    #[arg(long)]
    pub no_zoom_in: bool,
    #[command(flatten)]
    pub clicks: crate::case::ClickArgs,
}

impl PredictArgs {
    /// The engine settings: batch defaults (zoom-in on), this command's flags on top.
    pub fn options(&self) -> SessionOptions {
        SessionOptions {
            zoom_in: !self.no_zoom_in,
            ..self.clicks.on(SessionOptions::batch())
        }
    }
}

struct Predict {
    files: ModelFiles,
    inputs: Vec<PathBuf>,
    output_dir: PathBuf,
    options: SessionOptions,
    started: Instant,
    max_voxels: u64,
}

impl BackendTask for Predict {
    type Output = Result<usize>;
    fn run<B: Backend>(self, device: &B::Device) -> Result<usize> {
        let bar = indicatif::ProgressBar::hidden();
        let (model, corrector) = self.files.load::<B>(&bar, device)?;
        let loaded = self.started.elapsed().as_secs_f64();
        let mut failed = 0usize;
        let mut first = true;
        for path in &self.inputs {
            let t = Instant::now();
            let name = path.file_name().map(PathBuf::from).unwrap_or_default();
            let out = self.output_dir.join(&name);
            let r = (|| -> Result<usize> {
                let c = read_case(path, self.max_voxels)?;
                if c.boxes.is_none() && c.clicks.iter().all(|k| k.fg.is_empty() && k.bg.is_empty())
                {
                    bail!(
                        "{}: neither `boxes` nor clicks: nothing to segment",
                        path.display()
                    );
                }
                let labels = crate::segment::challenge_step(
                    &model,
                    corrector.as_ref(),
                    self.options,
                    &c.image,
                    c.dims,
                    c.spacing,
                    c.boxes.as_deref(),
                    &c.clicks,
                    c.prev_pred.as_deref(),
                    device,
                )
                .with_context(|| format!("segmenting {}", path.display()))?;
                let n = labels.iter().filter(|&&v| v > 0).count();
                write_segs(&out, &c.volume.with_data(labels)?)?;
                Ok(n)
            })();
            match r {
                Ok(n) => {
                    let first_note = if std::mem::take(&mut first) {
                        format!(
                            " (model ready {loaded:.2} s, first mask {:.2} s after start)",
                            self.started.elapsed().as_secs_f64()
                        )
                    } else {
                        String::new()
                    };
                    out!(
                        "{}: {n} voxels labelled in {:.2} s{first_note}",
                        out.display(),
                        t.elapsed().as_secs_f64(),
                    );
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("error: {e:#}");
                }
            }
        }
        Ok(failed)
    }
}

/// Runs `segvol predict`.
pub fn run(a: &PredictArgs) -> Result<()> {
    let started = Instant::now();
    crate::case::refuse_same(&a.input_dir, &a.output_dir, "the output folder")?;
    let rd = std::fs::read_dir(&a.input_dir)
        .with_context(|| format!("{}: cannot list the input folder", a.input_dir.display()))?;
    let mut inputs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "npz"))
        .collect();
    inputs.sort();
    if inputs.is_empty() {
        bail!("{}: no .npz inputs", a.input_dir.display());
    }
    std::fs::create_dir_all(&a.output_dir).with_context(|| {
        format!(
            "{}: cannot create the output folder",
            a.output_dir.display()
        )
    })?;
    let files = ModelFiles::new(&a.model, a.corrector.as_ref())?.with_default_corrector();
    let n = inputs.len();
    let failed = dispatch(
        a.model.backend()?,
        Predict {
            files,
            inputs,
            output_dir: a.output_dir.clone(),
            options: a.options(),
            started,
            max_voxels: a.model.max_voxels,
        },
    )?;
    if failed > 0 {
        bail!("{failed} of {n} cases failed (see above); the others were written");
    }
    Ok(())
}
