//! Stage 3: the GRU corrector on the frozen base model (GRU_CORRECTION.md §7, D8).
//!
//! The base model is frozen, so each training sample's image embedding and box logits are
//! computed once and cached (`cache_samples` positive samples drawn with the stage's seed).
//! Each step draws a batch from the cache and, per sample, a round count from
//! P(0..5) = (1,3,10,10,3,1)/28; `segvol_gru::training::sample_loss` simulates the CVPR25 clicks
//! on the current prediction, re-decodes box + clicks from the cached embedding (stage 2 of §7,
//! the D9 pipeline; `redecode = false` keeps stage 1's accumulation on the box logits) and
//! corrects, with loss Dice + BCE + point BCE + λ·consistency.

use std::time::Instant;

use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use segvol_core::{Prompts, SegVol};
use segvol_gru::training::{LossWeights, TrainSample, draw_rounds, sample_loss};
use segvol_gru::{GruCorrector, GruCorrectorConfig};
use segvol_sampler::{Click, SamplerConfig};

use crate::config::lr_at;
use crate::data::{Dataset, Rng, box_prompt, step_seed};
use crate::run::{Run, Stage, adamw};
use crate::{Progress, TrainError};

/// One cached sample: what the frozen model says once, reused every time it is drawn.
pub struct Cached<B: Backend> {
    /// Ground truth on the grid.
    pub gt: Vec<bool>,
    /// Image embedding.
    pub embedding: Tensor<B, 5>,
    /// The box prompt.
    pub boxes: [f32; 6],
    /// Box-only logits on the grid.
    pub logits: Vec<f32>,
    /// The model-grid image, for a model with `mask_prompt_image`.
    pub image: Option<Vec<f32>>,
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap_or_default()
}

