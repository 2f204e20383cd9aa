//! The training's optimizer: burn-optim's AdamW, its update done in one pass per parameter
//! on burn-flex.
//!
//! burn's `AdamW` updates a parameter with about fifteen tensor operations (moments, bias
//! correction, square root, decay), each a pass over the parameter and most a fresh buffer;
//! with the gradients' sum, that was 7–9 % of a `small` step, on one thread while the lanes
//! waited. [`FusedAdamW`] keeps burn's optimizer, its state and its record (checkpoints stay
//! interchangeable) and, when the backend is burn-flex (`segvol_core::fast::is_active`), does
//! the update with `segvol_kernels::adamw_step`, which computes the same `f32` operations in
//! the same order: the same result to the bit (`tests/optim.rs`). Every other backend runs
//! burn's `AdamW`.

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{
    AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate, SimpleOptimizer,
};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Tensor, TensorData};
use std::sync::atomic::{AtomicU64, Ordering};

/// Parameters updated by the fused path in this process (a test that compares results with
/// burn's `AdamW` cannot otherwise tell whether the fused path ran).
static FUSED: AtomicU64 = AtomicU64::new(0);

/// How many parameter updates [`FusedAdamW`] has done with the fused kernel in this process.
pub fn fused_updates() -> u64 {
    FUSED.load(Ordering::Relaxed)
}

/// burn-optim's `AdamWConfig` defaults, which the training has always used.
const BETA_1: f32 = 0.9;
const BETA_2: f32 = 0.999;
const EPSILON: f32 = 1e-5;

/// AdamW (β = 0.9, 0.999, ε = 10⁻⁵, no AMSGrad) with decoupled weight decay; see the module
/// documentation.
#[derive(Clone)]
pub struct FusedAdamW {
    generic: AdamW,
    weight_decay: f32,
}

impl FusedAdamW {
    /// AdamW with weight decay `weight_decay`.
    pub fn new(weight_decay: f32) -> Self {
        Self {
            generic: Self::config(weight_decay).build(),
            weight_decay,
        }
    }

    /// burn's configuration of the same optimizer.
    pub fn config(weight_decay: f32) -> AdamWConfig {
        AdamWConfig::new()
            .with_beta_1(BETA_1)
            .with_beta_2(BETA_2)
            .with_epsilon(EPSILON)
            .with_weight_decay(weight_decay)
    }

    /// The update on burn-flex, or `Err` with the inputs given back (another backend, element
    /// type or state shape: burn's `AdamW` takes them).
    #[allow(clippy::type_complexity)]
    fn fused<B: Backend, const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<AdamWState<B, D>>,
    ) -> Result<
        (Tensor<B, D>, AdamWState<B, D>),
        (Tensor<B, D>, Tensor<B, D>, Option<AdamWState<B, D>>),
    > {
        // A state that does not fit (another element type, AMSGrad's extra moment, another
        // shape: a checkpoint of another model) goes to burn's code, which reports it.
        let fits = state.as_ref().is_none_or(|s| {
            let m = &s.momentum;
            m.max_moment_2.is_none()
                && m.moment_1.dtype() == DType::F32
                && m.moment_2.dtype() == DType::F32
                && m.moment_1.dims() == tensor.dims()
                && m.moment_2.dims() == tensor.dims()
        });
        if !segvol_core::fast::is_active::<B>()
            || tensor.dtype() != DType::F32
            || grad.dtype() != DType::F32
            || tensor.dims() != grad.dims()
            || !fits
        {
            return Err((tensor, grad, state));
        }
        let device = tensor.device();
        let shape = tensor.dims();
        let n = tensor.shape().num_elements();
        let (time, m, v) = match state {
            Some(s) => (
                s.momentum.time + 1,
                values(s.momentum.moment_1),
                values(s.momentum.moment_2),
            ),
            None => (1, vec![0.0; n], vec![0.0; n]),
        };
        let (mut p, g, mut m, mut v) = (values(tensor), values(grad), m, v);
        let step = segvol_kernels::AdamWStep {
            lr,
            beta_1: BETA_1,
            beta_2: BETA_2,
            epsilon: EPSILON,
            weight_decay: self.weight_decay,
            time,
        };
        // The lengths agree (the shapes were compared above) and `time` ≥ 1: an error here is
        // a bug in this function.
        if let Err(e) = segvol_kernels::adamw_step(&mut p, &g, &mut m, &mut v, &step) {
            panic!("FusedAdamW: {e} ({n} elements)");
        }
        FUSED.fetch_add(1, Ordering::Relaxed);
        let t = |x: Vec<f32>| Tensor::<B, D>::from_data(TensorData::new(x, shape), &device);
        let state = AdamWState::new(AdaptiveMomentumState::new(time, t(m), t(v)));
        Ok((t(p), state))
    }
}

/// A burn-flex f32 tensor's values: its buffer moved out when the tensor owns it alone.
///
/// # Panics
/// If burn-flex cannot read the tensor (it reads host memory and has no error to report) or
/// it is not f32 (checked by the caller).
fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    match t.try_into_data().map(TensorData::into_vec::<f32>) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("FusedAdamW: reading an f32 tensor: {e:?}"),
        Err(e) => panic!("FusedAdamW: reading a burn-flex tensor: {e:?}"),
    }
}

impl<B: Backend> SimpleOptimizer<B> for FusedAdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        match self.fused(lr, tensor, grad, state) {
            Ok((t, s)) => (t, Some(s)),
            Err((tensor, grad, state)) => {
                SimpleOptimizer::<B>::step(&self.generic, lr, tensor, grad, state)
            }
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        <AdamW as SimpleOptimizer<B>>::to_device(state, device)
    }
}

/// [`FusedAdamW`] with weight decay `weight_decay` and, when `grad_clip > 0`, each parameter's
/// gradient clipped to norm `grad_clip` (burn's `GradientClipping::Norm`, per parameter), as a
/// burn optimizer of module `M`.
pub fn adamw<B: AutodiffBackend, M: AutodiffModule<B>>(
    weight_decay: f64,
    grad_clip: f64,
) -> OptimizerAdaptor<FusedAdamW, M, B> {
    let mut optim = OptimizerAdaptor::from(FusedAdamW::new(weight_decay as f32));
    if grad_clip > 0.0 {
        optim = optim.with_grad_clipping(
            burn::grad_clipping::GradientClippingConfig::Norm(grad_clip as f32).init(),
        );
    }
    optim
}
