//! [`CorrectionSession`]: the interactive loop's state for one target (GRU_CORRECTION.md §6):
//! the hidden state carried from round to round and the first click; each
//! [`CorrectionSession::step`] samples the state from the current logits and clicks, runs one
//! GRU round and writes the corrections back in logit space.

use std::time::Instant;

use burn::tensor::{Tensor, TensorData, backend::Backend};
use segvol_sampler::{Click, InteractionState, MapKind, SamplerConfig, SamplerError, sample};

use crate::model::GruCorrector;
use crate::writeback::{Corrections, targets, write_back};

/// Why a round could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CorrectError {
    /// The sampler refused its input (bad shape, click outside, NaN logits, …).
    #[error("sampling the interaction state: {0}")]
    Sampler(#[from] SamplerError),
    /// The sampler's K differs from the corrector's.
    #[error("sampler K = {sampler} but the corrector was built for K = {corrector}")]
    KMismatch {
        /// The sampler's K.
        sampler: usize,
        /// The corrector's K.
        corrector: usize,
    },
}

/// A written voxel whose prediction changed side (logit sign) in this round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flip {
    /// The voxel `[z, y, x]`.
    pub zyx: [usize; 3],
    /// The row's correction δ.
    pub delta: f32,
    /// Whether the voxel is now foreground (logit > 0).
    pub foreground: bool,
}

/// What one round did, for logs and latency reports.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundReport {
    /// Round number, 1 for the first correction of this target.
    pub round: usize,
    /// Real uncertainty rows.
    pub n_uncertain: usize,
    /// Real error rows.
    pub n_error: usize,
    /// Voxels written (centre writes; equals the real rows).
    pub writes: usize,
    /// Mean |δ| over the written rows.
    pub mean_abs_delta: f32,
    /// Milliseconds in the sampler.
    pub sample_ms: f64,
    /// Milliseconds in the GRU and heads (including the host transfer).
    pub gru_ms: f64,
    /// Milliseconds writing back.
    pub write_ms: f64,
    /// Written voxels whose logit changed sign, largest |δ| first, each voxel once: the
    /// candidates of the prompt-feedback variant (GRU_CORRECTION.md §6, D9).
    pub flips: Vec<Flip>,
}

impl RoundReport {
    /// Sampler + GRU + write-back.
    pub fn total_ms(&self) -> f64 {
        self.sample_ms + self.gru_ms + self.write_ms
    }
}

/// The corrector's state for one target. Create one per target (class); [`Self::reset`] when
/// the target changes or the clicks are undone to none.
#[derive(Debug, Clone)]
pub struct CorrectionSession<'c, B: Backend> {
    corrector: &'c GruCorrector<B>,
    sampler: SamplerConfig,
    hidden: Option<Tensor<B, 2>>,
    first_click: Option<[usize; 3]>,
    rounds: usize,
    device: B::Device,
}

impl<'c, B: Backend> CorrectionSession<'c, B> {
    /// A session with the default sampler (τ = 0.1, r = 8 voxels) reading logits, K taken from
    /// the corrector.
    pub fn new(corrector: &'c GruCorrector<B>, device: &B::Device) -> Self {
        let sampler = SamplerConfig {
            k: corrector.config().k,
            map: MapKind::Logits,
            ..SamplerConfig::default()
        };
        CorrectionSession {
            corrector,
            sampler,
            hidden: None,
            first_click: None,
            rounds: 0,
            device: device.clone(),
        }
    }

    /// Uses other sampler settings (τ, radius, spacing, threads). `map` is forced to logits.
    ///
    /// # Errors
    /// [`CorrectError::KMismatch`] when its K differs from the corrector's.
    pub fn with_sampler(mut self, cfg: SamplerConfig) -> Result<Self, CorrectError> {
        let k = self.corrector.config().k;
        if cfg.k != k {
            return Err(CorrectError::KMismatch {
                sampler: cfg.k,
                corrector: k,
            });
        }
        self.sampler = SamplerConfig {
            map: MapKind::Logits,
            ..cfg
        };
        Ok(self)
    }

    /// Forgets the hidden state and the first click (`h_0 = 0`): a new target.
    pub fn reset(&mut self) {
        self.hidden = None;
        self.first_click = None;
        self.rounds = 0;
    }

    /// The hidden state after the last round (`None` before the first).
    pub fn hidden(&self) -> Option<&Tensor<B, 2>> {
        self.hidden.as_ref()
    }

    /// Rounds run since the last reset.
    pub fn rounds(&self) -> usize {
        self.rounds
    }

