//! Stages 1 and 2: SegVol itself, on the model grid.
//!
//! Stage `base-box`: the box prompt of each sample (tight or challenge-style, see
//! [`crate::data::box_prompt`]); loss = soft Dice + BCE on the model-grid logits.
//!
//! Stage `base-points`: as stage 1, plus 0–5 clicks (drawn from P = (1,3,10,10,3,1)/28): the
//! first from the ground truth (or the current error, when there is a box), each next one from
//! the error of the model's own prediction with the clicks so far, by the CVPR25 rule in
//! `segvol-eval` (centre of the largest error component; fg or bg by the ground truth). The
//! prediction for each click is a decode of the cached embedding without gradient; the loss is
//! on the final decode. A fraction of the samples with clicks drop the box (clicks only). The
//! BCE is boundary-weighted (`1 + α·exp(−d²/(2σ²))`, GRU_CORRECTION.md §7).
//!
//! Two options, both off by default (no draw, so older runs replay unchanged):
//! `loose_box_p` widens a sample's box in plane as the CVPR25 box generator does
//! ([`crate::data::widen_in_plane`]), and `box_step_p` makes a points-stage sample a box step
//! (no clicks) before the clicks' count is drawn.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use segvol_core::{Prompts, SegVol, SegVolConfig};
use segvol_eval::edt::edt_squared;
use segvol_eval::simulate_click;
use segvol_gru::training::draw_rounds;

use crate::config::{StageSettings, lr_at};
use crate::data::{Dataset, Rng, Sample, ValCase, box_prompt, splitmix, step_seed, widen_in_plane};
use crate::run::{Run, Stage, adamw};
use crate::validate::quick_validate;
use crate::{Progress, TrainError};

/// Loss of one sample and its parts.
pub struct BaseLoss<B: AutodiffBackend> {
    /// Dice + (weighted) BCE, `[1]`.
    pub loss: Tensor<B, 1>,
    /// Soft Dice term.
    pub dice: f32,
    /// BCE term.
    pub bce: f32,
    /// Clicks used.
    pub clicks: usize,
}

fn host<B: burn::tensor::backend::Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap_or_default()
}

/// Boundary weights `1 + α·exp(−d²/(2σ²))` with d the distance (voxels) to the other side of
/// the ground-truth surface.
pub fn boundary_weights(gt: &[bool], dims: [usize; 3], alpha: f32, sigma: f32) -> Vec<f32> {
    let inside = edt_squared(gt, dims, [1.0; 3]);
    let inv: Vec<bool> = gt.iter().map(|g| !g).collect();
    let outside = edt_squared(&inv, dims, [1.0; 3]);
    let s2 = 2.0 * f64::from(sigma) * f64::from(sigma);
    gt.iter()
        .enumerate()
        .map(|(i, &g)| {
            let d2 = if g { inside[i] } else { outside[i] };
            if d2.is_finite() {
                1.0 + alpha * (-d2 / s2).exp() as f32
            } else {
                1.0
            }
        })
        .collect()
}

