//! `segvol convert`: a SegVol checkpoint (PyTorch .bin/.pth, .safetensors) to our fast format
//! (burnpack `.bpk`: burn's own layout, no key mapping or transposes at load), with load times;
//! or an image (a DICOM series above all) to NIfTI, with the geometry it was read with.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use segvol_backends::{Backend, BackendKind, BackendTask, dispatch};
use segvol_core::weights::{load_segvol, save_burnpack, save_burnpack_f16};
use segvol_core::{SegVol, SegVolConfig};

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Source weights: pytorch_model.bin, SegVol_v1.pth, .safetensors (or a .bpk); or an
    /// image to convert to NIfTI: a DICOM folder / DICOMDIR / .dcm (or .npz, .npy).
    #[arg(long)]
    pub from: PathBuf,
    /// Output file: `.bpk` for weights, `.nii` / `.nii.gz` for an image.
    #[arg(long)]
    pub to: PathBuf,
    /// Which DICOM series to convert: its number in `segvol info`'s listing or its UID.
    #[arg(long)]
    pub series: Option<segvol_io::dicom::SeriesPick>,
    /// With a DICOM SEG as --from: the image series it segments (a folder, DICOMDIR or file),
    /// whose grid the label map is written on.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Model size of the checkpoint: base (the released SegVol), small or tiny (a `.bpk`
    /// written by segvol-rs carries its own, which is used instead).
    #[arg(long, default_value = "base")]
    pub config: String,
    /// Store every float as f16 (half the size; loading casts back to f32). The shipped
    /// model is stored this way.
    #[arg(long)]
    pub f16: bool,
    /// Store `box_mask_prompt` on or off in the written file's configuration (the box step
    /// starts from the filled box; weights with the mask prompt only). Default: as --from.
    #[arg(long, value_name = "on|off", value_parser = crate::case::on_off)]
    pub box_start: Option<bool>,
}

struct Convert {
    from: PathBuf,
    to: PathBuf,
    config: segvol_core::SegVolConfig,
    f16: bool,
}

struct Times {
    tensors: usize,
    ignored: usize,
    load_src: Duration,
    write: Duration,
    load_bpk: Duration,
}

impl BackendTask for Convert {
    type Output = Result<Times>;
    fn run<B: Backend>(self, device: &B::Device) -> Result<Times> {
        let t = Instant::now();
        let mut model = SegVol::<B>::new(&self.config, device);
        let report = load_segvol(&mut model, &self.from)?;
        let load_src = t.elapsed();
        let t = Instant::now();
        let source = self
            .from
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if self.f16 {
            save_burnpack_f16(&model, &self.config, &source, &self.to)?;
        } else {
            save_burnpack(&model, &self.config, &source, &self.to)?;
        }
        let write = t.elapsed();
        let t = Instant::now();
        let mut check = SegVol::<B>::new(&self.config, device);
        load_segvol(&mut check, &self.to)?;
        let load_bpk = t.elapsed();
        Ok(Times {
            tensors: report.applied.len(),
            ignored: report.ignored.len(),
            load_src,
            write,
            load_bpk,
        })
    }
}

pub fn run(args: &ConvertArgs) -> Result<()> {
    crate::case::refuse_same(&args.from, &args.to, "--to")?;
    if matches!(
        segvol_io::FileKind::of(&args.from),
        Ok(segvol_io::FileKind::Dicom | segvol_io::FileKind::Npz | segvol_io::FileKind::Npy)
    ) {
        return convert_image(args);
    }
    // A burnpack written by segvol-rs knows its configuration (flags included, which a preset
    // name does not carry): that one wins over --config.
    let stored = if args
        .from
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("bpk"))
    {
        segvol_core::weights::stored_config(&args.from)?
    } else {
        None
    };
    let config = match stored {
        Some(c) => c,
        None => SegVolConfig::named(&args.config).context("--config")?,
    };
    let config =
        crate::case::with_box_start(config, args.box_start, &args.from.display().to_string())?;
    let ext_ok = args
        .to
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("bpk"));
    if !ext_ok {
        bail!("{}: the fast format's files end in .bpk", args.to.display());
    }
    let times = dispatch(
        BackendKind::default_cpu()?,
        Convert {
            from: args.from.clone(),
            to: args.to.clone(),
            config,
            f16: args.f16,
        },
    )
    .with_context(|| format!("converting {}", args.from.display()))?;
    let size = |p: &PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    out!(
        "wrote {} ({} tensors, {} ignored on purpose; {:.1} MB from {:.1} MB)",
        args.to.display(),
        times.tensors,
        times.ignored,
        size(&args.to) as f64 / 1e6,
        size(&args.from) as f64 / 1e6
    );
    out!(
        "load {}: {:.0} ms; write: {:.0} ms; load {}: {:.0} ms (model construction included)",
        args.from.display(),
        times.load_src.as_secs_f64() * 1e3,
        times.write.as_secs_f64() * 1e3,
        args.to.display(),
        times.load_bpk.as_secs_f64() * 1e3
    );
    Ok(())
}

/// An image (DICOM, .npz, .npy) to NIfTI: the voxels and the affine as read.
fn convert_image(args: &ConvertArgs) -> Result<()> {
    use segvol_io::{AnyVolume, FileKind, read_image_series, write_nifti};
    if FileKind::of(&args.to).ok() != Some(FileKind::Nifti) {
        bail!(
            "{}: an image converts to .nii or .nii.gz",
            args.to.display()
        );
    }
    let pick = args.series.clone().unwrap_or_default();
    if let Some(image) = &args.image {
        let series = segvol_io::dicom::read_series(image, &pick)?;
        let dims = series.volume.dims();
        let seg = segvol_io::dicom::read_seg(&args.from, &series.info, dims)?;
        let mut labels = segvol_io::Volume::new(seg.labels, dims, series.volume.spacing())?;
        labels.affine = series.volume.affine();
        write_nifti(&args.to, &labels)?;
        out!(
            "wrote {} (label map {dims:?} (z,y,x) on {}'s grid; segments: {})",
            args.to.display(),
            image.display(),
            seg.segments
                .iter()
                .map(|(n, l)| format!("{n} {l:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(());
    }
    let t = Instant::now();
    let v = read_image_series(&args.from, &pick)?;
    let read = t.elapsed();
    match &v {
        AnyVolume::U8(v) => write_nifti(&args.to, v)?,
        AnyVolume::I16(v) => write_nifti(&args.to, v)?,
        AnyVolume::F32(v) => write_nifti(&args.to, v)?,
        // Written as float32 (the types segvol-io writes).
        other => write_nifti(&args.to, &other.to_f32())?,
    }
    out!(
        "wrote {} ({} {:?} (z,y,x), read in {:.2} s)",
        args.to.display(),
        v.dtype(),
        v.dims(),
        read.as_secs_f64()
    );
    Ok(())
}
