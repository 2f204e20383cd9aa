//! The fused AdamW against burn-optim's `AdamW`: the same parameters and moments, to the bit,
//! over several steps, with and without weight decay and gradient clipping.
#![allow(clippy::unwrap_used)]

use burn::backend::Autodiff;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{GradientsParams, Optimizer};
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::{Tensor, TensorData};
use segvol_backends::Flex;
use segvol_train::optim::{FusedAdamW, adamw, fused_updates};

type B = Autodiff<Flex>;

/// The fused-update counter is per process: the tests take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A small two-layer model (weights of two ranks, biases). (burn's `Module` derive needs the
/// backend parameter to be called `B`: under another name it visits no parameter.)
#[derive(Module, Debug)]
struct Net<B: burn::tensor::backend::Backend> {
    a: Linear<B>,
    b: Linear<B>,
}

impl<B: burn::tensor::backend::Backend> Net<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.b
            .forward(burn::tensor::activation::tanh(self.a.forward(x)))
    }
}

fn input(step: usize, device: &burn::tensor::Device<B>) -> Tensor<B, 2> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64 ^ step as u64;
    let v: Vec<f32> = (0..8 * 70)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect();
    Tensor::from_data(TensorData::new(v, [8, 70]), device)
}

fn params(m: &Net<B>) -> Vec<Vec<f32>> {
    [
        m.a.weight.val().into_data(),
        m.a.bias.as_ref().unwrap().val().into_data(),
        m.b.weight.val().into_data(),
        m.b.bias.as_ref().unwrap().val().into_data(),
    ]
    .into_iter()
    .map(|d| d.to_vec::<f32>().unwrap())
    .collect()
}

/// Runs `steps` steps of `optim` on a fresh seeded model; returns the parameters after each.
fn train<O: Optimizer<Net<B>, B>>(mut optim: O, steps: usize) -> Vec<Vec<Vec<f32>>> {
    let device = Default::default();
    <B as burn::tensor::backend::Backend>::seed(&device, 7);
    let mut net = Net::<B> {
        a: LinearConfig::new(70, 300).init(&device),
        b: LinearConfig::new(300, 5).init(&device),
    };
    let mut out = Vec::new();
    for step in 0..steps {
        // Large losses early on, so the clipping bites on some steps and not others.
        let loss = net
            .forward(input(step, &device))
            .powi_scalar(2)
            .sum()
            .mul_scalar(3.0);
        let grads = GradientsParams::from_grads::<B, _>(loss.backward(), &net);
        let lr = 0.01 / (1.0 + step as f64);
        net = optim.step(lr, net, grads);
        out.push(params(&net));
    }
    out
}

fn burn_adamw(weight_decay: f64, clip: f64) -> impl Optimizer<Net<B>, B> {
    let mut c = FusedAdamW::config(weight_decay as f32);
    if clip > 0.0 {
        c = c.with_grad_clipping(Some(burn::grad_clipping::GradientClippingConfig::Norm(
            clip as f32,
        )));
    }
    c.init::<B, Net<B>>()
}

#[test]
fn fused_adamw_equals_burns_adamw_to_the_bit() {
    let _turn = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (wd, clip) in [(0.0, 0.0), (0.05, 0.0), (0.01, 1.0)] {
        let before = fused_updates();
        let fused = train(adamw::<B, Net<B>>(wd, clip), 6);
        // Four parameters, six steps: every update took the fused path.
        assert_eq!(
            fused_updates() - before,
            24,
            "weight decay {wd}, clip {clip}"
        );
        let reference = train(burn_adamw(wd, clip), 6);
        for (step, (f, r)) in fused.iter().zip(&reference).enumerate() {
            for (k, (f, r)) in f.iter().zip(r).enumerate() {
                let diff = f
                    .iter()
                    .zip(r)
                    .filter(|(a, b)| a.to_bits() != b.to_bits())
                    .count();
                assert_eq!(
                    diff, 0,
                    "weight decay {wd}, clip {clip}, step {step}, parameter {k}: {diff} values differ"
                );
            }
        }
        // The parameters moved (an optimizer that did nothing would also agree with itself).
        assert_ne!(fused[0][0], fused[5][0]);
    }
}

/// How many of two models' parameter values differ in their bits.
fn differing(a: &Net<B>, b: &Net<B>) -> usize {
    let (a, b) = (params(a), params(b));
    a.iter()
        .zip(&b)
        .map(|(x, y)| {
            x.iter()
                .zip(y)
                .filter(|(p, q)| p.to_bits() != q.to_bits())
                .count()
        })
        .sum()
}

/// One step of `optim` on `net` with the loss of input `k`.
fn one_step<O: Optimizer<Net<B>, B>>(net: Net<B>, optim: &mut O, k: usize) -> Net<B> {
    let device = Default::default();
    let loss = net.forward(input(k, &device)).powi_scalar(2).sum();
    let grads = GradientsParams::from_grads::<B, _>(loss.backward(), &net);
    optim.step(1e-3, net, grads)
}

/// The optimizer's state is burn's `AdamW` record: a checkpoint file written by one resumes
/// in the other (old runs' checkpoints resume), and the next step agrees to the bit.
#[test]
fn fused_adamw_checkpoint_is_burns() {
    let _turn = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let device = Default::default();
    <B as burn::tensor::backend::Backend>::seed(&device, 3);
    let net = Net::<B> {
        a: LinearConfig::new(70, 300).init(&device),
        b: LinearConfig::new(300, 5).init(&device),
    };
    let dir = tempfile::tempdir().unwrap();
    let rec = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    let mut ours = adamw::<B, Net<B>>(0.01, 1.0);
    let net = one_step(net, &mut ours, 0);
    let net = one_step(net, &mut ours, 1);
    rec.record(ours.to_record(), dir.path().join("ours"))
        .unwrap();
    let mut theirs = burn_adamw(0.01, 1.0);
    theirs = theirs.load_record(rec.load(dir.path().join("ours"), &device).unwrap());
    // And back: burn's record into ours.
    rec.record(theirs.to_record(), dir.path().join("theirs"))
        .unwrap();
    let mut again = adamw::<B, Net<B>>(0.01, 1.0);
    again = again.load_record(rec.load(dir.path().join("theirs"), &device).unwrap());
    let a = one_step(net.clone(), &mut ours, 2);
    let b = one_step(net.clone(), &mut theirs, 2);
    let c = one_step(net.clone(), &mut again, 2);
    assert_eq!(differing(&a, &b), 0, "ours, resumed in burn's");
    assert_eq!(differing(&a, &c), 0, "ours, resumed from burn's");
    // A fresh optimizer (no state) steps differently: the state was really carried over.
    let d = one_step(net, &mut adamw::<B, Net<B>>(0.01, 1.0), 2);
    assert!(differing(&a, &d) > 1000);
}
