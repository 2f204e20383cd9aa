//! `segvol bench`: times SegVol's encoder pieces on every compiled backend and prints a table.

use std::time::{Duration, Instant};

use anyhow::Result;
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
    /// Model size: `base` (ViT-B, 32×256×256) or `tiny`.
    #[arg(long, default_value = "base")]
    pub config: String,
    /// Also time the whole encoder (all blocks; slow on CPU for `base`).
    #[arg(long)]
    pub full: bool,
}

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
        };
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
    let config = match args.config.as_str() {
        "base" => SegVolConfig::base(),
        "tiny" => SegVolConfig::tiny(),
        o => anyhow::bail!("--config `{o}`: expected base or tiny"),
    };
    let kinds: Vec<BackendKind> = if args.backends.is_empty() {
        BackendKind::compiled()
    } else {
        args.backends
            .iter()
            .map(|s| s.parse::<BackendKind>())
            .collect::<Result<_, _>>()?
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    out!(
        "SegVol encoder pieces, config {} (tokens {}, hidden {}, mlp {}), {} timed runs after 1 warm-up, {threads} threads",
        args.config,
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
