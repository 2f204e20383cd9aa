//! The mask prompt (`segvol_core::mask_prompt`): a model extended with it predicts exactly what
//! it predicted before (its output layers start at zero), with or without a previous mask
//! (`mask_prompt::tests` checks that trained layers do read it); a config whose patches have no
//! whole mask cells is refused.
#![allow(clippy::unwrap_used)]

use burn::tensor::{Tensor, TensorData};
use segvol_backends::Flex;
use segvol_core::{ConfigError, Prompts, SegVol, SegVolConfig};

fn logits(m: &SegVol<Flex>, emb: &Tensor<Flex, 5>, p: &Prompts) -> Vec<f32> {
    m.decode(emb.clone(), p)
        .logits
        .into_data()
        .to_vec()
        .unwrap()
}

#[test]
fn an_extended_model_predicts_as_before_until_trained() {
    let device = Default::default();
    let cfg = SegVolConfig::small();
    let plain = SegVol::<Flex>::new(&cfg, &device);
    let grid = cfg.image_size;
    let n: usize = grid.iter().product();
    let img: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let emb = plain.embed(Tensor::from_data(
        TensorData::new(img, [1, 1, grid[0], grid[1], grid[2]]),
        &device,
    ));
    let mut mask = vec![0f32; n];
    for z in 8..20 {
        for y in 20..40 {
            for x in 20..40 {
                mask[(z * grid[1] + y) * grid[2] + x] = 1.0;
            }
        }
    }
    let with_mask = Prompts {
        boxes: Some([6.0, 18.0, 18.0, 22.0, 42.0, 42.0]),
        points: vec![([12.0, 30.0, 30.0], 0), ([10.0, 44.0, 44.0], 1)],
        mask: Some(mask),
        ..Prompts::default()
    };
    let without = Prompts {
        mask: None,
        image: None,
        ..with_mask.clone()
    };
    let before = logits(&plain, &emb, &without);
    let extended = plain.clone().with_mask_prompt(&device);
    assert!(extended.config().mask_prompt);
    assert_eq!(logits(&extended, &emb, &with_mask), before);
    assert_eq!(logits(&extended, &emb, &without), before);
    // The plain model ignores a mask.
    assert_eq!(logits(&plain, &emb, &with_mask), before);
    // The image input, added at zero, changes nothing either.
    let with_image = plain.clone().with_mask_prompt_image(&device);
    assert!(with_image.config().mask_prompt && with_image.config().mask_prompt_image);
    let grid_img: Vec<f32> = (0..n).map(|i| (i % 97) as f32 / 97.0).collect();
    let all = Prompts {
        image: Some(grid_img),
        ..with_mask.clone()
    };
    assert_eq!(logits(&with_image, &emb, &all), before);
}

#[test]
fn a_patch_without_whole_cells_is_refused() {
    let cfg = SegVolConfig::small().with_mask_prompt(true);
    assert_eq!(cfg.validate(), Ok(()));
    assert_eq!(
        SegVolConfig::small()
            .with_mask_prompt_image(true)
            .validate(),
        Err(ConfigError::MaskPromptImageAlone)
    );
    let bad = SegVolConfig::new([32, 64, 64], [2, 8, 8], 64, 128, 1, 2).with_mask_prompt(true);
    assert_eq!(
        bad.validate(),
        Err(ConfigError::MaskPromptPatch { axis: 0, patch: 2 })
    );
}
