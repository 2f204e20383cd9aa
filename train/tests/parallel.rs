//! `parallel_grads` (one autodiff graph per sample, on forked models, on several threads)
//! gives the gradients of the summed loss: the same update, bit for bit, on one thread or
//! two, and the update of one graph holding both samples up to float summation order.
#![allow(clippy::unwrap_used)]

use burn::backend::Autodiff;
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer, SgdConfig};
use burn::tensor::{Tensor, TensorData};
use burn_store::ModuleSnapshot;
use segvol_backends::Flex;
use segvol_core::{Prompts, SegVol, SegVolConfig};
use segvol_train::base::parallel_grads;

type B = Autodiff<Flex>;

fn values(m: &SegVol<B>) -> Vec<(String, Vec<f32>)> {
    m.collect(None, None, false)
        .into_iter()
        .map(|t| {
            let v = t
                .to_data()
                .unwrap()
                .convert::<f32>()
                .to_vec::<f32>()
                .unwrap();
            (t.full_path(), v)
        })
        .collect()
}

/// One sample's loss: a seeded image and box, the mean of the logits times a weight.
fn loss(m: &SegVol<B>, seed: u64, device: &burn::tensor::Device<B>) -> Tensor<B, 1> {
    let grid = m.image_size();
    let n: usize = grid.iter().product();
    let mut s = seed;
    let img: Vec<f32> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    let t = Tensor::<B, 5>::from_data(
        TensorData::new(img, [1, 1, grid[0], grid[1], grid[2]]),
        device,
    );
    let prompts = Prompts {
        boxes: Some([4.0, 10.0 + seed as f32, 12.0, 20.0, 40.0, 50.0]),
        ..Prompts::default()
    };
    let logits = m.decode(m.embed(t), &prompts).logits;
    logits.mean().mul_scalar(1.0 + seed as f32).reshape([1])
}

fn step(m: SegVol<B>, grads: GradientsParams) -> SegVol<B> {
    let mut opt = SgdConfig::new().init::<B, SegVol<B>>();
    opt.step(0.5, m, grads)
}

#[test]
fn parallel_gradients_equal_one_graph_of_the_summed_loss() {
    let device = Default::default();
    let model = SegVol::<B>::new(&SegVolConfig::tiny(), &device);
    let seeds = [3u64, 11];
    let by_threads = |threads: usize| {
        let parts = parallel_grads(&model, &seeds, threads, &device, |m, seed| {
            (loss(m, seed, &device), [0.0; 3])
        });
        assert_eq!(parts.len(), 2);
        let mut acc = GradientsAccumulator::<SegVol<B>>::new();
        for (g, _, _) in parts {
            acc.accumulate(&model, g);
        }
        values(&step(model.clone(), acc.grads()))
    };
    let one = by_threads(1);
    let two = by_threads(2);
    assert_eq!(one, two, "the thread count changed the update");

    let total = loss(&model, seeds[0], &device) + loss(&model, seeds[1], &device);
    let grads = GradientsParams::from_grads(total.backward(), &model);
    let joint = values(&step(model.clone(), grads));
    let before = values(&model);
    // The random positional encoding's matrix is a constant (a buffer in SAM and SegVol): no
    // gradient reaches it, so the update leaves it as it was.
    let pe = |v: &[(String, Vec<f32>)]| {
        v.iter()
            .find(|(p, _)| p.contains("positional_encoding_gaussian_matrix"))
            .map(|(_, x)| x.clone())
            .unwrap()
    };
    assert_eq!(pe(&two), pe(&before), "the update moved the PE matrix");
    let mut moved = 0usize;
    for (((pa, a), (pj, j)), (_, b)) in two.iter().zip(&joint).zip(&before) {
        assert_eq!(pa, pj);
        for ((x, y), z) in a.iter().zip(j).zip(b) {
            let (dx, dy) = (x - z, y - z);
            assert!(
                (dx - dy).abs() <= 1e-5 * (1.0 + dy.abs()) + 1e-7,
                "{pa}: update {dx} (per-sample graphs) vs {dy} (one graph)"
            );
            moved += usize::from(dx != 0.0);
        }
    }
    assert!(
        moved > 1000,
        "only {moved} values changed: no gradients reached the model"
    );
}
