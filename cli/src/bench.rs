//! `segvol bench`: times SegVol's encoder pieces on every compiled backend and prints a table.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use burn::tensor::{Distribution, Tensor};
use clap::Args;
use segvol_backends::{Backend, BackendKind, BackendTask, dispatch};
use segvol_core::SegVolConfig;
use segvol_core::image_encoder::{ImageEncoder, VitBlock};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Backends to time (default: every compiled one), e.g. `--backend flex --backend ndarray`.
    #[arg(long = "backend")]
    pub backends: Vec<String>,
    /// Timed repetitions per measurement (after one warm-up run).
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    /// Model size: `base` (ViT-B, 32×256×256), `small` (the shipped model's) or `tiny`.
    /// Default: `base`, and `small` with --train.
    #[arg(long)]
    pub config: Option<String>,
    /// Also time the whole encoder (all blocks; slow on CPU for `base`).
    #[arg(long)]
    pub full: bool,
    /// Instead, time each operation of one ViT block separately (where the time goes);
    /// `bench/segvol_torch_bench.py --ops` prints the same table for PyTorch.
    #[arg(long)]
    pub ops: bool,
    /// Instead, time each stage of one per-click decode (prompt encoder, two-way transformer,
    /// upscaling, hypernetwork, upsample to the model grid).
    #[arg(long)]
    pub decode_ops: bool,
    /// Instead, time SegVol's text prompt: the CLIP tokenizer, the text tower per name (first
    /// call, then from the cache). With --weights, also the checkpoint's load time (the tower
    /// comes with it when the file has its keys); without, a random full-size tower.
    #[arg(long)]
    pub text: bool,
    /// With --text: the weights to load and time (e.g. the official checkpoint). With
    /// --interactive: the SegVol weights to run (config from --config; default: the shipped
    /// model and its corrector).
    #[arg(long)]
    pub weights: Option<std::path::PathBuf>,
    /// Instead, the interactive path on an image, as a viewer's user waits for it: read the
    /// image and open an `InteractiveSession`, a 3-D box (the first action encodes), three
    /// clicks, one undo; the time of each and the process's peak memory.
    #[arg(long, value_name = "IMAGE")]
    pub interactive: Option<std::path::PathBuf>,
    /// With --interactive: the box `z0,y0,x0,z1,y1,x1` (default: the middle half of every
    /// axis).
    #[arg(long = "box", requires = "interactive")]
    pub box_: Option<String>,
    /// With --interactive: no GRU corrector (the default with the shipped model; see
    /// `segvol_models::CORRECTOR_BY_DEFAULT`).
    #[arg(long, requires = "interactive")]
    pub no_corrector: bool,
    /// With --interactive: run the zoom-in windows at every action, as the batch commands do
    /// (the live default of `view` and `serve` is off, for latency).
    #[arg(long, requires = "interactive")]
    pub zoom_in: bool,
    /// Instead, training throughput: steps of a base stage of `segvol train` (the `small`
    /// model unless --config says otherwise, --batch samples, the training set in --data) on one
    /// thread, then one per core; samples per second of each.
    #[arg(long)]
    pub train: bool,
    /// With --train: the training data folder.
    #[arg(long, requires = "train", default_value = "../shared/data/train")]
    pub data: std::path::PathBuf,
    /// With --train: steps timed (after 3 warm-up steps).
    #[arg(long, requires = "train", default_value_t = 30)]
    pub steps: usize,
    /// With --train: the stage, `base-box` or `base-points`.
    #[arg(long, requires = "train", default_value = "base-box")]
    pub stage: String,
    /// With --train: samples per step (the `small` preset's default is 2; a GPU or a machine
    /// of many cores wants more, one lane per sample).
    #[arg(long, requires = "train", default_value_t = 2)]
    pub batch: usize,
    /// With --train: thread counts to time (default: 1 and one per core).
    #[arg(long, requires = "train", value_delimiter = ',')]
    pub threads: Vec<usize>,
}

/// `--train`: one throughput run per thread count.
struct TrainBench {
    config: segvol_train::TrainConfig,
    stage: segvol_train::Stage,
    steps: usize,
    threads: Vec<usize>,
}

