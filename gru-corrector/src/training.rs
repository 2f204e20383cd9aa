//! Training pieces (GRU_CORRECTION.md D8, §7) on any burn autodiff backend: the rounds
//! distribution, the per-sample loss through a differentiable write-back, and one optimiser
//! step. The `train` command (a separate issue) drives [`train_step`] over a dataset.
//!
//! Differences from inference, on purpose (§9.3): inference rounds `c + shift` to a voxel (D7),
//! which gives the coordinate head no gradient; training spreads each δ trilinearly over the 8
//! voxels around the continuous `c + shift` (clamped into the volume), so the coordinate head
//! learns. With a zero shift both write exactly δ at `c`.
//!
//! Loss (D8) on the final corrected logits `L1` against the ground truth `G`:
//! `w_dice·Dice + w_bce·BCE + w_point·BCE(L1[c′], G[c′]) + w_cons·mean_{v∉S}|σ(L1) − σ(L0)|`,
//! where `c′` are the last round's written voxels (rounded, as at inference), `S` every voxel
//! written since the base logits `L0` were set, and `L0` the base logits. With trilinear
//! spreading the consistency term penalises what leaks past the written centres.

use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};
use segvol_eval::rng::Mt19937;
use segvol_eval::simulate_click;
use segvol_sampler::{Click, MapKind, SamplerConfig, sample};

use crate::model::GruCorrector;
use crate::session::CorrectError;
use crate::writeback::target_voxel;

/// Relative weights of rounds 0..=5 (D8): P = (1, 3, 10, 10, 3, 1) / 28.
pub const ROUND_WEIGHTS: [u32; 6] = [1, 3, 10, 10, 3, 1];

/// The number of rounds for a uniform draw `u ∈ [0, 1)` under [`ROUND_WEIGHTS`].
///
/// # Examples
/// ```
/// use segvol_gru::training::rounds_for;
/// assert_eq!(rounds_for(0.0), 0);            // [0, 1/28)
/// assert_eq!(rounds_for(1.0 / 28.0), 1);     // [1/28, 4/28)
/// assert_eq!(rounds_for(0.5), 3);            // [14/28, 24/28)
/// assert_eq!(rounds_for(0.999), 5);
/// ```
pub fn rounds_for(u: f64) -> usize {
    let total: u32 = ROUND_WEIGHTS.iter().sum();
    let mut acc = 0u32;
    for (r, w) in ROUND_WEIGHTS.iter().enumerate() {
        acc += w;
        if u < f64::from(acc) / f64::from(total) {
            return r;
        }
    }
    ROUND_WEIGHTS.len() - 1
}

/// Draws a round count with the project's MT19937 (reproducible across machines).
pub fn draw_rounds(rng: &mut Mt19937) -> usize {
    rounds_for(f64::from(rng.next_u32()) / 4_294_967_296.0)
}

/// Weights of the four loss terms (D8; §7 suggests λ_c = 0.1 to start).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossWeights {
    /// Soft Dice on the corrected logits.
    pub dice: f32,
    /// Voxel-wise BCE on the corrected logits.
    pub bce: f32,
    /// BCE at the written voxels.
    pub point_bce: f32,
    /// L1 between initial and corrected probabilities away from the written voxels.
    pub consistency: f32,
}

impl Default for LossWeights {
    fn default() -> Self {
        LossWeights {
            dice: 1.0,
            bce: 1.0,
            point_bce: 1.0,
            consistency: 0.1,
        }
    }
}

/// One training target: base logits (SegVol's box prediction on the training grid) and its
/// ground-truth mask, both raster order of `dims`.
#[derive(Debug, Clone, Copy)]
pub struct TrainSample<'a> {
    /// `[z, y, x]`.
    pub dims: [usize; 3],
    /// Base logits `L0`.
    pub logits: &'a [f32],
    /// Ground truth of the target.
    pub gt: &'a [bool],
}

