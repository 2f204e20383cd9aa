//! AdamW's update in one pass over a parameter (burn-optim's `AdamW` does it in about fifteen
//! tensor operations, each a pass over the parameter and most a fresh buffer).

use multiversion::multiversion;
use rayon::prelude::*;

use crate::KernelError;

/// One AdamW step's constants, as burn-optim 0.21's `AdamW` (without AMSGrad or cautious
/// weight decay) uses them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    /// Learning rate (burn's `LearningRate` is an `f64`).
    pub lr: f64,
    /// First moment's decay.
    pub beta_1: f32,
    /// Second moment's decay.
    pub beta_2: f32,
    /// Added to the second moment's square root.
    pub epsilon: f32,
    /// Decoupled weight decay (multiplied by `lr`).
    pub weight_decay: f32,
    /// The step number, from 1 (the bias correction's exponent).
    pub time: usize,
}

/// Elements per parallel task: a small parameter runs on the calling thread.
const CHUNK: usize = 32_768;

/// AdamW's update of `param` with gradient `grad`, first moment `m` and second moment `v`,
/// all in place. At `time` 1 the moments' contents are ignored (the state starts there).
///
/// The arithmetic is burn-optim 0.21's, operation by operation in `f32` and in its order
/// (`m·β₁ + g·(1−β₁)`, `v·β₂ + g²·(1−β₂)`, `(m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)`,
/// `p·(1 − lr·λ) − Δ·lr`), so the result is the same to the bit (segvol-train's
/// `tests/optim.rs` checks it against burn's `AdamW`).
///
/// # Errors
/// [`KernelError::Shape`] if the four slices differ in length or `time` is 0.
pub fn adamw_step(
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    s: &AdamWStep,
) -> Result<(), KernelError> {
    let n = param.len();
    if grad.len() != n || m.len() != n || v.len() != n {
        return Err(KernelError::Shape(
            "adamw_step: param, grad, m and v lengths",
        ));
    }
    let Ok(t) = i32::try_from(s.time) else {
        return Err(KernelError::Shape("adamw_step: time out of range"));
    };
    if t == 0 {
        return Err(KernelError::Shape("adamw_step: time starts at 1"));
    }
    let c = Consts {
        beta_1: s.beta_1,
        beta_2: s.beta_2,
        factor_1: 1.0 - s.beta_1,
        factor_2: 1.0 - s.beta_2,
        correction_1: 1.0 - s.beta_1.powi(t),
        correction_2: 1.0 - s.beta_2.powi(t),
        epsilon: s.epsilon,
        // burn scales by the f64 `1 − lr·λ` (skipped when `lr·λ` is 0) and by `lr`, each
        // scalar rounded to f32 by burn-flex's scalar operations.
        keep: {
            let decay = s.lr * f64::from(s.weight_decay);
            (decay != 0.0).then_some((1.0 - decay) as f32)
        },
        lr: s.lr as f32,
        first: t == 1,
    };
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|((p, g), (m, v))| adamw_chunk(p, g, m, v, &c));
    Ok(())
}

struct Consts {
    beta_1: f32,
    beta_2: f32,
    factor_1: f32,
    factor_2: f32,
    correction_1: f32,
    correction_2: f32,
    epsilon: f32,
    keep: Option<f32>,
    lr: f32,
    first: bool,
}

#[multiversion(targets("x86_64+avx512f+avx512bw+avx512dq+avx512vl", "x86_64+avx2+fma"))]
fn adamw_chunk(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: &Consts) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        // burn's first step builds the moments from the gradient alone (no `0·β + …`, which
        // would turn a −0 into +0).
        let (mi, vi) = if c.first {
            (g * c.factor_1, (g * g) * c.factor_2)
        } else {
            (
                *m * c.beta_1 + g * c.factor_1,
                *v * c.beta_2 + (g * g) * c.factor_2,
            )
        };
        *m = mi;
        *v = vi;
        let delta = (mi / c.correction_1) / ((vi / c.correction_2).sqrt() + c.epsilon);
        let kept = match c.keep {
            Some(k) => *p * k,
            None => *p,
        };
        *p = kept - delta * c.lr;
    }
}