impl segvol_backends::AutodiffTask for TrainBench {
    type Output = Result<Vec<segvol_train::bench::Throughput>>;
    fn run<B: burn::tensor::backend::AutodiffBackend>(self, device: &B::Device) -> Self::Output {
        self.threads
            .iter()
            .map(|&t| {
                segvol_train::bench::throughput::<B>(
                    &self.config,
                    self.stage,
                    3,
                    self.steps,
                    t,
                    device,
                )
                .map_err(anyhow::Error::from)
            })
            .collect()
    }
}

fn run_train(args: &BenchArgs) -> Result<()> {
    let preset = args.config.clone().unwrap_or_else(|| "small".into());
    let stage: segvol_train::Stage = args.stage.parse().map_err(anyhow::Error::msg)?;
    if stage == segvol_train::Stage::Corrector {
        anyhow::bail!("--stage {}: expected base-box or base-points", args.stage);
    }
    let mut config = segvol_train::TrainConfig::default();
    config.model.preset = preset.clone();
    config.data.dir = args.data.clone();
    config.base_box.batch = args.batch;
    config.base_points.batch = args.batch;
    config.check().map_err(anyhow::Error::msg)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if args.threads.is_empty() {
        if cores > 1 { vec![1, cores] } else { vec![1] }
    } else {
        args.threads.clone()
    };
    let kind = crate::case::backend_kind(args.backends.first().map(String::as_str))?;
    out!(
        "training throughput: stage {}, preset {preset}, batch {}, {} steps after 3 warm-up, \
         backend Autodiff<{kind}>, {cores} cores",
        stage.name(),
        config.base_box.batch,
        args.steps
    );
    let spin = crate::case::spinner();
    spin.set_message("training");
    let rows = segvol_backends::dispatch_autodiff(
        kind,
        TrainBench {
            config,
            stage,
            steps: args.steps,
            threads,
        },
    )?;
    spin.finish_and_clear();
    out!(
        "| threads | samples/s (median step) | samples/s (overall) | gradient sum + update (ms, median) |\n|---|---|---|---|"
    );
    for r in rows {
        out!(
            "| {} | {:.2} | {:.2} | {:.1} |",
            r.threads,
            r.median,
            r.mean,
            r.update_s * 1e3
        );
    }
    Ok(())
}

/// `--interactive`: the shipped model (or --weights) through the scripted session.
struct InteractiveBench {
    files: crate::case::ModelFiles,
    image: Vec<f32>,
    dims: [usize; 3],
    spacing: [f64; 3],
    bbox: ([usize; 3], [usize; 3]),
    zoom_in: bool,
}

impl BackendTask for InteractiveBench {
    type Output = Result<(f64, f64, Vec<segvol_interactive::latency::TimedAction>)>;
    fn run<B: Backend>(self, device: &B::Device) -> Self::Output {
        let t = Instant::now();
        let (model, corrector) = self
            .files
            .load::<B>(&indicatif::ProgressBar::hidden(), device)?;
        let load_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut s = segvol_interactive::InteractiveSession::new(
            &model,
            corrector.as_ref(),
            device,
            self.image,
            self.dims,
            self.spacing,
        )?;
        s.set_zoom_in(self.zoom_in);
        let open_s = t.elapsed().as_secs_f64();
        let steps = segvol_interactive::latency::run_script(&mut s, self.bbox.0, self.bbox.1)?;
        Ok((load_s, open_s, steps))
    }
}

