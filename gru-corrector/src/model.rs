//! The corrector module (GRU_CORRECTION.md D6–D7): one GRU shared across rounds whose hidden
//! state is carried from round to round, reading two tokens per round (the uncertainty matrix
//! and the error matrix, each `K·8`), and two heads over `[h ; coords 6K]`: the delta-logit head
//! (`→ 2K`) and the optional coordinate head (`→ 6K`, `tanh · max_shift` voxels).

use burn::module::Module;
use burn::nn::gru::{Gru, GruConfig};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::tanh;
use burn::tensor::{Tensor, backend::Backend};

use crate::GruCorrectorConfig;

/// The corrector. Build it with [`GruCorrectorConfig::init`], load it with
/// [`crate::load_corrector`].
#[derive(Module, Debug)]
pub struct GruCorrector<B: Backend> {
    /// GRU `8K → H`, PyTorch gate semantics (`reset_after = true`).
    pub gru: Gru<B>,
    /// Delta-logit head `Linear(H + 6K → 2K)`.
    pub delta_head: Linear<B>,
    /// Coordinate head `Linear(H + 6K → 6K)`, when enabled.
    pub coord_head: Option<Linear<B>>,
    k: usize,
    hidden: usize,
    max_shift: f32,
    splat_radius: usize,
}

/// What one round produces, batch-first.
#[derive(Debug, Clone)]
pub struct RoundOutput<B: Backend> {
    /// The hidden state after both tokens, `[B, H]`: the next round's `h_{t−1}`.
    pub hidden: Tensor<B, 2>,
    /// Logit corrections, `[B, 2K]` (uncertainty rows, then error rows).
    pub delta: Tensor<B, 2>,
    /// Coordinate shifts in voxels, `[B, 2K, 3]` as `(z, y, x)`, each in `[−max_shift,
    /// max_shift]`; `None` without a coordinate head.
    pub shift: Option<Tensor<B, 3>>,
}

impl GruCorrectorConfig {
    /// Checks the sizes (K, hidden > 0; max_shift finite and ≥ 0).
    ///
    /// # Errors
    /// A sentence naming the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if self.k == 0 {
            return Err("k must be > 0".into());
        }
        if self.hidden == 0 {
            return Err("hidden must be > 0".into());
        }
        if !self.max_shift.is_finite() || self.max_shift < 0.0 {
            return Err(format!(
                "max_shift must be finite and >= 0, got {}",
                self.max_shift
            ));
        }
        Ok(())
    }

    /// A freshly initialised corrector (burn's defaults: Xavier-normal GRU, Kaiming-uniform
    /// heads).
    pub fn init<B: Backend>(&self, device: &B::Device) -> GruCorrector<B> {
        let (k, h) = (self.k, self.hidden);
        GruCorrector {
            gru: GruConfig::new(8 * k, h, true)
                .with_reset_after(true)
                .init(device),
            delta_head: LinearConfig::new(h + 6 * k, 2 * k).init(device),
            coord_head: self
                .coord_head
                .then(|| LinearConfig::new(h + 6 * k, 6 * k).init(device)),
            k,
            hidden: h,
            max_shift: self.max_shift,
            splat_radius: self.splat_radius,
        }
    }
}

impl<B: Backend> GruCorrector<B> {
    /// Assembles a corrector from loaded parts; `cfg` must describe them (the loader checks
    /// every shape before calling this).
    pub(crate) fn from_parts(
        gru: Gru<B>,
        delta_head: Linear<B>,
        coord_head: Option<Linear<B>>,
        cfg: &GruCorrectorConfig,
    ) -> Self {
        GruCorrector {
            gru,
            delta_head,
            coord_head,
            k: cfg.k,
            hidden: cfg.hidden,
            max_shift: cfg.max_shift,
            splat_radius: cfg.splat_radius,
        }
    }

    /// The configuration this module was built with.
    pub fn config(&self) -> GruCorrectorConfig {
        GruCorrectorConfig {
            k: self.k,
            hidden: self.hidden,
            coord_head: self.coord_head.is_some(),
            max_shift: self.max_shift,
            splat_radius: self.splat_radius,
        }
    }

    /// Changes the splat radius used at write-back (no weights depend on it).
    pub fn with_splat_radius(mut self, radius: usize) -> Self {
        self.splat_radius = radius;
        self
    }

    /// One round: `tokens` `[B, 2, 8K]` (the sampler's `gru_input`), `coords` `[B, 6K]` (its
    /// `coords_normalized`), `hidden` the previous round's state (`None` = zeros, a new target).
    pub fn forward(
        &self,
        tokens: Tensor<B, 3>,
        coords: Tensor<B, 2>,
        hidden: Option<Tensor<B, 2>>,
    ) -> RoundOutput<B> {
        let [b, t, _] = tokens.dims();
        let out = self.gru.forward(tokens, hidden);
        // h_t: the state after the last token of this round.
        let h: Tensor<B, 2> = out.narrow(1, t - 1, 1).reshape([b, self.hidden]);
        let z = Tensor::cat(vec![h.clone(), coords], 1);
        let delta = self.delta_head.forward(z.clone());
        let shift = self.coord_head.as_ref().map(|head| {
            tanh(head.forward(z))
                .mul_scalar(self.max_shift)
                .reshape([b, 2 * self.k, 3])
        });
        RoundOutput {
            hidden: h,
            delta,
            shift,
        }
    }
}
