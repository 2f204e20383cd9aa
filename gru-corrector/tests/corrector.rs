//! The corrector against the PyTorch reference (reference/make_reference.py → tests/data), and
//! the acceptance properties of issue 6: padding rows never write, the hidden state carries,
//! gradients reach every parameter.

// Test code: a panic with the failing value is the right outcome.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use burn::module::{ModuleVisitor, Param};
use burn::optim::AdamWConfig;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use segvol_backends::Flex;
use segvol_gru::training::{LossWeights, TrainSample, sample_loss, train_step};
use segvol_gru::writeback::target_voxel;
use segvol_gru::{
    CorrectionSession, GruCorrectorConfig, load_corrector, save_corrector, seed::load_seed,
};
use segvol_io::npy::NpyData;
use segvol_sampler::{Click, SamplerConfig};

type AD = Autodiff<Flex>;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn npz(name: &str) -> HashMap<String, (Vec<usize>, NpyData)> {
    segvol_io::read_npz(data(name))
        .unwrap()
        .into_iter()
        .map(|(k, a)| (k, (a.shape, a.data)))
        .collect()
}

fn f32s(m: &HashMap<String, (Vec<usize>, NpyData)>, key: &str) -> Vec<f32> {
    match &m[key].1 {
        NpyData::F32(v) => v.clone(),
        other => panic!("{key}: {other:?}"),
    }
}