    /// The state the next round would read, with the session's first click as context.
    ///
    /// # Errors
    /// [`CorrectError::Sampler`] for logits or clicks the sampler refuses.
    pub fn state(
        &self,
        dims: [usize; 3],
        logits: &[f32],
        clicks: &[Click],
    ) -> Result<InteractionState, CorrectError> {
        let mut state = sample(dims, logits, clicks, &self.sampler)?;
        if let Some(first) = self.first_click {
            state.first_click = Some(first);
        }
        Ok(state)
    }

    /// One round on host logits of shape `dims` (any grid: the model grid or the native crop),
    /// corrected in place. `clicks` are all clicks of this target so far, in order.
    ///
    /// # Errors
    /// [`CorrectError::Sampler`] for a wrong length, a click outside, or NaN logits; nothing is
    /// written then and the hidden state is unchanged.
    pub fn step(
        &mut self,
        dims: [usize; 3],
        logits: &mut [f32],
        clicks: &[Click],
    ) -> Result<RoundReport, CorrectError> {
        let t0 = Instant::now();
        let state = self.state(dims, logits, clicks)?;
        let sample_ms = t0.elapsed().as_secs_f64() * 1e3;

        let t1 = Instant::now();
        let k = state.k;
        let tokens = Tensor::<B, 3>::from_data(
            TensorData::new(state.gru_input(), [1, 2, 8 * k]),
            &self.device,
        );
        let coords = Tensor::<B, 2>::from_data(
            TensorData::new(state.coords_normalized(), [1, 6 * k]),
            &self.device,
        );
        let out = self.corrector.forward(tokens, coords, self.hidden.take());
        let delta: Vec<f32> = host(out.delta);
        let shift: Option<Vec<f32>> = out.shift.map(host);
        self.hidden = Some(out.hidden);
        let gru_ms = t1.elapsed().as_secs_f64() * 1e3;

        let t2 = Instant::now();
        let coords = state.raw_coords();
        let valid = state.valid();
        let corr = Corrections {
            coords: &coords,
            valid: &valid,
            delta: &delta,
            shift: shift.as_deref(),
        };
        let flat = |t: [usize; 3]| (t[0] * dims[1] + t[1]) * dims[2] + t[2];
        let rows = targets(&corr, dims);
        let before: Vec<f32> = rows
            .iter()
            .map(|&(_, t)| logits.get(flat(t)).copied().unwrap_or(0.0))
            .collect();
        let written = write_back(logits, dims, &corr, self.corrector.config().splat_radius);
        let write_ms = t2.elapsed().as_secs_f64() * 1e3;
        let mut flips: Vec<Flip> = Vec::new();
        for (&(i, t), b) in rows.iter().zip(&before) {
            let after = logits.get(flat(t)).copied().unwrap_or(0.0);
            if (after > 0.0) != (*b > 0.0) && !flips.iter().any(|f| f.zyx == t) {
                flips.push(Flip {
                    zyx: t,
                    delta: delta[i],
                    foreground: after > 0.0,
                });
            }
        }
        flips.sort_by(|a, b| b.delta.abs().total_cmp(&a.delta.abs()));

        if self.first_click.is_none() {
            self.first_click = clicks.first().map(|c| c.zyx);
        }
        self.rounds += 1;
        let n_written = written.len();
        let sum_abs: f32 = delta
            .iter()
            .zip(&valid)
            .filter(|(_, v)| **v)
            .map(|(d, _)| d.abs())
            .sum();
        Ok(RoundReport {
            round: self.rounds,
            n_uncertain: state.uncertainty.n_valid,
            n_error: state.error.n_valid,
            writes: n_written,
            mean_abs_delta: if n_written > 0 {
                sum_abs / n_written as f32
            } else {
                0.0
            },
            sample_ms,
            gru_ms,
            write_ms,
            flips,
        })
    }

    /// [`Self::step`] on a logit tensor `[D, H, W]` (e.g. the model-grid logits), returning the
    /// corrected tensor on the same device.
    ///
    /// # Errors
    /// As [`Self::step`].
    pub fn step_tensor(
        &mut self,
        logits: Tensor<B, 3>,
        clicks: &[Click],
    ) -> Result<(Tensor<B, 3>, RoundReport), CorrectError> {
        let dims = logits.dims();
        let mut host_logits: Vec<f32> = host(logits);
        let report = self.step(dims, &mut host_logits, clicks)?;
        let t = Tensor::from_data(TensorData::new(host_logits, dims), &self.device);
        Ok((t, report))
    }
}

/// A float tensor's values on the host as f32 (empty on a backend read failure, which burn
/// does not produce for float tensors in practice).
fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap_or_default()
}