/// The loss of one sample (see the module docs).
pub fn sample_loss<B: AutodiffBackend>(
    model: &SegVol<B>,
    s: &Sample,
    stage: Stage,
    settings: &StageSettings,
    rng: &mut Rng,
    device: &B::Device,
) -> BaseLoss<B> {
    let grid = model.image_size();
    let n: usize = grid.iter().product();
    let img = Tensor::<B, 5>::from_data(
        TensorData::new(s.image.clone(), [1, 1, grid[0], grid[1], grid[2]]),
        device,
    );
    let emb = model.embed(img);
    let mut bx = box_prompt(&s.gt, grid, rng);
    if settings.loose_box_p > 0.0 && rng.chance(settings.loose_box_p) {
        widen_in_plane(
            &mut bx,
            grid,
            rng.below(settings.loose_box_max.saturating_add(1)),
        );
    }
    let mut prompts = Prompts {
        boxes: Some(bx),
        points: Vec::new(),
        text: None,
        mask: None,
        image: model.config().mask_prompt_image.then(|| s.image.clone()),
    };
    let has_fg = s.gt.iter().any(|&g| g);
    if stage == Stage::BasePoints && has_fg {
        let box_step = settings.box_step_p > 0.0 && rng.chance(settings.box_step_p);
        let clicks = if box_step { 0 } else { draw_rounds(rng.mt()) };
        if clicks > 0 && rng.chance(settings.no_box_p) {
            prompts.boxes = None;
        }
        // With the mask prompt, each round is given the previous round's prediction, as at
        // inference (the box step's, then each click's).
        let use_mask = model.config().mask_prompt;
        // The rounds' predictions take no gradient: they run on the inner backend (no graph
        // recorded, the inference kernels), from the same parameters and embedding.
        let inner = model.valid();
        let inner_emb = emb.clone().inner();
        let decode_mask = |p: &Prompts| -> Vec<bool> {
            host(inner.decode(inner_emb.clone(), p).logits)
                .iter()
                .map(|&l| l > 0.0)
                .collect()
        };
        let mut pred = vec![false; n];
        let mut have_pred = false;
        if prompts.boxes.is_some() {
            pred = decode_mask(&prompts);
            have_pred = true;
        }
        for i in 0..clicks {
            let Some(c) = simulate_click(&pred, &s.gt, grid) else {
                break;
            };
            prompts
                .points
                .push((c.zyx.map(|v| v as f32), i64::from(c.foreground)));
            if use_mask && have_pred {
                prompts.mask = Some(pred.iter().map(|&p| f32::from(u8::from(p))).collect());
            }
            if i + 1 < clicks {
                pred = decode_mask(&prompts);
                have_pred = true;
            }
        }
    }
    let logits: Tensor<B, 1> = model.decode(emb, &prompts).logits.reshape([n]);
    let gt = Tensor::<B, 1>::from_data(
        TensorData::new(
            s.gt.iter()
                .map(|&g| f32::from(u8::from(g)))
                .collect::<Vec<f32>>(),
            [n],
        ),
        device,
    );
    let p = burn::tensor::activation::sigmoid(logits.clone());
    let inter = (p.clone() * gt.clone()).sum();
    let dice = (inter.mul_scalar(2.0).add_scalar(1.0)
        / (p.sum() + gt.clone().sum()).add_scalar(1.0))
    .neg()
    .add_scalar(1.0);
    // max(l, 0) − l·g + log(1 + e^−|l|): BCE with logits, stable.
    let per_voxel =
        logits.clone().clamp_min(0.0) - logits.clone() * gt + logits.abs().neg().exp().log1p();
    let n_fg = s.gt.iter().filter(|&&g| g).count();
    let pos_w = if n_fg > 0 {
        ((n - n_fg) as f32 / n_fg as f32).clamp(1.0, settings.pos_weight_max.max(1.0))
    } else {
        1.0
    };
    let bce = if (settings.boundary_weight > 0.0 || pos_w > 1.0) && has_fg {
        let mut w = if settings.boundary_weight > 0.0 {
            boundary_weights(
                &s.gt,
                grid,
                settings.boundary_weight,
                settings.boundary_sigma,
            )
        } else {
            vec![1.0; n]
        };
        for (wv, &g) in w.iter_mut().zip(&s.gt) {
            if g {
                *wv *= pos_w;
            }
        }
        let wsum: f32 = w.iter().sum();
        let w = Tensor::<B, 1>::from_data(TensorData::new(w, [n]), device);
        (per_voxel * w).sum().div_scalar(wsum)
    } else {
        per_voxel.mean()
    };
    let (d, b) = (
        host(dice.clone()).first().copied().unwrap_or(f32::NAN),
        host(bce.clone()).first().copied().unwrap_or(f32::NAN),
    );
    BaseLoss {
        loss: dice + bce,
        dice: d,
        bce: b,
        clicks: prompts.points.len(),
    }
}