/// Draws and encodes `n` positive samples (non-empty masks) with the frozen `model`.
pub fn build_cache<B: Backend>(
    model: &SegVol<B>,
    data: &Dataset,
    n: usize,
    seed: u64,
    aug: &crate::data::Augment,
    device: &B::Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Vec<Cached<B>> {
    let grid = model.image_size();
    let aug = crate::data::Augment {
        positive_p: 1.0,
        ..aug.clone()
    };
    let mut rng = Rng::new(step_seed(seed, Stage::Corrector.id(), u64::MAX));
    let mut out = Vec::with_capacity(n);
    let mut tries = 0;
    while out.len() < n && tries < 20 * n {
        tries += 1;
        let s = data.draw(&mut rng, grid, &aug);
        if !s.gt.iter().any(|&g| g) {
            continue;
        }
        let image = model.config().mask_prompt_image.then(|| s.image.clone());
        let img = Tensor::<B, 5>::from_data(
            TensorData::new(s.image, [1, 1, grid[0], grid[1], grid[2]]),
            device,
        );
        let embedding = model.embed(img);
        let boxes = box_prompt(&s.gt, grid, &mut rng);
        let prompts = Prompts {
            boxes: Some(boxes),
            image: image.clone(),
            ..Prompts::default()
        };
        let logits = host(model.decode(embedding.clone(), &prompts).logits);
        out.push(Cached {
            gt: s.gt,
            embedding,
            boxes,
            logits,
            image,
        });
        progress(out.len(), n);
    }
    out
}

/// Trains the corrector (resuming from its checkpoint when there is one) and writes its final
/// weights (PyTorch layout, `segvol_gru::save_corrector`).
///
/// # Errors
/// [`TrainError`] for checkpoint I/O, a bad corrector config, or a NaN loss.
pub fn train_corrector<B: AutodiffBackend>(
    run: &Run,
    base: &SegVol<B::InnerBackend>,
    data: &Dataset,
    device: &B::Device,
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<GruCorrector<B>, TrainError> {
    let st = run.config.corrector.clone();
    let stage = Stage::Corrector;
    let cfg = GruCorrectorConfig {
        k: st.k,
        hidden: st.hidden,
        coord_head: st.coord_head,
        max_shift: st.max_shift,
        splat_radius: 0,
    };
    cfg.validate().map_err(TrainError::Model)?;
    // Seeded initial weights: the same run gives the same corrector.
    B::seed(device, run.config.seed ^ 0xC0DE);
    let (mut corrector, mut optim, mut state) = run.resume(
        stage,
        cfg.init::<B>(device),
        adamw::<B, GruCorrector<B>>(st.weight_decay, st.grad_clip),
        device,
    )?;
    let grid = base.image_size();
    let mut cache_progress = |i: usize, n: usize| {
        let _ = progress(&Progress {
            stage,
            step: 0,
            steps: st.steps,
            loss: f32::NAN,
            samples_per_s: 0.0,
            message: Some(format!("caching embeddings {i}/{n}")),
        });
    };
    let cache = build_cache(
        base,
        data,
        st.cache_samples,
        run.config.seed,
        &run.config.augment,
        device,
        &mut cache_progress,
    );
    if cache.is_empty() {
        return Err(TrainError::Model(
            "no positive sample could be drawn for the corrector".into(),
        ));
    }
    let sampler = SamplerConfig {
        k: st.k,
        radius: st.radius,
        threads: 1,
        ..SamplerConfig::default()
    };
    let weights = LossWeights {
        consistency: st.consistency,
        ..LossWeights::default()
    };
    let started = Instant::now();
    let base_elapsed = state.elapsed_s;
    while state.step < st.steps {
        let step = state.step;
        let t0 = Instant::now();
        let mut rng = Rng::new(step_seed(run.config.seed, stage.id(), step as u64));
        let lr = lr_at(step, st.steps, st.warmup, st.lr, st.min_lr);
        let mut total: Option<Tensor<B, 1>> = None;
        let mut used = 0usize;
        let mut terms = [0f32; 4];
        for _ in 0..st.batch {
            let c = &cache[rng.below(cache.len())];
            let rounds = draw_rounds(rng.mt());
            let mut redecode = |clicks: &[Click]| -> Vec<f32> {
                let prompts = Prompts {
                    boxes: Some(c.boxes),
                    points: clicks
                        .iter()
                        .map(|k| (k.zyx.map(|v| v as f32), i64::from(k.foreground)))
                        .collect(),
                    text: None,
                    mask: None,
                    image: c.image.clone(),
                };
                host(base.decode(c.embedding.clone(), &prompts).logits)
            };
            let sample = TrainSample {
                dims: grid,
                logits: &c.logits,
                gt: &c.gt,
            };
            let l = sample_loss(
                &corrector,
                &sample,
                rounds,
                &sampler,
                &weights,
                if st.redecode {
                    Some(&mut redecode)
                } else {
                    None
                },
            )
            .map_err(|e| TrainError::Model(e.to_string()))?;
            if let Some(l) = l {
                used += 1;
                for (t, v) in terms.iter_mut().zip(l.terms) {
                    *t += v;
                }
                total = Some(match total {
                    Some(t) => t + l.loss,
                    None => l.loss,
                });
            }
        }
        let mut loss_v = f32::NAN;
        if let Some(total) = total {
            let loss = total.div_scalar(used as f32);
            loss_v = host(loss.clone()).first().copied().unwrap_or(f32::NAN);
            if !loss_v.is_finite() {
                return Err(TrainError::Diverged {
                    stage: stage.name(),
                    step,
                });
            }
            let grads = GradientsParams::from_grads(loss.backward(), &corrector);
            corrector = optim.step(lr, corrector, grads);
        }
        state.step += 1;
        state.samples += st.batch;
        state.elapsed_s = base_elapsed + started.elapsed().as_secs_f64();
        let dt = t0.elapsed().as_secs_f64();
        let u = used.max(1) as f32;
        run.log(&serde_json::json!({
            "stage": stage.name(), "step": state.step, "loss": loss_v, "used": used,
            "dice": terms[0] / u, "bce": terms[1] / u, "point_bce": terms[2] / u,
            "consistency": terms[3] / u, "lr": lr, "samples_per_s": st.batch as f64 / dt,
            "elapsed_s": state.elapsed_s,
        }))?;
        let go_on = progress(&Progress {
            stage,
            step: state.step,
            steps: st.steps,
            loss: loss_v,
            samples_per_s: st.batch as f64 / dt,
            message: None,
        });
        if !go_on {
            run.checkpoint(stage, &state, &corrector, &optim)?;
            return Err(TrainError::Stopped {
                stage: stage.name(),
                step: state.step,
            });
        }
        let out_of_time =
            crate::config::ends_early(st.max_minutes, st.stop_after, started, state.step);
        if state.step.is_multiple_of(st.checkpoint_every) || state.step == st.steps || out_of_time {
            run.checkpoint(stage, &state, &corrector, &optim)?;
        }
        if out_of_time {
            break;
        }
    }
    let path = run.final_weights(stage);
    segvol_gru::save_corrector(&corrector, &path).map_err(|e| TrainError::Io {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    state.done = true;
    run.checkpoint(stage, &state, &corrector, &optim)?;
    run.log(&serde_json::json!({
        "stage": stage.name(), "event": "done", "step": state.step,
        "elapsed_s": state.elapsed_s, "samples": state.samples,
    }))?;
    Ok(corrector)
}