/// Re-decodes base logits for the clicks so far (stage 2: SegVol with box + clicks). `None`
/// = stage 1: the base stays the box logits and corrections accumulate on them.
pub type Redecode<'a> = Option<&'a mut dyn FnMut(&[Click]) -> Vec<f32>>;

/// The loss of one sample and its parts (host values of the parts, for logs).
#[derive(Debug, Clone)]
pub struct SampleLoss<B: Backend> {
    /// Weighted total, `[1]`, differentiable.
    pub loss: Tensor<B, 1>,
    /// Dice, BCE, point BCE, consistency (unweighted).
    pub terms: [f32; 4],
    /// Simulated clicks, in order.
    pub clicks: Vec<Click>,
}

fn f32s<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap_or_default()
}

fn scalar<B: Backend>(t: &Tensor<B, 1>) -> f32 {
    f32s(t.clone()).first().copied().unwrap_or(f32::NAN)
}

/// Runs `rounds` correction rounds on one sample (clicks simulated by the CVPR25 rule on
/// `σ(L) > 0.5` each round) and returns the loss; `None` for zero rounds (nothing to learn).
///
/// # Errors
/// [`CorrectError::Sampler`] for logits or a mask of the wrong length, or NaN logits;
/// [`CorrectError::KMismatch`] when `sampler.k` differs from the corrector's K.
pub fn sample_loss<B: AutodiffBackend>(
    corrector: &GruCorrector<B>,
    s: &TrainSample<'_>,
    rounds: usize,
    sampler: &SamplerConfig,
    weights: &LossWeights,
    mut redecode: Redecode<'_>,
) -> Result<Option<SampleLoss<B>>, CorrectError> {
    let cfg = corrector.config();
    if sampler.k != cfg.k {
        return Err(CorrectError::KMismatch {
            sampler: sampler.k,
            corrector: cfg.k,
        });
    }
    let dims = s.dims;
    let n: usize = dims.iter().product();
    for len in [s.logits.len(), s.gt.len()] {
        if len != n {
            return Err(segvol_sampler::SamplerError::ShapeMismatch { dims, len }.into());
        }
    }
    if rounds == 0 {
        return Ok(None);
    }
    let sampler = SamplerConfig {
        map: MapKind::Logits,
        ..*sampler
    };
    let device = corrector.delta_head.weight.val().device();
    let k = cfg.k;
    let gt = Tensor::<B, 1>::from_data(
        TensorData::new(
            s.gt.iter()
                .map(|&g| f32::from(u8::from(g)))
                .collect::<Vec<f32>>(),
            [n],
        ),
        &device,
    );
    let mut base_host = s.logits.to_vec();
    let mut base = Tensor::<B, 1>::from_data(TensorData::new(base_host.clone(), [n]), &device);
    let mut cur = base.clone();
    let mut cur_host = base_host.clone();
    let mut hidden = None;
    let mut clicks: Vec<Click> = Vec::new();
    let mut written = vec![false; n];
    let mut centres: Vec<i64> = Vec::new();
    let flat = |c: [usize; 3]| ((c[0] * dims[1] + c[1]) * dims[2] + c[2]) as i64;
    for _ in 0..rounds {
        let pred: Vec<bool> = cur_host.iter().map(|&l| l > 0.0).collect();
        if let Some(c) = simulate_click(&pred, s.gt, dims) {
            clicks.push(Click {
                zyx: c.zyx,
                foreground: c.foreground,
            });
        }
        if let Some(f) = redecode.as_mut() {
            base_host = f(&clicks);
            if base_host.len() != n {
                return Err(segvol_sampler::SamplerError::ShapeMismatch {
                    dims,
                    len: base_host.len(),
                }
                .into());
            }
            base = Tensor::from_data(TensorData::new(base_host.clone(), [n]), &device);
            cur = base.clone();
            cur_host = base_host.clone();
            written.fill(false);
        }
        let state = sample(dims, &cur_host, &clicks, &sampler)?;
        let tokens =
            Tensor::<B, 3>::from_data(TensorData::new(state.gru_input(), [1, 2, 8 * k]), &device);
        let coords = Tensor::<B, 2>::from_data(
            TensorData::new(state.coords_normalized(), [1, 6 * k]),
            &device,
        );
        let out = corrector.forward(tokens, coords, hidden.take());
        hidden = Some(out.hidden);
        let raw = state.raw_coords();
        let rows: Vec<usize> = state
            .valid()
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.then_some(i))
            .collect();
        centres.clear();
        if rows.is_empty() {
            continue;
        }
        let m = rows.len();
        let rows_t = Tensor::<B, 1, Int>::from_data(
            TensorData::new(rows.iter().map(|&r| r as i64).collect::<Vec<i64>>(), [m]),
            &device,
        );
        let delta: Tensor<B, 1> = out.delta.select(1, rows_t.clone()).reshape([m]);
        let base_c: Vec<f32> = rows
            .iter()
            .flat_map(|&r| raw[r].map(|v| v as f32))
            .collect();
        let base_c = Tensor::<B, 2>::from_data(TensorData::new(base_c, [m, 3]), &device);
        let cont = match out.shift {
            Some(shift) => base_c + shift.select(1, rows_t).reshape([m, 3]),
            None => base_c,
        };
        // Clamp each axis into the volume.
        let cont = Tensor::cat(
            (0..3)
                .map(|a| {
                    cont.clone()
                        .narrow(1, a, 1)
                        .clamp(0.0, dims[a].saturating_sub(1) as f32)
                })
                .collect(),
            1,
        );
        let cont_host = f32s(cont.clone());
        let floor_host: Vec<f32> = cont_host.iter().map(|v| v.floor()).collect();
        let floor = Tensor::<B, 2>::from_data(TensorData::new(floor_host.clone(), [m, 3]), &device);
        let frac = cont - floor;
        // Eight corners, corner-major: indices and trilinear weights.
        let mut idx: Vec<i64> = Vec::with_capacity(8 * m);
        let mut ws: Vec<Tensor<B, 1>> = Vec::with_capacity(8);
        for corner in 0..8usize {
            let bits = [(corner >> 2) & 1, (corner >> 1) & 1, corner & 1];
            let mut w: Option<Tensor<B, 1>> = None;
            for (a, &bit) in bits.iter().enumerate() {
                let f: Tensor<B, 1> = frac.clone().narrow(1, a, 1).reshape([m]);
                let fa = if bit == 1 { f } else { f.neg().add_scalar(1.0) };
                w = Some(match w {
                    Some(w) => w * fa,
                    None => fa,
                });
            }
            if let Some(w) = w {
                ws.push(w);
            }
            for r in 0..m {
                let mut c = [0usize; 3];
                for a in 0..3 {
                    let lo = floor_host[3 * r + a] as usize;
                    c[a] = (lo + bits[a]).min(dims[a] - 1);
                }
                idx.push(flat(c));
            }
        }
        let values = Tensor::cat(ws, 0) * Tensor::cat(vec![delta; 8], 0);
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [8 * m]), &device);
        cur = cur.scatter(0, idx, values, IndexingUpdateOp::Add);
        cur_host = f32s(cur.clone());
        // The voxels inference would write (rounded, D7).
        for r in 0..m {
            let c = [0, 1, 2].map(|a| cont_host[3 * r + a] - raw[rows[r]][a] as f32);
            let t = target_voxel(raw[rows[r]], c, dims);
            written[flat(t) as usize] = true;
            centres.push(flat(t));
        }
    }
    // Loss terms on the final corrected logits.
    let p = burn::tensor::activation::sigmoid(cur.clone());
    let inter = (p.clone() * gt.clone()).sum();
    let dice = (inter.mul_scalar(2.0).add_scalar(1.0)
        / (p.clone().sum() + gt.clone().sum()).add_scalar(1.0))
    .neg()
    .add_scalar(1.0);
    let bce_of = |l: Tensor<B, 1>, g: Tensor<B, 1>| -> Tensor<B, 1> {
        // max(l, 0) − l·g + log(1 + e^−|l|), the stable form of BCE with logits.
        (l.clone().clamp_min(0.0) - l.clone() * g + l.abs().neg().exp().log1p()).mean()
    };
    let bce = bce_of(cur.clone(), gt.clone());
    let point_bce = if centres.is_empty() {
        Tensor::<B, 1>::zeros([1], &device)
    } else {
        let c = Tensor::<B, 1, Int>::from_data(
            TensorData::new(centres.clone(), [centres.len()]),
            &device,
        );
        bce_of(cur.clone().select(0, c.clone()), gt.clone().select(0, c))
    };
    let outside: Vec<f32> = written.iter().map(|&w| if w { 0.0 } else { 1.0 }).collect();
    let n_out: f32 = outside.iter().sum::<f32>().max(1.0);
    let outside = Tensor::<B, 1>::from_data(TensorData::new(outside, [n]), &device);
    let consistency = ((p - burn::tensor::activation::sigmoid(base)).abs() * outside)
        .sum()
        .div_scalar(n_out);
    let terms = [
        scalar(&dice),
        scalar(&bce),
        scalar(&point_bce),
        scalar(&consistency),
    ];
    let loss = dice.mul_scalar(weights.dice)
        + bce.mul_scalar(weights.bce)
        + point_bce.mul_scalar(weights.point_bce)
        + consistency.mul_scalar(weights.consistency);
    Ok(Some(SampleLoss {
        loss,
        terms,
        clicks,
    }))
}