/// One training step's samples, each on its own thread: sample `k` runs `work(model, seeds[k])`
/// (which returns its share of the loss and some logged values), then its own backward pass.
/// Returns, in sample order, each sample's gradients, loss value and logged values. `threads`
/// 0 means one per core.
///
/// burn's autodiff puts every tensor that shares a node into one graph behind one lock, and the
/// parameters are such nodes: two samples of one model would be one graph, their backward
/// passes serial. So every lane runs on a *fork* of the model (the same parameter ids and
/// values, fresh autodiff leaves), which makes its graph its own. At the `small` model's sizes
/// most of flex's operations run on one core, so a step's samples use the cores instead. The gradients are summed in sample order by the caller, so the result does
/// not depend on how many threads ran.
///
/// The threads move in lock-step — all forward passes, then all backward passes — because
/// burn-autodiff 0.21 sweeps *every* graph at the end of each backward pass
/// (`GraphCleaner::cleanup_orphaned_entries`): against another thread's graph that is still
/// being built that sweep is quadratic in its size (it took half of the training time, measured
/// with `perf`), and it can free a step that graph is registering (tracel-ai/burn#5573, a lost
/// gradient). While every other graph is itself in its backward pass, neither happens.
///
/// Each lane runs in a one-thread rayon pool of its own (`ThreadPool::install`): flex's
/// parallel operations then stay on the lane's core. On the global pool every lane's work
/// queued on the same workers, the lanes sat blocked on its latches and the workers spun
/// (measured with `perf`: no faster than one graph per step).
pub fn parallel_grads<B, M, F>(
    model: &M,
    seeds: &[u64],
    threads: usize,
    device: &B::Device,
    work: F,
) -> Vec<(GradientsParams, f32, [f32; 3])>
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + Module<B>,
    F: Fn(&M, u64) -> (Tensor<B, 1>, [f32; 3]) + Sync,
{
    use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
    type Part = (GradientsParams, f32, [f32; 3]);
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    } else {
        threads
    }
    .min(seeds.len())
    .max(1);
    let backward = |m: &M, loss: Tensor<B, 1>, logged: [f32; 3]| -> Part {
        let value = host(loss.clone()).first().copied().unwrap_or(f32::NAN);
        let grads = GradientsParams::from_grads(loss.backward(), m);
        (grads, value, logged)
    };
    if threads == 1 {
        return seeds
            .iter()
            .map(|&s| {
                let (loss, logged) = work(model, s);
                backward(model, loss, logged)
            })
            .collect();
    }
    let rounds = seeds.len().div_ceil(threads);
    let barrier = std::sync::Barrier::new(threads);
    // Thread `t` takes samples t, t + threads, …; a panic is held until both barriers of its
    // round are passed (so no thread waits forever), then passed on.
    let lane = |t: usize, m: &M| -> Vec<(usize, std::thread::Result<Part>)> {
        let mut out = Vec::new();
        for r in 0..rounds {
            let k = r * threads + t;
            let fwd =
                (k < seeds.len()).then(|| catch_unwind(AssertUnwindSafe(|| work(m, seeds[k]))));
            barrier.wait();
            let done = fwd.map(|f| {
                f.and_then(|(loss, logged)| {
                    catch_unwind(AssertUnwindSafe(|| backward(m, loss, logged)))
                })
            });
            barrier.wait();
            if let Some(d) = done {
                out.push((k, d));
            }
        }
        out
    };
    let pools: Vec<rayon::ThreadPool> = (0..threads)
        .filter_map(|_| rayon::ThreadPoolBuilder::new().num_threads(1).build().ok())
        .collect();
    // Every lane runs on a fork (the gradients are keyed by parameter id, which forks keep),
    // made from the inner module: `Module::fork` moves each parameter with an autodiff
    // `to_device` whose little graph hangs on the model's parameters and is swept (and kept)
    // at every backward pass from then on; the run slowed from 6.3 to 3.6 samples/s over 800
    // steps that way (`perf`: the sweep, `cleanup_orphaned_entries`, half the time again).
    let _ = device;
    let forks: Vec<M> = (0..threads).map(|_| M::from_inner(model.valid())).collect();
    let mut out: Vec<Option<Part>> = (0..seeds.len()).map(|_| None).collect();
    let mut panic = None;
    std::thread::scope(|scope| {
        let lane = &lane;
        let pools = &pools;
        let handles: Vec<_> = forks
            .into_iter()
            .enumerate()
            .map(|(t, m)| {
                scope.spawn(move || match pools.get(t) {
                    Some(p) if pools.len() == threads => p.install(move || lane(t, &m)),
                    _ => lane(t, &m),
                })
            })
            .collect();
        let results = handles.into_iter().flat_map(|h| match h.join() {
            Ok(v) => v,
            Err(e) => vec![(usize::MAX, Err(e))],
        });
        for (k, r) in results {
            match r {
                Ok(p) => out[k] = Some(p),
                Err(e) => panic = Some(e),
            }
        }
    });
    if let Some(e) = panic {
        // A panic in a sample is a programming error: pass it on.
        resume_unwind(e);
    }
    out.into_iter().flatten().collect()
}

