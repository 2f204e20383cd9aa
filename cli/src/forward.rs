//! `segvol forward`: the raw model call on a model-grid input, for parity checks and debugging.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::{Tensor, TensorData};
use clap::Args;
use segvol_backends::{Backend, BackendTask, dispatch};
use segvol_core::weights::load_segvol;
use segvol_core::{Prompts, SegVol, SegVolConfig};
use segvol_io::npy::{NpyArray, NpyData};

#[derive(Args, Debug)]
pub struct ForwardArgs {
    #[command(flatten)]
    pub model: crate::case::ModelArgs,
    /// Image on the model grid, float32 `(1,1,D,H,W)` or `(D,H,W)` .npy.
    #[arg(long)]
    pub image: PathBuf,
    /// Box `[d0,h0,w0,d1,h1,w1]` (max inclusive) as a 6-element .npy.
    #[arg(long = "box")]
    pub box_: Option<PathBuf>,
    /// Points `(N,3)` or `(1,N,3)` .npy (d,h,w).
    #[arg(long, requires = "labels")]
    pub points: Option<PathBuf>,
    /// Point labels `(N)` or `(1,N)` .npy: 1 positive, 0 negative, −1 padding.
    #[arg(long, requires = "points")]
    pub labels: Option<PathBuf>,
    /// A structure's name as a text prompt ("liver"): SegVol's prompt template, CLIP's
    /// tokenizer and text tower (the weights must carry it: the official checkpoint does).
    #[arg(long)]
    pub text: Option<String>,
    /// Where to write the logits `(1,1,D,H,W)` float32 .npy.
    #[arg(long)]
    pub logits: PathBuf,
    /// Also write the image embedding `(1,C,gd,gh,gw)`.
    #[arg(long)]
    pub embedding: Option<PathBuf>,
}

fn floats(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let a = segvol_io::read_npy(path)?;
    let v = a.to_f64().with_context(|| {
        format!(
            "{}: expected numbers, found {}",
            path.display(),
            a.dtype_name()
        )
    })?;
    Ok((a.shape.clone(), v.into_iter().map(|x| x as f32).collect()))
}

struct Forward {
    args_weights: Option<PathBuf>,
    config: SegVolConfig,
    image: Vec<f32>,
    prompts: Prompts,
    text: Option<String>,
}

type Out = Result<(Vec<f32>, Vec<usize>, Vec<f32>, Vec<usize>)>;

impl BackendTask for Forward {
    type Output = Out;
    fn run<B: Backend>(self, device: &B::Device) -> Out {
        let model = match &self.args_weights {
            Some(w) => {
                let mut model = SegVol::<B>::new(&self.config, device);
                load_segvol(&mut model, w)?;
                model
            }
            None => segvol_models::segvol_with::<B>(&self.config, device)?.0,
        };
        let mut prompts = self.prompts;
        if let Some(name) = &self.text {
            prompts.text = Some(model.embed_text(name)?);
        }
        let [d, h, w] = self.config.image_size;
        let x = Tensor::<B, 5>::from_data(TensorData::new(self.image, [1, 1, d, h, w]), device);
        let emb = model.embed(x);
        let edims = emb.dims().to_vec();
        let out = model.decode(emb.clone(), &prompts);
        let ldims = out.logits.dims().to_vec();
        let to_vec = |d: TensorData| {
            d.convert::<f32>()
                .to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))
        };
        Ok((
            to_vec(out.logits.into_data())?,
            ldims,
            to_vec(emb.into_data())?,
            edims,
        ))
    }
}

pub fn run(args: &ForwardArgs) -> Result<()> {
    let config = args.model.config()?;
    let (shape, image) = floats(&args.image)?;
    let want: Vec<usize> = std::iter::once(1)
        .chain(std::iter::once(1))
        .chain(config.image_size)
        .collect();
    let n: usize = config.image_size.iter().product();
    if image.len() != n {
        bail!(
            "{}: shape {shape:?} but the model grid is {want:?}",
            args.image.display(),
        );
    }
    let mut prompts = Prompts::default();
    if let Some(b) = &args.box_ {
        let (_, v) = floats(b)?;
        if v.len() != 6 {
            bail!(
                "{}: a box needs 6 numbers [d0,h0,w0,d1,h1,w1], found {}",
                b.display(),
                v.len()
            );
        }
        prompts.boxes = Some([v[0], v[1], v[2], v[3], v[4], v[5]]);
    }
    if let (Some(p), Some(l)) = (&args.points, &args.labels) {
        let (_, pv) = floats(p)?;
        let (_, lv) = floats(l)?;
        if pv.len() != 3 * lv.len() {
            bail!(
                "{} holds {} numbers for {} labels in {}",
                p.display(),
                pv.len(),
                lv.len(),
                l.display()
            );
        }
        prompts.points = lv
            .iter()
            .enumerate()
            .map(|(i, &lab)| ([pv[3 * i], pv[3 * i + 1], pv[3 * i + 2]], lab as i64))
            .collect();
    }
    if prompts.boxes.is_none() && prompts.points.is_empty() && args.text.is_none() {
        bail!("give a --box, --points/--labels, --text, or several of them");
    }
    let kind = args.model.backend()?;
    let (logits, ldims, emb, edims) = dispatch(
        kind,
        Forward {
            args_weights: args.model.weights.clone(),
            config,
            image,
            prompts,
            text: args.text.clone(),
        },
    )?;
    segvol_io::write_npy(
        &args.logits,
        &NpyArray {
            shape: ldims,
            data: NpyData::F32(logits),
        },
    )?;
    if let Some(e) = &args.embedding {
        segvol_io::write_npy(
            e,
            &NpyArray {
                shape: edims,
                data: NpyData::F32(emb),
            },
        )?;
    }
    out!("wrote {} (backend {kind})", args.logits.display());
    Ok(())
}
