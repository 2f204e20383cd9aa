//! Trains the GRU corrector with `segvol_gru::training` on the dev cases and measures, on
//! held-out targets, how much sparse write-back moves DSC over five click rounds: a template for
//! the `train` command and a capacity check for GRU_CORRECTION.md D9 / §8.
//!
//! No trained SegVol ships with the repository, so the base predictions are synthetic: the
//! ground truth shifted by 1–2 voxels, eroded by ~1 voxel and perturbed by per-voxel noise,
//! as logits `1.5 · (signed distance − 0.8) + N(0, 0.6²)`. The baseline therefore cannot use the
//! clicks (there is no decoder to re-run): the comparison is "base prediction" against "base
//! prediction + the corrector's rounds", and an untrained corrector is shown beside the
//! trained one.
//!
//! ```text
//! cargo run --release -p segvol-examples --example train_corrector -- [STEPS] [SHARED_DIR]
//! ```

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::AdamWConfig;
use segvol_backends::{Backend, Flex};
use segvol_eval::edt::edt_squared;
use segvol_eval::rng::Mt19937;
use segvol_eval::{dice, simulate_click};
use segvol_gru::training::{LossWeights, TrainSample, draw_rounds, train_step};
use segvol_gru::{CorrectionSession, GruCorrector, GruCorrectorConfig};
use segvol_sampler::{Click, SamplerConfig};

type AD = Autodiff<Flex>;

struct Target {
    name: String,
    dims: [usize; 3],
    gt: Vec<bool>,
    logits: Vec<f32>,
}

/// Standard normal from two uniforms (Box–Muller) on the project's MT19937.
fn normal(rng: &mut Mt19937) -> f32 {
    let u1 = (f64::from(rng.next_u32()) + 1.0) / 4_294_967_297.0;
    let u2 = f64::from(rng.next_u32()) / 4_294_967_296.0;
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

fn synthetic_logits(gt: &[bool], dims: [usize; 3], rng: &mut Mt19937) -> Vec<f32> {
    let shift = [0, 1, 2].map(|_| (rng.next_u32() % 5) as isize - 2); // −2..=2 voxels
    let mut moved = vec![false; gt.len()];
    for z in 0..dims[0] {
        for y in 0..dims[1] {
            for x in 0..dims[2] {
                let s = [
                    z as isize - shift[0],
                    y as isize - shift[1],
                    x as isize - shift[2],
                ];
                if (0..3).all(|a| s[a] >= 0 && (s[a] as usize) < dims[a]) {
                    let i = (s[0] as usize * dims[1] + s[1] as usize) * dims[2] + s[2] as usize;
                    moved[(z * dims[1] + y) * dims[2] + x] = gt[i];
                }
            }
        }
    }
    let inside = edt_squared(&moved, dims, [1.0; 3]);
    let outside: Vec<bool> = moved.iter().map(|m| !m).collect();
    let outside = edt_squared(&outside, dims, [1.0; 3]);
    inside
        .iter()
        .zip(&outside)
        .map(|(i, o)| {
            let sdf = (i.sqrt() - o.sqrt()) as f32;
            1.5 * (sdf - 0.8) + 0.6 * normal(rng)
        })
        .collect()
}

fn load_targets(shared: &str, rng: &mut Mt19937) -> Result<(Vec<Target>, Vec<Target>)> {
    let held_out = ["ct_kidney_right", "mr_abdomen_multi3", "mni_thalamus"];
    let mut train = Vec::new();
    let mut test = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(format!("{shared}/data/npz"))
        .context("shared/data/npz")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "npz"))
        .collect();
    files.sort();
    for f in files {
        let stem = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if stem.ends_with("_clicks") {
            continue; // same volume as its base case
        }
        let case = segvol_io::ChallengeCase::read(&f)?;
        let Some(gts) = case.gts else { continue };
        let n_classes = gts.data.iter().copied().max().unwrap_or(0);
        for c in 1..=n_classes {
            let gt: Vec<bool> = gts.data.iter().map(|&v| v == c).collect();
            if gt.iter().filter(|g| **g).count() < 50 {
                continue;
            }
            let t = Target {
                name: format!("{stem}:{c}"),
                dims: gts.dims,
                logits: synthetic_logits(&gt, gts.dims, rng),
                gt,
            };
            if held_out.contains(&stem.as_str()) {
                test.push(t);
            } else {
                train.push(t);
            }
        }
    }
    Ok((train, test))
}