/// Trains one base stage from `model` (fresh, from `init`, or the previous stage's result),
/// resuming from the stage's checkpoint when there is one; returns the trained model (its
/// final weights are also written to the run folder).
///
/// # Errors
/// [`TrainError`] for checkpoint I/O; NaN losses stop the stage with
/// [`TrainError::Diverged`].
#[allow(clippy::too_many_arguments)]
pub fn train_base<B: AutodiffBackend>(
    run: &Run,
    stage: Stage,
    config: &SegVolConfig,
    model: SegVol<B>,
    data: &Dataset,
    val: &[ValCase],
    device: &B::Device,
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<SegVol<B>, TrainError> {
    let settings = match stage {
        Stage::BaseBox => run.config.base_box.clone(),
        _ => run.config.base_points.clone(),
    };
    let (mut model, mut optim, mut state) = run.resume(
        stage,
        model,
        adamw::<B, SegVol<B>>(settings.weight_decay, settings.grad_clip),
        device,
    )?;
    let grid = config.image_size;
    let aug = run.config.augment.clone();
    let started = Instant::now();
    let base_elapsed = state.elapsed_s;
    while state.step < settings.steps {
        let step = state.step;
        let t0 = Instant::now();
        let lr = lr_at(
            step,
            settings.steps,
            settings.warmup,
            settings.lr,
            settings.min_lr,
        );
        let step_rng = step_seed(run.config.seed, stage.id(), step as u64);
        let seeds: Vec<u64> = (0..settings.batch as u64)
            .map(|k| splitmix(step_rng ^ (k + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            .collect();
        let parts = parallel_grads(&model, &seeds, run.config.threads, device, |m, seed| {
            let mut rng = Rng::new(seed);
            let s = data.draw(&mut rng, grid, &aug);
            let l = sample_loss(m, &s, stage, &settings, &mut rng, device);
            let loss = l.loss.div_scalar(settings.batch as f32);
            (loss, [l.dice, l.bce, l.clicks as f32])
        });
        // From here to the optimizer's update the step runs on this thread alone.
        let t_update = Instant::now();
        let (mut dsum, mut bsum, mut csum) = (0.0f32, 0.0f32, 0.0f32);
        let mut loss_v = 0.0f32;
        let mut acc = GradientsAccumulator::<SegVol<B>>::new();
        for (grads, value, [d, b, c]) in parts {
            loss_v += value;
            dsum += d;
            bsum += b;
            csum += c;
            acc.accumulate(&model, grads);
        }
        if !loss_v.is_finite() {
            return Err(TrainError::Diverged {
                stage: stage.name(),
                step,
            });
        }
        model = optim.step(lr, model, acc.grads());
        let update_s = t_update.elapsed().as_secs_f64();
        state.step += 1;
        state.samples += settings.batch;
        state.elapsed_s = base_elapsed + started.elapsed().as_secs_f64();
        let dt = t0.elapsed().as_secs_f64();
        let b = settings.batch as f32;
        run.log(&serde_json::json!({
            "stage": stage.name(), "step": state.step, "loss": loss_v,
            "dice": dsum / b, "bce": bsum / b, "clicks": csum / b, "lr": lr,
            "samples_per_s": settings.batch as f64 / dt, "elapsed_s": state.elapsed_s,
            "update_s": update_s,
        }))?;
        let out_of_time = crate::config::ends_early(
            settings.max_minutes,
            settings.stop_after,
            started,
            state.step,
        );
        let last = state.step == settings.steps || out_of_time;
        let go_on = progress(&Progress {
            stage,
            step: state.step,
            steps: settings.steps,
            loss: loss_v,
            samples_per_s: settings.batch as f64 / dt,
            message: None,
        });
        if !go_on {
            run.checkpoint(stage, &state, &model, &optim)?;
            return Err(TrainError::Stopped {
                stage: stage.name(),
                step: state.step,
            });
        }
        if ((settings.val_every > 0 && state.step.is_multiple_of(settings.val_every)) || last)
            && !val.is_empty()
        {
            let _ = progress(&Progress {
                stage,
                step: state.step,
                steps: settings.steps,
                loss: loss_v,
                samples_per_s: 0.0,
                message: Some("validating".into()),
            });
            let v = quick_validate(&model.valid(), val, device)?;
            run.log(&serde_json::json!({
                "stage": stage.name(), "step": state.step, "val_box_dsc": v.mean_dsc,
                "val_per_case": v.per_case,
            }))?;
            let _ = progress(&Progress {
                stage,
                step: state.step,
                steps: settings.steps,
                loss: loss_v,
                samples_per_s: 0.0,
                message: Some(format!("validation box DSC {:.4}", v.mean_dsc)),
            });
        }
        if state.step.is_multiple_of(settings.checkpoint_every) || last {
            run.checkpoint(stage, &state, &model, &optim)?;
        }
        if out_of_time {
            break;
        }
    }
    let final_path = run.final_weights(stage);
    segvol_core::weights::save_burnpack(
        &model.valid(),
        config,
        &format!("segvol train, stage {}", stage.name()),
        &final_path,
    )
    .map_err(|e| TrainError::Io {
        path: final_path.clone(),
        detail: e.to_string(),
    })?;
    state.done = true;
    run.checkpoint(stage, &state, &model, &optim)?;
    run.log(&serde_json::json!({
        "stage": stage.name(), "event": "done", "step": state.step,
        "elapsed_s": state.elapsed_s, "samples": state.samples,
    }))?;
    Ok(model)
}
