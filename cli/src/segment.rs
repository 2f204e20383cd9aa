//! `segvol segment`: a box (and clicks) in, a mask with the image's geometry out.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use segvol_backends::{Backend, BackendKind, BackendTask, dispatch};
use segvol_core::SegVol;
use segvol_core::pipeline::{VoxelClick, segment_zoom_out};
use segvol_core::weights::load_segvol;
use segvol_io::npy::{NpyArray, NpyData};
use segvol_io::{FileKind, read_image, write_nifti, write_segs};

use crate::forward::config_named;
use crate::sample::parse_clicks;

#[derive(Args, Debug)]
pub struct SegmentArgs {
    /// Image: .nii / .nii.gz, a challenge .npz (`imgs`) or a 3-D .npy.
    #[arg(long)]
    pub image: PathBuf,
    /// Box `z0,y0,x0,z1,y1,x1` in voxel indices of the image, max inclusive.
    #[arg(long = "box")]
    pub box_: Option<String>,
    /// Clicks `z,y,x,fg;z,y,x,bg` in voxel indices.
    #[arg(long, default_value = "")]
    pub points: String,
    /// Weights: pytorch_model.bin, .safetensors or SegVol_v1.pth.
    #[arg(long)]
    pub weights: PathBuf,
    /// Model size: base (the released SegVol) or tiny.
    #[arg(long, default_value = "base")]
    pub config: String,
    /// Backend (default: flex).
    #[arg(long)]
    pub backend: Option<String>,
    /// The mask: .nii / .nii.gz (the image's geometry) or .npz (challenge `segs`).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the logits on the image grid as float32 .npy.
    #[arg(long)]
    pub logits: Option<PathBuf>,
}

struct Segment {
    weights: PathBuf,
    config: segvol_core::SegVolConfig,
    image: Vec<f32>,
    dims: [usize; 3],
    boxes: Option<([usize; 3], [usize; 3])>,
    clicks: Vec<VoxelClick>,
    bar: ProgressBar,
}

impl BackendTask for Segment {
    type Output = Result<Vec<f32>>;
    fn run<B: Backend>(self, device: &B::Device) -> Result<Vec<f32>> {
        self.bar.set_message("loading weights");
        let mut model = SegVol::<B>::new(&self.config, device);
        load_segvol(&mut model, &self.weights)?;
        self.bar
            .set_message("encoding and decoding (zoom-out pass)");
        let (logits, _) = segment_zoom_out(
            &model,
            &self.image,
            self.dims,
            self.boxes,
            &self.clicks,
            device,
        )?;
        Ok(logits)
    }
}

pub fn run(args: &SegmentArgs) -> Result<()> {
    let config = config_named(&args.config)?;
    let out_kind = FileKind::of(&args.out)?;
    if out_kind == FileKind::Npy {
        bail!(
            "{}: write the mask as .nii, .nii.gz or .npz",
            args.out.display()
        );
    }
    let img = read_image(&args.image)?;
    let dims = img.dims();
    let boxes = match &args.box_ {
        None => None,
        Some(s) => {
            let v: Vec<usize> = s
                .split(',')
                .map(|x| x.trim().parse::<usize>())
                .collect::<Result<_, _>>()
                .with_context(|| {
                    format!("--box `{s}`: expected six voxel indices z0,y0,x0,z1,y1,x1")
                })?;
            if v.len() != 6 {
                bail!("--box `{s}`: expected six voxel indices z0,y0,x0,z1,y1,x1");
            }
            Some(([v[0], v[1], v[2]], [v[3], v[4], v[5]]))
        }
    };
    let clicks: Vec<VoxelClick> = parse_clicks(&args.points)?
        .into_iter()
        .map(|c| VoxelClick {
            zyx: c.zyx,
            foreground: c.foreground,
        })
        .collect();
    let kind = match &args.backend {
        Some(s) => s.parse::<BackendKind>()?,
        None => BackendKind::default_cpu()?,
    };
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let vol = img.to_f32();
    let logits = dispatch(
        kind,
        Segment {
            weights: args.weights.clone(),
            config,
            image: vol.data.clone(),
            dims,
            boxes,
            clicks,
            bar: bar.clone(),
        },
    )
    .with_context(|| format!("segmenting {}", args.image.display()))?;
    bar.finish_and_clear();
    let mask: Vec<u8> = logits.iter().map(|&l| u8::from(l > 0.0)).collect();
    let voxels = mask.iter().filter(|&&m| m == 1).count();
    let mvol = vol.with_data(mask)?;
    match out_kind {
        FileKind::Npz => write_segs(&args.out, &mvol)?,
        _ => write_nifti(&args.out, &mvol)?,
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
    Ok(())
}