/// DSC of the base prediction and after each of five rounds (clicks on the current prediction).
fn evaluate(c: &GruCorrector<Flex>, t: &Target) -> Result<Vec<f64>> {
    let device = Default::default();
    let mut logits = t.logits.clone();
    let mut pred: Vec<bool> = logits.iter().map(|&l| l > 0.0).collect();
    let mut dsc = vec![dice(&pred, &t.gt)];
    let mut clicks: Vec<Click> = Vec::new();
    let mut s = CorrectionSession::new(c, &device);
    for _ in 0..5 {
        if let Some(k) = simulate_click(&pred, &t.gt, t.dims) {
            clicks.push(Click {
                zyx: k.zyx,
                foreground: k.foreground,
            });
        }
        s.step(t.dims, &mut logits, &clicks)?;
        pred = logits.iter().map(|&l| l > 0.0).collect();
        dsc.push(dice(&pred, &t.gt));
    }
    Ok(dsc)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps: usize = args.first().map_or(Ok(300), |s| s.parse())?;
    let shared = args.get(1).cloned().unwrap_or_else(|| "../shared".into());
    let mut rng = Mt19937::new(2025);
    let (train, test) = load_targets(&shared, &mut rng)?;
    println!(
        "{} training targets, {} held-out: {}",
        train.len(),
        test.len(),
        test.iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let device = Default::default();
    AD::seed(&device, 7);
    let cfg = GruCorrectorConfig::default();
    let untrained = cfg.init::<AD>(&device);
    let mut corrector = untrained.clone();
    let sampler = SamplerConfig::default();
    let weights = LossWeights::default();
    let mut optim = AdamWConfig::new().init();
    let t0 = std::time::Instant::now();
    let mut running = Vec::new();
    for step in 1..=steps {
        let batch: Vec<usize> = (0..2)
            .map(|_| rng.next_u32() as usize % train.len())
            .collect();
        let samples: Vec<TrainSample<'_>> = batch
            .iter()
            .map(|&i| TrainSample {
                dims: train[i].dims,
                logits: &train[i].logits,
                gt: &train[i].gt,
            })
            .collect();
        let rounds: Vec<usize> = batch.iter().map(|_| draw_rounds(&mut rng)).collect();
        let (c, stats) = train_step(
            corrector, &mut optim, 1e-3, &samples, &rounds, &sampler, &weights,
        )?;
        corrector = c;
        if stats.used > 0 {
            running.push(stats.loss);
        }
        if step % 50 == 0 {
            let n = running.len().max(1) as f32;
            println!(
                "step {step}: mean loss {:.4} over the last {} samples ({:.1} s)",
                running.iter().sum::<f32>() / n,
                running.len(),
                t0.elapsed().as_secs_f64()
            );
            running.clear();
        }
    }
    println!("| target | model | base | r1 | r2 | r3 | r4 | r5 |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut gains = [0.0f64; 2];
    for t in &test {
        for (k, (name, c)) in [
            ("untrained", untrained.valid()),
            ("trained", corrector.valid()),
        ]
        .into_iter()
        .enumerate()
        {
            let d = evaluate(&c, t)?;
            gains[k] += d[5] - d[0];
            println!(
                "| {} | {name} | {} |",
                t.name,
                d.iter()
                    .map(|v| format!("{v:.4}"))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
    }
    let n = test.len().max(1) as f64;
    println!(
        "mean DSC change after 5 rounds: untrained {:+.4}, trained {:+.4}",
        gains[0] / n,
        gains[1] / n
    );
    Ok(())
}