/// What one optimiser step saw.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStats {
    /// Mean loss over the samples that had rounds (NaN when none had).
    pub loss: f32,
    /// Mean of each term over those samples.
    pub terms: [f32; 4],
    /// Samples that contributed (rounds > 0).
    pub used: usize,
}

/// One optimiser step over a batch: `rounds[i]` rounds for `samples[i]` (draw them with
/// [`draw_rounds`]); samples with zero rounds contribute nothing, and a batch of only those
/// leaves the corrector unchanged. Stage 1 (no re-decode).
///
/// # Errors
/// As [`sample_loss`].
pub fn train_step<B, O>(
    corrector: GruCorrector<B>,
    optim: &mut O,
    lr: f64,
    samples: &[TrainSample<'_>],
    rounds: &[usize],
    sampler: &SamplerConfig,
    weights: &LossWeights,
) -> Result<(GruCorrector<B>, StepStats), CorrectError>
where
    B: AutodiffBackend,
    O: Optimizer<GruCorrector<B>, B>,
{
    let mut total: Option<Tensor<B, 1>> = None;
    let mut terms = [0.0f32; 4];
    let mut used = 0usize;
    for (s, &r) in samples.iter().zip(rounds) {
        if let Some(l) = sample_loss(&corrector, s, r, sampler, weights, None)? {
            for (t, v) in terms.iter_mut().zip(l.terms) {
                *t += v;
            }
            used += 1;
            total = Some(match total {
                Some(t) => t + l.loss,
                None => l.loss,
            });
        }
    }
    let Some(total) = total else {
        return Ok((
            corrector,
            StepStats {
                loss: f32::NAN,
                terms: [f32::NAN; 4],
                used: 0,
            },
        ));
    };
    let mean = total.div_scalar(used as f32);
    let loss = scalar(&mean);
    let grads = GradientsParams::from_grads(mean.backward(), &corrector);
    let corrector = optim.step(lr, corrector, grads);
    Ok((
        corrector,
        StepStats {
            loss,
            terms: terms.map(|t| t / used as f32),
            used,
        },
    ))
}
