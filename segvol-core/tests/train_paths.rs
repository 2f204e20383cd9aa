//! Training through the fast kernels (`segvol_core::fast` on `Autodiff<Flex>`: attention,
//! GELU, linear layers and LayerNorms as graph nodes with their own backward passes) against burn's generic operations on
//! `Autodiff<NdArray>` (none of the fast paths run there): same weights, same image and
//! prompts, the same loss and the same gradient with respect to the image, which every
//! attention (the encoder's fused qkv, the decoder's q, k and v), GELU, linear layer and
//! LayerNorm lies on; and every parameter's gradient.
#![cfg(feature = "fast-cpu")]
#![allow(clippy::unwrap_used)]

use burn::backend::Autodiff;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor, TensorData};
use segvol_backends::{Flex, NdArray};
use segvol_core::fast::{Kernel, hits};
use segvol_core::weights::{load_segvol, save_burnpack};
use segvol_core::{Prompts, SegVol, SegVolConfig};

/// Every float parameter's gradient, in the model's visiting order (empty: none).
struct ParamGrads<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    out: Vec<Vec<f32>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for ParamGrads<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let g = param.val().grad(self.grads);
        self.out.push(
            g.map(|g| g.into_data().to_vec().unwrap())
                .unwrap_or_default(),
        );
    }
}

/// The loss (Σ low-resolution logits ⊙ w, a fixed pattern w), its gradient with respect to
/// the image and every parameter's.
fn loss_and_grads<B: AutodiffBackend>(
    model: &SegVol<B>,
    image: &[f32],
    prompts: &Prompts,
) -> (f32, Vec<f32>, Vec<Vec<f32>>) {
    let [d, h, w] = model.config().image_size;
    let device = Default::default();
    let x = Tensor::<B, 5>::from_data(TensorData::new(image.to_vec(), [1, 1, d, h, w]), &device)
        .require_grad();
    // The low-resolution logits: burn-ndarray has no backward for the upsampling after them.
    let logits = model.decode(model.embed(x.clone()), prompts).low_res_logits;
    let n: usize = logits.dims().iter().product();
    let weights: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) / n as f32)
        .collect();
    let wt = Tensor::<B, 5>::from_data(TensorData::new(weights, logits.dims()), &device);
    let loss = (logits * wt).sum();
    let value: f32 = loss.clone().into_scalar().elem();
    let grads = loss.backward();
    let g: Vec<f32> = x.grad(&grads).unwrap().into_data().to_vec().unwrap();
    let mut params = ParamGrads::<B> {
        grads: &grads,
        out: Vec::new(),
    };
    model.visit(&mut params);
    (value, g, params.out)
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt()
}

fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    let diff: Vec<f32> = got.iter().zip(want).map(|(a, b)| a - b).collect();
    norm(&diff) / norm(want)
}

