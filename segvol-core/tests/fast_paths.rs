//! The burn-flex fast paths (`segvol_core::fast`, segvol-kernels) against burn's generic code
//! (the ndarray backend runs none of them) at the base model's widths: 2048 tokens, hidden 768,
//! 12 heads, MLP 3072, the full decoder (two-way transformer, ConvTranspose3d upscaling,
//! hypernetwork, upsample). Two encoder blocks instead of twelve keep the test short; every
//! block is the same code. Same weights in both (one burnpack file), same image and prompts.
#![allow(clippy::unwrap_used)]

use burn::tensor::{Distribution, Tensor, TensorData};
use segvol_backends::{Flex, NdArray};
use segvol_core::weights::{load_segvol, save_burnpack};
use segvol_core::{Prompts, SegVol, SegVolConfig};

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

#[test]
fn fast_paths_equal_burns_generic_code_at_base_size() {
    let cfg = SegVolConfig {
        num_layers: 2,
        ..SegVolConfig::base()
    };
    let dev_f = Default::default();
    let dev_n = Default::default();
    let fast = SegVol::<Flex>::new(&cfg, &dev_f);
    let dir = tempfile::tempdir().unwrap();
    let bpk = dir.path().join("base2.bpk");
    save_burnpack(&fast, &cfg, "random", &bpk).unwrap();
    let mut generic = SegVol::<NdArray>::new(&cfg, &dev_n);
    load_segvol(&mut generic, &bpk).unwrap();

    let [d, h, w] = cfg.image_size;
    let image: Vec<f32> =
        Tensor::<Flex, 1>::random([d * h * w], Distribution::Normal(0.0, 1.0), &dev_f)
            .into_data()
            .to_vec()
            .unwrap();
    let prompts = Prompts {
        boxes: Some([2.0, 20.0, 30.0, 25.0, 150.0, 170.0]),
        points: vec![([10.0, 60.0, 70.0], 1), ([20.0, 140.0, 90.0], 0)],
        text: None,
    };

    let emb_f = fast.embed(Tensor::from_data(
        TensorData::new(image.clone(), [1, 1, d, h, w]),
        &dev_f,
    ));
    let emb_n = generic.embed(Tensor::from_data(
        TensorData::new(image, [1, 1, d, h, w]),
        &dev_n,
    ));
    let ef: Vec<f32> = emb_f.clone().into_data().to_vec().unwrap();
    let en: Vec<f32> = emb_n.clone().into_data().to_vec().unwrap();
    let scale = en.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let de = max_diff(&ef, &en);
    assert!(
        de <= 1e-4 * scale.max(1.0),
        "embedding: max abs diff {de} (max |x| {scale})"
    );

    // The decoder from the same embedding on both sides (the generic one's, moved over), so
    // its own difference is measured.
    let emb_same = Tensor::<Flex, 5>::from_data(TensorData::new(en, emb_n.dims()), &dev_f);
    let lf: Vec<f32> = fast
        .decode(emb_same, &prompts)
        .logits
        .into_data()
        .to_vec()
        .unwrap();
    let ln: Vec<f32> = generic
        .decode(emb_n, &prompts)
        .logits
        .into_data()
        .to_vec()
        .unwrap();
    let scale = ln.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let dl = max_diff(&lf, &ln);
    assert!(
        dl <= 1e-4 * scale.max(1.0),
        "logits: max abs diff {dl} (max |x| {scale})"
    );
}