/// Peak resident memory of this process so far, bytes (Linux; `None` elsewhere).
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(l.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

fn run_interactive(args: &BenchArgs, image: &std::path::Path) -> Result<()> {
    use crate::case::{ModelArgs, ModelFiles};
    let model = ModelArgs {
        weights: args.weights.clone(),
        config: args
            .weights
            .as_ref()
            .map(|_| args.config.clone().unwrap_or_else(|| "base".into())),
        backend: args.backends.first().cloned(),
        max_voxels: crate::case::DEFAULT_MAX_VOXELS,
        box_start: None,
    };
    let mut files = ModelFiles::new(&model, None)?.with_default_corrector();
    if args.no_corrector {
        files.corrector = None;
    }
    crate::case::check_voxels(image, model.max_voxels)?;
    let t = Instant::now();
    let (img, _) = segvol_io::read_image_source(image, &Default::default())?;
    let (dims, spacing) = (img.dims(), img.spacing());
    let data = img.to_f32().data;
    drop(img);
    segvol_io::check_image(image, dims, &data)?;
    let read_s = t.elapsed().as_secs_f64();
    let bbox = match &args.box_ {
        Some(b) => segvol_io::prompt::parse_box(b, Some(dims))?,
        None => (
            dims.map(|d| d / 4),
            dims.map(|d| (d * 3 / 4).min(d - 1).max(d / 4)),
        ),
    };
    let kind = model.backend()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    out!(
        "Interactive path on {} ({}×{}×{} voxels), {}, corrector {}, backend {kind}, {threads} threads",
        image.display(),
        dims[0],
        dims[1],
        dims[2],
        model.weights_label(),
        if files.corrector.is_some() {
            "on"
        } else {
            "off"
        },
    );
    let (load_s, open_s, steps) = dispatch(
        kind,
        InteractiveBench {
            files,
            image: data,
            dims,
            spacing,
            bbox,
            zoom_in: args.zoom_in,
        },
    )?;
    out!(
        "box {},{},{} – {},{},{}; zoom-in {}",
        bbox.0[0],
        bbox.0[1],
        bbox.0[2],
        bbox.1[0],
        bbox.1[1],
        bbox.1[2],
        if args.zoom_in { "on" } else { "off" }
    );
    out!("| step | ms | encode ms | decode + correct ms | object voxels |\n|---|---|---|---|---|");
    out!("| read image | {:.0} | | | |", read_s * 1e3);
    out!("| load model | {:.0} | | | |", load_s * 1e3);
    out!("| open session | {:.0} | | | |", open_s * 1e3);
    for s in &steps {
        out!(
            "| {} | {:.0} | {:.0} | {:.0} | {} |",
            s.action,
            s.wall_s * 1e3,
            s.encode_s * 1e3,
            s.decode_s * 1e3,
            s.voxels
        );
    }
    match peak_rss() {
        Some(b) => out!("peak RSS: {:.2} GB", b as f64 / 1e9),
        None => out!("peak RSS: not known on this system"),
    }
    Ok(())
}

/// Names the text benchmark encodes.
const TEXT_NAMES: [&str; 8] = [
    "liver",
    "spleen",
    "left kidney",
    "right kidney",
    "aorta",
    "pancreas",
    "inferior vena cava",
    "urinary bladder",
];

/// `--text`: (load seconds or None, whether a tower is there, tokenizer build seconds, per
/// name: (tokens, first-call seconds, cached seconds)).
struct TextBench {
    config: SegVolConfig,
    weights: Option<std::path::PathBuf>,
}

type TextTimes = (Option<f64>, bool, f64, Vec<(usize, f64, f64)>);

impl BackendTask for TextBench {
    type Output = Result<TextTimes>;
    fn run<B: Backend>(self, device: &B::Device) -> Result<TextTimes> {
        use segvol_core::text::{TextConfig, TextEncoder, tokenize_prompt};
        let mut model = segvol_core::SegVol::<B>::new(&self.config, device);
        let load = match &self.weights {
            Some(w) => {
                let t = Instant::now();
                segvol_core::weights::load_segvol(&mut model, w)?;
                Some(t.elapsed().as_secs_f64())
            }
            None => {
                let c = TextConfig::clip_b32(self.config.hidden_size);
                model.set_text_encoder(Some(TextEncoder::new(&c, device)));
                None
            }
        };
        // The first tokenisation builds the tokenizer (once per process).
        let t = Instant::now();
        let _ = tokenize_prompt("");
        let tok_s = t.elapsed().as_secs_f64();
        let has = model.has_text();
        let mut rows = Vec::new();
        if has {
            for name in TEXT_NAMES {
                let tokens = tokenize_prompt(name)?.len();
                let t = Instant::now();
                let v = model.embed_text(name)?;
                let first = t.elapsed().as_secs_f64();
                let t = Instant::now();
                let w = model.embed_text(name)?;
                let cached = t.elapsed().as_secs_f64();
                anyhow::ensure!(v == w, "the cache returned other values");
                rows.push((tokens, first, cached));
            }
        }
        Ok((load, has, tok_s, rows))
    }
}

/// A random model of `c`'s size, a random image embedding and a box + one click: the inputs
/// of one per-click decode.
fn decode_setup<B: Backend>(
    c: &SegVolConfig,
    device: &B::Device,
) -> (segvol_core::SegVol<B>, Tensor<B, 5>, segvol_core::Prompts) {
    let model = segvol_core::SegVol::<B>::new(c, device);
    let [gd, gh, gw] = c.grid();
    let emb = Tensor::<B, 5>::random(
        [1, c.hidden_size, gd, gh, gw],
        Distribution::Normal(0.0, 1.0),
        device,
    );
    let prompts = segvol_core::Prompts {
        boxes: Some([2.0, 20.0, 20.0, 20.0, 120.0, 140.0]),
        points: vec![([10.0, 60.0, 70.0], 1)],
        text: None,
        mask: None,
        image: None,
    };
    (model, emb, prompts)
}

/// The stages of one per-click decode, each the mean of `iters` runs after a warm-up.
struct DecodeOpsBench {
    config: SegVolConfig,
    iters: usize,
}

impl BackendTask for DecodeOpsBench {
    type Output = Vec<(&'static str, Duration)>;
    fn run<B: Backend>(self, device: &B::Device) -> Vec<(&'static str, Duration)> {
        let c = &self.config;
        let (model, emb, prompts) = decode_setup::<B>(c, device);
        let mut sums: Vec<(&'static str, Duration)> = Vec::new();
        for run in 0..=self.iters {
            let mut marks: Vec<(&'static str, Instant)> = Vec::new();
            let start = Instant::now();
            let out = model.decode_marked(emb.clone(), &prompts, &mut |stage| {
                marks.push((stage, Instant::now()))
            });
            let _ = out.logits.into_data();
            if run == 0 {
                continue; // warm-up
            }
            let mut prev = start;
            for (i, (stage, t)) in marks.into_iter().enumerate() {
                if sums.len() <= i {
                    sums.push((stage, Duration::ZERO));
                }
                sums[i].1 += t - prev;
                prev = t;
            }
        }
        sums.into_iter()
            .map(|(s, d)| (s, d / self.iters.max(1) as u32))
            .collect()
    }
}

/// The operations of one ViT block at the config's sizes, each timed alone.
struct OpsBench {
    config: SegVolConfig,
    iters: usize,
}

impl BackendTask for OpsBench {
    type Output = Vec<(&'static str, Duration)>;
    fn run<B: Backend>(self, device: &B::Device) -> Vec<(&'static str, Duration)> {
        use burn::tensor::activation::{gelu, softmax};
        let c = &self.config;
        let (n, ch, m, heads) = (c.num_tokens(), c.hidden_size, c.mlp_dim, c.num_heads);
        let hd = ch / heads;
        let r = |shape: Vec<usize>| {
            Tensor::<B, 3>::random(shape, Distribution::Normal(0.0, 1.0), device)
        };
        let x = r(vec![1, n, ch]);
        let norm = burn::nn::LayerNormConfig::new(ch).init::<B>(device);
        let w_qkv = r(vec![1, ch, 3 * ch]);
        let q = r(vec![heads, n, hd]);
        let kt = r(vec![heads, hd, n]);
        let scores = r(vec![heads, n, n]);
        let v = r(vec![heads, n, hd]);
        let w_out = r(vec![1, ch, ch]);
        let w1 = r(vec![1, ch, m]);
        let hmid = r(vec![1, n, m]);
        let w2 = r(vec![1, m, ch]);
        let block = VitBlock::<B>::new(ch, m, heads, c.layer_norm_eps, device);
        let it = self.iters;
        vec![
            (
                "layer norm (x2 per block)",
                time(it, || {
                    let _ = norm.forward(x.clone()).into_data();
                }),
            ),
            (
                "qkv matmul",
                time(it, || {
                    let _ = x.clone().matmul(w_qkv.clone()).into_data();
                }),
            ),
            (
                "scores q.k^T (all heads)",
                time(it, || {
                    let _ = q.clone().matmul(kt.clone()).into_data();
                }),
            ),
            (
                "softmax over keys",
                time(it, || {
                    let _ = softmax(scores.clone(), 2).into_data();
                }),
            ),
            (
                "attention . v",
                time(it, || {
                    let _ = scores.clone().matmul(v.clone()).into_data();
                }),
            ),
            (
                "out projection",
                time(it, || {
                    let _ = x.clone().matmul(w_out.clone()).into_data();
                }),
            ),
            (
                "mlp linear1",
                time(it, || {
                    let _ = x.clone().matmul(w1.clone()).into_data();
                }),
            ),
            (
                "gelu (erf)",
                time(it, || {
                    let _ = gelu(hmid.clone()).into_data();
                }),
            ),
            (
                "mlp linear2",
                time(it, || {
                    let _ = hmid.clone().matmul(w2.clone()).into_data();
                }),
            ),
            (
                BLOCK_AS_RUN,
                time(it, || {
                    let _ = block.forward(x.clone()).into_data();
                }),
            ),
        ]
    }
}

/// The last row of `--ops`: the model's own block, the code that really runs on this backend
/// (on flex, segvol-kernels' fused paths instead of the operations above).
const BLOCK_AS_RUN: &str = "one ViT block as the model runs it";

struct Timings {
    patch: Duration,
    block: Duration,
    decode: Duration,
    encoder: Option<Duration>,
}

struct EncoderBench {
    config: SegVolConfig,
    iters: usize,
    full: bool,
}

fn time<F: FnMut()>(iters: usize, mut f: F) -> Duration {
    f(); // warm-up (and autotune on GPU backends)
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed() / iters.max(1) as u32
}

impl BackendTask for EncoderBench {
    type Output = Timings;
    fn run<B: Backend>(self, device: &B::Device) -> Timings {
        let c = &self.config;
        let [d, h, w] = c.image_size;
        let image = Tensor::<B, 5>::random([1, 1, d, h, w], Distribution::Normal(0.0, 1.0), device);
        let encoder = ImageEncoder::<B>::new(c, device);
        let patch = time(self.iters, || {
            let _ = encoder.patch_embedding_forward(image.clone()).into_data();
        });
        let tokens = Tensor::<B, 3>::random(
            [1, c.num_tokens(), c.hidden_size],
            Distribution::Normal(0.0, 1.0),
            device,
        );
        let block = VitBlock::<B>::new(
            c.hidden_size,
            c.mlp_dim,
            c.num_heads,
            c.layer_norm_eps,
            device,
        );
        let block_t = time(self.iters, || {
            let _ = block.forward(tokens.clone()).into_data();
        });
        // Per-click cost: prompt encoder + mask decoder + final upsampling on a cached embedding.
        let (model, emb, prompts) = decode_setup::<B>(c, device);
        let decode = time(self.iters, || {
            let _ = model.decode(emb.clone(), &prompts).logits.into_data();
        });
        let enc = self.full.then(|| {
            time(self.iters, || {
                let _ = encoder.forward(image.clone()).into_data();
            })
        });
        Timings {
            patch,
            block: block_t,
            decode,
            encoder: enc,
        }
    }
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if let Some(image) = &args.interactive {
        return run_interactive(args, image);
    }
    if args.train {
        return run_train(args);
    }
    let preset = args.config.clone().unwrap_or_else(|| "base".into());
    if args.weights.is_some() && !args.text {
        anyhow::bail!("--weights goes with --text or --interactive");
    }
    let config = SegVolConfig::named(&preset).context("--config")?;
    let kinds: Vec<BackendKind> = if args.backends.is_empty() {
        BackendKind::compiled()
    } else {
        args.backends
            .iter()
            .map(|s| s.parse::<BackendKind>())
            .collect::<Result<_, _>>()?
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if args.text {
        out!("SegVol's text prompt, config {}, {threads} threads", preset);
        for kind in kinds {
            let (load, has, tok_s, rows) = dispatch(
                kind,
                TextBench {
                    config: config.clone(),
                    weights: args.weights.clone(),
                },
            )?;
            out!("\n{kind}");
            match (load, &args.weights) {
                (Some(l), Some(w)) => out!(
                    "load {}: {:.2} s ({})",
                    w.display(),
                    l,
                    if has {
                        "with the text tower"
                    } else {
                        "no text keys: image model only"
                    }
                ),
                _ => out!("random full-size CLIP text tower (no --weights)"),
            }
            out!("tokenizer ready in {:.1} ms", tok_s * 1e3);
            if !rows.is_empty() {
                out!("| name | tokens | first call ms | cached ms |\n|---|---|---|---|");
                for (name, (n, first, cached)) in TEXT_NAMES.iter().zip(&rows) {
                    out!(
                        "| {name} | {n} | {:.1} | {:.3} |",
                        first * 1e3,
                        cached * 1e3
                    );
                }
                let mean = rows.iter().map(|r| r.1).sum::<f64>() / rows.len() as f64;
                out!("mean first call: {:.1} ms per name", mean * 1e3);
            }
        }
        return Ok(());
    }
    if args.decode_ops {
        out!(
            "One per-click decode by stage, config {}, {} timed runs after 1 warm-up, {threads} threads",
            preset,
            args.iters
        );
        for kind in kinds {
            let rows = dispatch(
                kind,
                DecodeOpsBench {
                    config: config.clone(),
                    iters: args.iters,
                },
            );
            out!("\n{kind}\n| stage | ms |\n|---|---|");
            let total: Duration = rows.iter().map(|r| r.1).sum();
            for (name, d) in rows {
                out!("| {name} | {:.1} |", d.as_secs_f64() * 1e3);
            }
            out!("| total | {:.1} |", total.as_secs_f64() * 1e3);
        }
        return Ok(());
    }
    if args.ops {
        out!(
            "One ViT block's operations, config {} (tokens {}, hidden {}, mlp {}, heads {}), {} timed runs after 1 warm-up, {threads} threads",
            preset,
            config.num_tokens(),
            config.hidden_size,
            config.mlp_dim,
            config.num_heads,
            args.iters
        );
        for kind in kinds {
            let rows = dispatch(
                kind,
                OpsBench {
                    config: config.clone(),
                    iters: args.iters,
                },
            );
            out!(
                "\n{kind}: burn's generic operations (what ndarray, wgpu, cuda and training run)\n| operation | ms |\n|---|---|"
            );
            let mut total = Duration::ZERO;
            let mut real = None;
            for (name, d) in rows {
                if name == BLOCK_AS_RUN {
                    real = Some(d);
                    continue;
                }
                // The block has two layer norms.
                total += if name.starts_with("layer norm") {
                    d * 2
                } else {
                    d
                };
                out!("| {name} | {:.1} |", d.as_secs_f64() * 1e3);
            }
            out!(
                "| sum of the generic operations | {:.1} |",
                total.as_secs_f64() * 1e3
            );
            if let Some(d) = real {
                let how = if segvol_core::fast::is_active::<segvol_backends::Flex>()
                    && kind.to_string() == "flex"
                {
                    "segvol-kernels' fused paths"
                } else {
                    "burn's generic code"
                };
                out!("| {BLOCK_AS_RUN} ({how}) | {:.1} |", d.as_secs_f64() * 1e3);
            }
        }
        return Ok(());
    }
    out!(
        "SegVol encoder pieces, config {} (tokens {}, hidden {}, mlp {}), {} timed runs after 1 warm-up, {threads} threads",
        preset,
        config.num_tokens(),
        config.hidden_size,
        config.mlp_dim,
        args.iters
    );
    out!(
        "| backend | patch embedding 1x1x{}x{}x{} (ms) | one ViT block (ms) | per-click decode (ms) | full encoder (ms) |",
        config.image_size[0],
        config.image_size[1],
        config.image_size[2]
    );
    out!("|---|---|---|---|---|");
    for kind in kinds {
        let t = dispatch(
            kind,
            EncoderBench {
                config: config.clone(),
                iters: args.iters,
                full: args.full,
            },
        );
        let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e3);
        out!(
            "| {kind} | {} | {} | {} | {} |",
            ms(t.patch),
            ms(t.block),
            ms(t.decode),
            t.encoder.map_or("-".into(), ms)
        );
    }
    Ok(())
}