#[test]
fn fast_training_nodes_give_burns_gradients() {
    type AF = Autodiff<Flex>;
    type AN = Autodiff<NdArray>;
    let dev_f = Default::default();
    let dev_n = Default::default();
    // The shipped model's shape (mask prompt with the image) with two blocks.
    let cfg = SegVolConfig {
        num_layers: 2,
        ..SegVolConfig::small()
    };
    <AF as burn::tensor::backend::Backend>::seed(&dev_f, 20);
    let fast = SegVol::<AF>::new(&cfg, &dev_f).with_mask_prompt_image(&dev_f);
    let cfg = fast.config().clone();
    let dir = tempfile::tempdir().unwrap();
    let bpk = dir.path().join("small2.bpk");
    save_burnpack(&fast, &cfg, "random", &bpk).unwrap();
    let mut generic = SegVol::<AN>::new(&cfg, &dev_n);
    load_segvol(&mut generic, &bpk).unwrap();

    let [d, h, w] = cfg.image_size;
    let n = d * h * w;
    let image: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let mut mask = vec![0f32; n];
    for z in 8..20 {
        for y in 20..40 {
            for x in 20..40 {
                mask[(z * h + y) * w + x] = 1.0;
            }
        }
    }
    let prompts = Prompts {
        boxes: Some([6.0, 18.0, 18.0, 22.0, 42.0, 42.0]),
        points: vec![([12.0, 30.0, 30.0], 0), ([10.0, 44.0, 44.0], 1)],
        mask: Some(mask),
        image: Some(image.clone()),
        text: None,
    };

    let count = |k: Kernel| hits().into_iter().find(|h| h.0 == k).map_or(0, |h| h.1);
    let kinds = [
        Kernel::TrainAttention,
        Kernel::TrainGelu,
        Kernel::TrainLinear,
        Kernel::TrainLayerNorm,
    ];
    let before = kinds.map(count);
    let copies = count(Kernel::Contiguous);
    let upscalings = count(Kernel::ConvTranspose);
    let (loss_f, grad_f, params_f) = loss_and_grads(&fast, &image, &prompts);
    let ran = kinds.map(count);
    // The decoder's token-major keys, their positional encodings and the keys back to
    // channel-major before the upscaling: three strided views copied as graph nodes.
    assert_eq!(
        count(Kernel::Contiguous) - copies,
        3,
        "contiguous copies in training"
    );
    // The decoder's two ConvTranspose3d(k = 2, s = 2) as graph nodes of their own.
    assert_eq!(
        count(Kernel::ConvTranspose) - upscalings,
        2,
        "transposed convolutions in training"
    );
    // Attention: one per encoder block, three per two-way layer (2 layers) and the final one;
    // GELU: one per encoder block, two in the upscaling, one in the mask prompt's cell MLP;
    // linear layers: four per encoder block, four per attention in the decoder; LayerNorms:
    // two per encoder block, the keys' one per two-way layer.
    assert_eq!(
        [0, 1, 2, 3].map(|i| ran[i] - before[i]),
        [2 + 2 * 3 + 1, 2 + 2 + 1, 2 * 4 + 7 * 4, 2 * 2 + 2],
        "training graph nodes that ran (attention, GELU, linear, LayerNorm)"
    );
    let (loss_n, grad_n, params_n) = loss_and_grads(&generic, &image, &prompts);

    assert!(
        (loss_f - loss_n).abs() <= 1e-4 * loss_n.abs().max(1e-3),
        "loss: fast {loss_f}, generic {loss_n}"
    );
    let scale = grad_n.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "the image gradient is zero");
    // Measured (seeded weights): max difference 5.5e-4 of the largest gradient, relative L2
    // 4.8e-4 (f32 summation order, the kernels' exp and erf); with the fused attention's key
    // gradient dropped: 1.0e-2 and 1.0e-2.
    let worst = grad_f
        .iter()
        .zip(&grad_n)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let rel = rel_l2(&grad_f, &grad_n);
    assert!(
        worst <= 3e-3 * scale && rel <= 2e-3,
        "image gradient: max abs diff {worst} (max |g| {scale}), relative L2 {rel}"
    );

    // Every parameter's gradient (the weights' and biases' own backward terms). Measured:
    // relative L2 differences 1e-6 to 1.1e-3. The key projections' biases have no gradient
    // in exact arithmetic (softmax ignores a shift shared by all keys): both sides are
    // rounding noise, 1e-9 against 1e-4 to 4e-3 for the others; they are checked to be that.
    assert_eq!(params_f.len(), params_n.len());
    let largest = params_n.iter().map(|g| norm(g)).fold(0.0, f64::max);
    let mut compared = 0;
    for (i, (f, n)) in params_f.iter().zip(&params_n).enumerate() {
        assert_eq!(
            f.is_empty(),
            n.is_empty(),
            "parameter {i}: a gradient on one side only"
        );
        if norm(n) >= 1e-4 * largest {
            let rel = rel_l2(f, n);
            assert!(
                rel <= 5e-3,
                "parameter {i} ({} values): relative L2 {rel}",
                n.len()
            );
            compared += 1;
        } else if !n.is_empty() {
            assert!(
                norm(f) < 1e-4 * largest,
                "parameter {i}: fast gradient norm {}, generic {}",
                norm(f),
                norm(n)
            );
        }
    }
    assert!(compared > 100, "{compared} parameters compared");
}