fn clicks(m: &HashMap<String, (Vec<usize>, NpyData)>, key: &str) -> Vec<Click> {
    let NpyData::I64(v) = &m[key].1 else {
        panic!("{key}")
    };
    v.chunks(4)
        .map(|c| Click {
            zyx: [c[0] as usize, c[1] as usize, c[2] as usize],
            foreground: c[3] == 1,
        })
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

const DIMS: [usize; 3] = [12, 20, 24];

#[test]
fn two_rounds_match_the_pytorch_reference() {
    let device = Default::default();
    let corrector = load_corrector::<Flex>(data("corrector.safetensors"), &device).unwrap();
    let cfg = corrector.config();
    assert_eq!((cfg.k, cfg.hidden, cfg.coord_head), (16, 24, true));
    let r = npz("session.npz");
    let mut logits = f32s(&r, "logits0");
    let mut session = CorrectionSession::new(&corrector, &device);
    for round in 1..=2 {
        let c = clicks(&r, &format!("clicks{round}"));
        let before = logits.clone();
        let rep = session.step(DIMS, &mut logits, &c).unwrap();
        let h = host(session.hidden().unwrap().clone());
        let dh = max_diff(&h, &f32s(&r, &format!("hidden{round}")));
        let dl = max_diff(&logits, &f32s(&r, &format!("logits{round}")));
        let changed = logits.iter().zip(&before).filter(|(a, b)| a != b).count();
        eprintln!(
            "round {round}: {rep:?}; hidden diff {dh:e}, logits diff {dl:e}, {changed} voxels changed"
        );
        assert!(dh <= 1e-5, "hidden {dh}");
        assert!(dl <= 1e-5, "logits {dl}");
        assert!(changed > 0);
        assert_eq!(rep.round, round);
        // Flips: exactly the voxels whose logit changed sign (no splat: the written ones).
        let flipped: HashSet<[usize; 3]> = (0..logits.len())
            .filter(|&i| (logits[i] > 0.0) != (before[i] > 0.0))
            .map(|i| {
                [
                    i / (DIMS[1] * DIMS[2]),
                    (i / DIMS[2]) % DIMS[1],
                    i % DIMS[2],
                ]
            })
            .collect();
        let got: HashSet<[usize; 3]> = rep.flips.iter().map(|f| f.zyx).collect();
        assert_eq!(got, flipped);
        assert_eq!(got.len(), rep.flips.len());
        for f in &rep.flips {
            let i = (f.zyx[0] * DIMS[1] + f.zyx[1]) * DIMS[2] + f.zyx[2];
            assert_eq!(f.foreground, logits[i] > 0.0);
        }
        assert!(
            rep.flips
                .windows(2)
                .all(|w| w[0].delta.abs() >= w[1].delta.abs())
        );
        eprintln!("round {round}: {} flips", rep.flips.len());
    }
}

#[test]
fn save_then_load_gives_the_same_corrector() {
    let device = Default::default();
    let a = load_corrector::<Flex>(data("corrector.safetensors"), &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.safetensors");
    save_corrector(&a.clone().with_splat_radius(2), &path).unwrap();
    let b = load_corrector::<Flex>(&path, &device).unwrap();
    assert_eq!(b.config().splat_radius, 2);
    assert_eq!(b.config().k, 16);
    let r = npz("session.npz");
    let c = clicks(&r, "clicks1");
    let l0 = f32s(&r, "logits0");
    let (mut la, mut lb) = (l0.clone(), l0.clone());
    CorrectionSession::new(&a.with_splat_radius(2), &device)
        .step(DIMS, &mut la, &c)
        .unwrap();
    CorrectionSession::new(&b, &device)
        .step(DIMS, &mut lb, &c)
        .unwrap();
    assert_eq!(la, lb);
    // Only the final file exists: the temporary was renamed.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn seed_five_block_layout_matches_pytorch() {
    let device = Default::default();
    let seed = load_seed::<Flex>(data("seed.pth"), &device).unwrap();
    assert_eq!((seed.blocks.len(), seed.k(), seed.hidden()), (5, 4, 10));
    let r = npz("seed.npz");
    let seq = f32s(&r, "seq");
    let coords =
        Tensor::<Flex, 2>::from_data(TensorData::new(f32s(&r, "coords"), [1, 24]), &device);
    for round in 0..3 {
        let t = 2 * (round + 1);
        let hist = Tensor::<Flex, 3>::from_data(
            TensorData::new(seq[..t * 32].to_vec(), [1, t, 32]),
            &device,
        );
        let p = host(seed.forward(round, hist, coords.clone()));
        let d = max_diff(&p, &f32s(&r, &format!("prob{round}")));
        eprintln!("seed block {round}: max abs diff {d:e}");
        assert!(d <= 1e-5, "block {round}: {d}");
    }
}

#[test]
fn wrong_files_are_named_errors() {
    let device = Default::default();
    let e = load_corrector::<Flex>(data("seed.pth"), &device).unwrap_err();
    assert!(e.to_string().contains("load_seed"), "{e}");
    let e = load_corrector::<Flex>(data("session.npz"), &device).unwrap_err();
    assert!(e.to_string().contains("session.npz"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.safetensors");
    let bytes = std::fs::read(data("corrector.safetensors")).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_corrector::<Flex>(&cut, &device).unwrap_err();
    assert!(e.to_string().contains("cut.safetensors"), "{e}");
    let e = load_seed::<Flex>(data("corrector.safetensors"), &device).unwrap_err();
    assert!(e.to_string().contains("five-block"), "{e}");
}

/// A volume whose logits are confident everywhere except three voxels, and no clicks: the
/// uncertainty set has 3 real rows of 16, the error set none. Only the three rows' target
/// voxels may change, whatever the (random, biased) corrector outputs for the 29 padding rows.
#[test]
fn padding_rows_never_change_a_voxel() {
    let device = Default::default();
    for seed in 0..4u64 {
        Flex::seed(&device, seed);
        let corrector = GruCorrectorConfig {
            k: 16,
            hidden: 24,
            ..Default::default()
        }
        .init::<Flex>(&device);
        let n: usize = DIMS.iter().product();
        let mut logits = vec![-8.0f32; n];
        let real = [[1, 2, 3], [5, 10, 11], [11, 19, 23]];
        for c in real {
            logits[(c[0] * DIMS[1] + c[1]) * DIMS[2] + c[2]] = 0.3;
        }
        let before = logits.clone();
        let mut s = CorrectionSession::new(&corrector, &device);
        let state = s.state(DIMS, &logits, &[]).unwrap();
        assert_eq!((state.uncertainty.n_valid, state.error.n_valid), (3, 0));
        // Where the real rows may land: within max_shift = 1 of their voxel, after rounding.
        let mut allowed = HashSet::new();
        for c in real {
            for dz in -1..=1 {
                for dy in -1..=1 {
                    for dx in -1..=1 {
                        allowed.insert(target_voxel(c, [dz as f32, dy as f32, dx as f32], DIMS));
                    }
                }
            }
        }
        let rep = s.step(DIMS, &mut logits, &[]).unwrap();
        assert_eq!(rep.writes, 3);
        let changed: Vec<[usize; 3]> = (0..n)
            .filter(|&i| logits[i] != before[i])
            .map(|i| {
                [
                    i / (DIMS[1] * DIMS[2]),
                    (i / DIMS[2]) % DIMS[1],
                    i % DIMS[2],
                ]
            })
            .collect();
        assert!(!changed.is_empty() && changed.len() <= 3, "{changed:?}");
        for c in &changed {
            assert!(allowed.contains(c), "seed {seed}: voxel {c:?} changed");
        }
        // The padding rows' coordinates are [0, 0, 0]: untouched.
        assert_eq!(logits[0], before[0]);
    }
}

/// Round 2 on identical inputs gives a different correction when round 1's hidden state is
/// carried than from a fresh session: the state really is carried.
#[test]
fn hidden_state_changes_round_two() {
    let device = Default::default();
    let corrector = load_corrector::<Flex>(data("corrector.safetensors"), &device).unwrap();
    let r = npz("session.npz");
    let l1 = f32s(&r, "logits1");
    let c1 = clicks(&r, "clicks1");
    let c2 = clicks(&r, "clicks2");
    let mut carried = CorrectionSession::new(&corrector, &device);
    let mut scratch = f32s(&r, "logits0");
    carried.step(DIMS, &mut scratch, &c1).unwrap();
    let h1 = host(carried.hidden().unwrap().clone());
    let mut a = l1.clone();
    carried.step(DIMS, &mut a, &c2).unwrap();
    // A fresh session that has seen the same first click (same features), but h0 = 0.
    let mut fresh = CorrectionSession::new(&corrector, &device);
    let mut b = l1.clone();
    fresh.step(DIMS, &mut b, &c2).unwrap();
    let d = max_diff(&a, &b);
    eprintln!("round-2 logits, carried vs fresh state: max diff {d}");
    assert!(d > 1e-3, "{d}");
    assert!(h1.iter().any(|v| *v != 0.0));
    // Reset forgets it: a reset session repeats the fresh result exactly.
    carried.reset();
    let mut c = l1.clone();
    carried.step(DIMS, &mut c, &c2).unwrap();
    assert_eq!(c, b);
}

fn sphere(dims: [usize; 3], centre: [f32; 3], r: f32) -> Vec<f32> {
    let mut v = Vec::with_capacity(dims.iter().product());
    for z in 0..dims[0] {
        for y in 0..dims[1] {
            for x in 0..dims[2] {
                let d = ((z as f32 - centre[0]).powi(2)
                    + (y as f32 - centre[1]).powi(2)
                    + (x as f32 - centre[2]).powi(2))
                .sqrt();
                v.push(r - d);
            }
        }
    }
    v
}

/// 10×16×16: the prediction is a sphere of radius 3.5 at the wrong place (logits 1.5 · signed
/// distance), the truth a sphere of radius 4.5.
fn training_case() -> ([usize; 3], Vec<f32>, Vec<bool>) {
    let dims = [10, 16, 16];
    let logits = sphere(dims, [5.0, 8.0, 7.0], 3.5)
        .iter()
        .map(|v| 1.5 * v)
        .collect();
    let gt = sphere(dims, [5.0, 8.0, 8.5], 4.5)
        .iter()
        .map(|v| *v >= 0.0)
        .collect();
    (dims, logits, gt)
}

struct GradCheck<'g> {
    grads: &'g <AD as burn::tensor::backend::AutodiffBackend>::Gradients,
    path: Vec<String>,
    seen: Vec<(String, f32, bool)>,
}

impl ModuleVisitor<AD> for GradCheck<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AD, D>>) {
        let name = self.path.join(".");
        match param.val().grad(self.grads) {
            Some(g) => {
                let v: Vec<f32> = g.into_data().to_vec().unwrap();
                let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                self.seen.push((name, max, v.iter().all(|x| x.is_finite())));
            }
            None => self.seen.push((name, 0.0, true)),
        }
    }
}

#[test]
fn gradients_reach_every_parameter() {
    use burn::module::Module;
    let device = Default::default();
    AD::seed(&device, 3);
    let cfg = GruCorrectorConfig {
        k: 8,
        hidden: 16,
        ..Default::default()
    };
    let corrector = cfg.init::<AD>(&device);
    let (dims, logits, gt) = training_case();
    let sample = TrainSample {
        dims,
        logits: &logits,
        gt: &gt,
    };
    let sampler = SamplerConfig {
        k: 8,
        ..Default::default()
    };
    let out = sample_loss(
        &corrector,
        &sample,
        2,
        &sampler,
        &LossWeights::default(),
        None,
    )
    .unwrap()
    .unwrap();
    assert_eq!(out.clicks.len(), 2);
    eprintln!(
        "loss terms (dice, bce, point bce, consistency): {:?}",
        out.terms
    );
    assert!(out.terms.iter().all(|t| t.is_finite()));
    let grads = out.loss.backward();
    let mut check = GradCheck {
        grads: &grads,
        path: Vec::new(),
        seen: Vec::new(),
    };
    corrector.visit(&mut check);
    // GRU: 3 gates × (input, hidden) × (weight, bias) = 12; two heads × 2.
    assert_eq!(check.seen.len(), 16, "{:?}", check.seen);
    for (name, max, finite) in &check.seen {
        eprintln!("{name}: max |grad| {max:e}");
        assert!(*finite, "{name}: non-finite gradient");
        assert!(*max > 0.0, "{name}: zero gradient");
    }
}

#[test]
fn adamw_steps_lower_the_loss_on_a_fixed_case() {
    let device = Default::default();
    AD::seed(&device, 11);
    let cfg = GruCorrectorConfig {
        k: 8,
        hidden: 16,
        ..Default::default()
    };
    let mut corrector = cfg.init::<AD>(&device);
    let (dims, logits, gt) = training_case();
    let samples = [TrainSample {
        dims,
        logits: &logits,
        gt: &gt,
    }];
    let sampler = SamplerConfig {
        k: 8,
        ..Default::default()
    };
    let mut optim = AdamWConfig::new().init();
    let mut losses = Vec::new();
    for _ in 0..15 {
        let (c, stats) = train_step(
            corrector,
            &mut optim,
            1e-2,
            &samples,
            &[2],
            &sampler,
            &LossWeights::default(),
        )
        .unwrap();
        corrector = c;
        assert_eq!(stats.used, 1);
        losses.push(stats.loss);
    }
    eprintln!("losses: {losses:?}");
    assert!(losses[14] < losses[0], "{losses:?}");
    // Zero rounds: nothing to learn, corrector returned as is.
    let (_, stats) = train_step(
        corrector,
        &mut optim,
        1e-2,
        &samples,
        &[0],
        &sampler,
        &LossWeights::default(),
    )
    .unwrap();
    assert_eq!(stats.used, 0);
}
