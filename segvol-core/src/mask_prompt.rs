//! The previous mask and the clicks as dense prompts (segvol-rs's addition, config flag
//! `mask_prompt`, off for the released weights).
//!
//! SegVol (like SAM) is given a click as one sparse token and, with `dense_prompts`, one mark
//! per image token (4×8×8 voxels in the `small` preset). A correction click then has to move a
//! boundary that the model cannot see at the resolution it was made at, and the model does not
//! know what it predicted before, so a click can fix one place and undo another. Two additions,
//! as interactive models do (SAM's iterative training feeds the previous logits back as a dense
//! mask prompt; nnInteractive encodes clicks as small balls at image resolution):
//!
//! - **token level**: the previous mask at the decoder's mask resolution (4× the token grid per
//!   axis, `4·4·4 = 64` cells per token) goes through a linear layer (`64 → C`) and is added to
//!   the dense embedding. SAM has a 2-D conv stack for this (`mask_downscaling`, unused in
//!   SegVol's checkpoint, SEGVOL.md); one linear layer on the token's cells is that stack's
//!   patch-wise equivalent without convolutions, which burn's autodiff runs slowly on a CPU.
//! - **mask resolution**: three maps at the decoder's mask resolution — the previous mask
//!   (`2m − 1`; 0 without one), a ball of radius [`CLICK_RADIUS`] cells around each positive
//!   click and one around each negative click — go through a per-cell MLP (`3 → 16 → C/8`) and
//!   are added to the upscaled embedding `E` before the hypernetwork's product, so the mask
//!   token can read "what was there" and "the user clicked here" at the resolution of the mask.
//!
//! Both output layers start at zero: a model extended with [`SegVol::with_mask_prompt`] (e.g.
//! the shipped weights, fine-tuned) predicts exactly what it did before until it is trained.
//!
//! The previous mask is given on the model grid (`Prompts::mask`, values in `[0, 1]`); the
//! cell values are block means.
//!
//! [`SegVol::with_mask_prompt`]: crate::SegVol::with_mask_prompt

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::gelu;
use burn::tensor::{Tensor, TensorData, backend::Backend};

use crate::SegVolConfig;
use crate::prompt_encoder::Prompts;

/// Radius of a click's ball in mask cells (the decoder's resolution: 1×2×2 model-grid voxels
/// per cell in the `small` preset).
pub const CLICK_RADIUS: f32 = 2.0;

/// Hidden width of the per-cell MLP.
const HIDDEN: usize = 16;

/// The two mask-prompt layers (see the module docs).
#[derive(Module, Debug)]
pub struct MaskPrompt<B: Backend> {
    /// `64 → C`: a token's cells of the previous mask → its dense prompt.
    pub(crate) token: Linear<B>,
    /// `3 → 16`: (previous mask, positive ball, negative ball) per cell.
    pub(crate) cell_in: Linear<B>,
    /// `16 → C/8`: added to the upscaled embedding.
    pub(crate) cell_out: Linear<B>,
    /// `2 → 16` (no bias): the image's mean and spread per cell into the same hidden layer,
    /// with the config's `mask_prompt_image`. Starts at zero (so an extended model predicts
    /// as before); it learns once `cell_out` is not zero.
    pub(crate) cell_image: Option<Linear<B>>,
}

fn zero_linear<B: Backend>(cin: usize, cout: usize, device: &B::Device) -> Linear<B> {
    let mut l = LinearConfig::new(cin, cout).init(device);
    l.weight = Param::from_tensor(Tensor::zeros([cin, cout], device));
    l.bias = Some(Param::from_tensor(Tensor::zeros([cout], device)));
    l
}

fn image_linear<B: Backend>(device: &B::Device) -> Linear<B> {
    let mut l = LinearConfig::new(2, HIDDEN).with_bias(false).init(device);
    l.weight = Param::from_tensor(Tensor::zeros([2, HIDDEN], device));
    l
}

impl<B: Backend> MaskPrompt<B> {
    /// New layers for `config`, the output layers at zero.
    pub fn new(config: &SegVolConfig, device: &B::Device) -> Self {
        let c = config.hidden_size;
        MaskPrompt {
            token: zero_linear(64, c, device),
            cell_in: LinearConfig::new(3, HIDDEN).init(device),
            cell_out: zero_linear(HIDDEN, c / 8, device),
            cell_image: config.mask_prompt_image.then(|| image_linear(device)),
        }
    }

    /// Adds the image input (`mask_prompt_image`) if it is not there yet.
    pub fn with_image(mut self, device: &B::Device) -> Self {
        if self.cell_image.is_none() {
            self.cell_image = Some(image_linear(device));
        }
        self
    }

    /// The token-level term, `[1, C, gd, gh, gw]`, or `None` without a previous mask.
    pub fn dense(&self, maps: &CellMaps, device: &B::Device) -> Option<Tensor<B, 5>> {
        let tokens = maps.token_cells.as_ref()?;
        let [gd, gh, gw] = maps.grid;
        let n = gd * gh * gw;
        let x = Tensor::<B, 2>::from_data(TensorData::new(tokens.clone(), [n, 64]), device);
        let y = self.token.forward(x); // [n, C]
        let c = y.dims()[1];
        Some(y.swap_dims(0, 1).reshape([1, c, gd, gh, gw]))
    }

    /// The mask-resolution term, `[1, C/8, 4gd, 4gh, 4gw]`.
    pub fn cells(&self, maps: &CellMaps, device: &B::Device) -> Tensor<B, 5> {
        let [d, h, w] = maps.cells;
        let n = d * h * w;
        let x = Tensor::<B, 2>::from_data(TensorData::new(maps.cell_maps.clone(), [n, 3]), device);
        let mut hidden = self.cell_in.forward(x);
        if let (Some(l), Some(img)) = (&self.cell_image, &maps.image_cells) {
            let xi = Tensor::<B, 2>::from_data(TensorData::new(img.clone(), [n, 2]), device);
            hidden = hidden + l.forward(xi);
        }
        let hidden = crate::fast::gelu(&hidden).unwrap_or_else(|| gelu(hidden));
        let y = self.cell_out.forward(hidden); // [n, C/8]
        let c = y.dims()[1];
        y.swap_dims(0, 1).reshape([1, c, d, h, w])
    }
}

/// The box `[d0, h0, w0, d1, h1, w1]` (corners inclusive, model-grid voxel coordinates, as
/// `Prompts::boxes`) filled on a model grid of `image` voxels: each voxel's value is the
/// fraction of it (the unit cube around its centre) inside the box's cube `[lo − ½, hi + ½]`
/// per axis, so a box on whole voxels fills them with 1 and a box with fractional corners
/// (a window's clipped box, a resampled one) gives its edge voxels their share. A box with a
/// non-finite corner fills nothing. The mask of the box step with `box_mask_prompt`.
pub fn box_mask(b: [f32; 6], image: [usize; 3]) -> Vec<f32> {
    let n: usize = image.iter().product();
    if !b.iter().all(|v| v.is_finite()) {
        return vec![0.0; n];
    }
    // Per axis, each index's covered fraction.
    let cover = |a: usize| -> Vec<f32> {
        let (lo, hi) = (b[a].min(b[a + 3]) - 0.5, b[a].max(b[a + 3]) + 0.5);
        (0..image[a])
            .map(|i| {
                let (v0, v1) = (i as f32 - 0.5, i as f32 + 0.5);
                (v1.min(hi) - v0.max(lo)).clamp(0.0, 1.0)
            })
            .collect()
    };
    let (cz, cy, cx) = (cover(0), cover(1), cover(2));
    let mut m = Vec::with_capacity(n);
    for z in &cz {
        for y in &cy {
            let zy = z * y;
            m.extend(cx.iter().map(|x| zy * x));
        }
    }
    m
}

/// The host-side inputs of [`MaskPrompt`] for one decode.
#[derive(Debug, Clone, PartialEq)]
pub struct CellMaps {
    /// Token grid `[gd, gh, gw]`.
    pub grid: [usize; 3],
    /// Mask resolution `[4gd, 4gh, 4gw]`.
    pub cells: [usize; 3],
    /// Per token its 64 cells of `2m − 1` (token-major, cells `(a, b, c)` row-major), when
    /// there is a previous mask.
    pub token_cells: Option<Vec<f32>>,
    /// Per cell `(2m − 1 or 0, positive ball, negative ball)`, cell-major.
    pub cell_maps: Vec<f32>,
    /// Per cell the image's mean and standard deviation over the cell's voxels, cell-major,
    /// when the prompts carry the image.
    pub image_cells: Option<Vec<f32>>,
}

impl CellMaps {
    /// The maps of `prompts` for a model grid `image` with token grid `grid`. `None` when a
    /// patch side is not a multiple of 4 (no whole cells) — the config check refuses that.
    pub fn new(prompts: &Prompts, image: [usize; 3], grid: [usize; 3]) -> Option<Self> {
        Self::with_mask(prompts, prompts.mask.as_deref(), image, grid)
    }

    /// [`new`](Self::new) with `mask` as the previous mask in place of `prompts.mask` (the
    /// box step's filled box, `box_mask_prompt`).
    pub fn with_mask(
        prompts: &Prompts,
        mask: Option<&[f32]>,
        image: [usize; 3],
        grid: [usize; 3],
    ) -> Option<Self> {
        let cells = grid.map(|g| 4 * g);
        let block = [0, 1, 2].map(|a| image[a] / cells[a].max(1));
        if (0..3).any(|a| block[a] == 0 || block[a] * cells[a] != image[a]) {
            return None;
        }
        let nc: usize = cells.iter().product();
        let mut cell_maps = vec![0f32; nc * 3];
        let mut token_cells = None;
        let n_img: usize = image.iter().product();
        if let Some(m) = mask.filter(|m| m.len() == n_img) {
            // Block means on the cell grid.
            let per = (block[0] * block[1] * block[2]) as f32;
            let mut mean = vec![0f32; nc];
            for z in 0..image[0] {
                for y in 0..image[1] {
                    let row = (z * image[1] + y) * image[2];
                    let crow = ((z / block[0]) * cells[1] + y / block[1]) * cells[2];
                    for x in 0..image[2] {
                        mean[crow + x / block[2]] += m[row + x].clamp(0.0, 1.0);
                    }
                }
            }
            let signed: Vec<f32> = mean.iter().map(|v| 2.0 * v / per - 1.0).collect();
            for (i, v) in signed.iter().enumerate() {
                cell_maps[i * 3] = *v;
            }
            let [gd, gh, gw] = grid;
            let mut t = vec![0f32; gd * gh * gw * 64];
            for (i, v) in signed.iter().enumerate() {
                let (z, y, x) = (
                    i / (cells[1] * cells[2]),
                    (i / cells[2]) % cells[1],
                    i % cells[2],
                );
                let tok = ((z / 4) * gh + y / 4) * gw + x / 4;
                let sub = ((z % 4) * 4 + y % 4) * 4 + x % 4;
                t[tok * 64 + sub] = *v;
            }
            token_cells = Some(t);
        }
        let image_cells = prompts
            .image
            .as_ref()
            .filter(|m| m.len() == n_img)
            .map(|img| {
                let per = (block[0] * block[1] * block[2]) as f32;
                let mut sum = vec![0f32; nc];
                let mut sq = vec![0f32; nc];
                for z in 0..image[0] {
                    for y in 0..image[1] {
                        let row = (z * image[1] + y) * image[2];
                        let crow = ((z / block[0]) * cells[1] + y / block[1]) * cells[2];
                        for x in 0..image[2] {
                            let v = img[row + x];
                            sum[crow + x / block[2]] += v;
                            sq[crow + x / block[2]] += v * v;
                        }
                    }
                }
                sum.iter()
                    .zip(&sq)
                    .flat_map(|(s, q)| {
                        let mean = s / per;
                        [mean, (q / per - mean * mean).max(0.0).sqrt()]
                    })
                    .collect::<Vec<f32>>()
            });
        let r = CLICK_RADIUS;
        let ri = r.ceil() as isize;
        for (p, label) in &prompts.points {
            let ch = match label {
                1 => 1,
                0 => 2,
                _ => continue,
            };
            if !p.iter().all(|v| v.is_finite() && *v >= 0.0) {
                continue;
            }
            // Model-grid voxel index → cell coordinate (centres aligned).
            let c = [0, 1, 2].map(|a| (p[a] + 0.5) / block[a] as f32 - 0.5);
            let centre = c.map(|v| v.round() as isize);
            for dz in -ri..=ri {
                for dy in -ri..=ri {
                    for dx in -ri..=ri {
                        let q = [centre[0] + dz, centre[1] + dy, centre[2] + dx];
                        if (0..3).any(|a| q[a] < 0 || q[a] >= cells[a] as isize) {
                            continue;
                        }
                        let d2: f32 = (0..3).map(|a| (q[a] as f32 - c[a]).powi(2)).sum();
                        if d2 <= r * r {
                            let i = ((q[0] as usize) * cells[1] + q[1] as usize) * cells[2]
                                + q[2] as usize;
                            cell_maps[i * 3 + ch] = 1.0;
                        }
                    }
                }
            }
        }
        Some(CellMaps {
            grid,
            cells,
            token_cells,
            cell_maps,
            image_cells,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SegVol;
    use segvol_backends::Flex;

    /// `m`'s logits for `p` against `emb`, on the host.
    fn logits(m: &SegVol<Flex>, emb: &Tensor<Flex, 5>, p: &Prompts) -> Vec<f32> {
        m.decode(emb.clone(), p)
            .logits
            .into_data()
            .to_vec()
            .unwrap_or_default()
    }

    #[test]
    fn trained_layers_read_the_previous_mask_and_the_clicks() {
        let device = Default::default();
        let cfg = SegVolConfig::small().with_mask_prompt(true);
        let mut model = SegVol::<Flex>::new(&cfg, &device);
        let grid = cfg.image_size;
        let n: usize = grid.iter().product();
        let emb = model.embed(Tensor::zeros([1, 1, grid[0], grid[1], grid[2]], &device));
        let run = |m: &SegVol<Flex>, p: &Prompts| logits(m, &emb, p);
        let plain = Prompts {
            boxes: Some([6.0, 18.0, 18.0, 22.0, 42.0, 42.0]),
            ..Prompts::default()
        };
        let mut mask = vec![0f32; n];
        mask[..n / 2].fill(1.0);
        let with_mask = Prompts {
            mask: Some(mask),
            ..plain.clone()
        };
        let with_click = Prompts {
            points: vec![([12.0, 30.0, 30.0], 1)],
            ..plain.clone()
        };
        // Zero output layers: nothing changes.
        assert_eq!(run(&model, &with_mask), run(&model, &plain));
        let click0: Vec<f32> = run(&model, &with_click)
            .iter()
            .zip(run(&model, &plain))
            .map(|(a, b)| a - b)
            .collect();
        // Stand-ins for trained weights.
        if let Some(mp) = model.mask_prompt.as_mut() {
            let c = cfg.hidden_size;
            mp.token.weight = Param::from_tensor(Tensor::full([64, c], 0.05, &device));
            mp.cell_out.weight = Param::from_tensor(Tensor::full([HIDDEN, c / 8], 0.05, &device));
            // A cell with no mask and no click then adds exactly nothing (gelu(0) = 0).
            mp.cell_in.bias = Some(Param::from_tensor(Tensor::zeros([HIDDEN], &device)));
        }
        let base = run(&model, &plain);
        let differ = |a: &[f32]| a.iter().zip(&base).filter(|(x, y)| x != y).count();
        assert!(
            differ(&run(&model, &with_mask)) > n / 4,
            "the mask did not reach the logits"
        );
        // What the click adds beyond its sparse token: only near it (its ball, 2 cells = 2×4×4
        // voxels, widened by the upsampling).
        let click1: Vec<f32> = run(&model, &with_click)
            .iter()
            .zip(&base)
            .map(|(a, b)| a - b)
            .collect();
        let mut near = 0;
        for (i, (a, b)) in click1.iter().zip(&click0).enumerate() {
            if (a - b).abs() > 1e-6 {
                let (z, y, x) = (
                    i / (grid[1] * grid[2]),
                    (i / grid[2]) % grid[1],
                    i % grid[2],
                );
                let d = [z as f32 - 12.0, y as f32 - 30.0, x as f32 - 30.0];
                assert!(
                    d[0].abs() <= 3.0 && d[1].abs() <= 7.0 && d[2].abs() <= 7.0,
                    "the click's ball changed voxel ({z}, {y}, {x})"
                );
                near += 1;
            }
        }
        assert!(near > 20, "the click's ball changed {near} voxels");

        // `decode` (on this backend the upscaling fused with the hypernetwork's product, the
        // cells' term added after) against `decode_with_upscaled` (E made, the cells added to
        // it): one sum in two orders.
        let kept: Vec<f32> = model
            .decode_with_upscaled(emb.clone(), &with_mask)
            .logits
            .into_data()
            .to_vec()
            .unwrap_or_default();
        let fused = run(&model, &with_mask);
        assert!(
            model.decode(emb.clone(), &with_mask).upscaled.is_none(),
            "decode on flex took the fused path"
        );
        assert_eq!(kept.len(), fused.len());
        let scale = kept.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let worst = kept
            .iter()
            .zip(&fused)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            worst <= 1e-5 * scale,
            "fused against E kept: {worst} (scale {scale})"
        );

        // The image input: once its weights are not zero, the image moves the logits.
        let mut model = model.with_mask_prompt_image(&device);
        let img: Vec<f32> = (0..n).map(|i| (i % 13) as f32 / 13.0).collect();
        let with_image = Prompts {
            image: Some(img),
            ..plain.clone()
        };
        let base = run(&model, &plain);
        assert_eq!(
            run(&model, &with_image),
            base,
            "zero image weights changed the logits"
        );
        if let Some(l) = model
            .mask_prompt
            .as_mut()
            .and_then(|mp| mp.cell_image.as_mut())
        {
            l.weight = Param::from_tensor(Tensor::full([2, HIDDEN], 0.5, &device));
        }
        let moved = run(&model, &with_image)
            .iter()
            .zip(&run(&model, &plain))
            .filter(|(a, b)| a != b)
            .count();
        assert!(moved > n / 2, "the image moved {moved} of {n} logits");
    }

    #[test]
    fn block_means_and_balls_land_where_derived_by_hand() {
        // Model grid 4×8×8, tokens 1×1×1 (patch 4×8×8) → cells 4×4×4 of 1×2×2 voxels.
        let image = [4, 8, 8];
        let mut mask = vec![0f32; 4 * 8 * 8];
        // Voxel (1, 2, 3) and (1, 3, 3): cell (1, 1, 1) holds 2 of its 4 voxels → mean 0.5 → 0.
        mask[(8 + 2) * 8 + 3] = 1.0;
        mask[(8 + 3) * 8 + 3] = 1.0;
        // Cell (3, 0, 0) full → 1.
        for y in 0..2 {
            for x in 0..2 {
                mask[(3 * 8 + y) * 8 + x] = 1.0;
            }
        }
        let prompts = Prompts {
            mask: Some(mask),
            points: vec![([0.0, 0.0, 0.0], 1), ([3.0, 7.0, 7.0], 0)],
            ..Prompts::default()
        };
        let m = CellMaps::new(&prompts, image, [1, 1, 1]).expect("whole cells");
        assert_eq!(m.cells, [4, 4, 4]);
        let cell = |z: usize, y: usize, x: usize| (z * 4 + y) * 4 + x;
        assert_eq!(m.cell_maps[cell(1, 1, 1) * 3], 0.0);
        assert_eq!(m.cell_maps[cell(3, 0, 0) * 3], 1.0);
        assert_eq!(m.cell_maps[cell(0, 0, 0) * 3], -1.0);
        let t = m.token_cells.as_ref().expect("a mask was given");
        assert_eq!(t[cell(3, 0, 0)], 1.0);
        // Positive click at voxel (0,0,0) → cell coordinate (0, −0.25, −0.25); squared
        // distances: cell (1,0,0) 1.125, (0,1,1) 3.125 (in); (1,1,1) and (2,0,0) 4.125 (out).
        for (c, inside) in [
            (cell(0, 0, 0), 1.0),
            (cell(1, 0, 0), 1.0),
            (cell(0, 1, 1), 1.0),
            (cell(1, 1, 1), 0.0),
            (cell(2, 0, 0), 0.0),
        ] {
            assert_eq!(m.cell_maps[c * 3 + 1], inside, "cell {c}");
        }
        // Negative click at (3, 7, 7) → cell coordinate (3, 3.25, 3.25): cell (3,3,3) in.
        assert_eq!(m.cell_maps[cell(3, 3, 3) * 3 + 2], 1.0);
        assert_eq!(m.cell_maps[cell(3, 1, 3) * 3 + 2], 0.0); // (2.25)² > 4
        assert_eq!(m.cell_maps[cell(0, 0, 0) * 3 + 2], 0.0);
        assert!(m.image_cells.is_none());
        // Image cells: cell (0,0,0) holds voxels (0,0..2,0..2) = 1, 2, 3, 4 → mean 2.5,
        // std √1.25.
        let mut img = vec![0f32; 4 * 8 * 8];
        img[0] = 1.0;
        img[1] = 2.0;
        img[8] = 3.0;
        img[9] = 4.0;
        let with_image = Prompts {
            image: Some(img),
            ..Prompts::default()
        };
        let mi = CellMaps::new(&with_image, image, [1, 1, 1]).expect("whole cells");
        let ic = mi.image_cells.as_ref().expect("an image was given");
        assert!((ic[0] - 2.5).abs() < 1e-6);
        assert!((ic[1] - 1.25f32.sqrt()).abs() < 1e-6);
        assert_eq!(&ic[2..4], &[0.0, 0.0]);
        // A patch that is not a multiple of 4 cells has no whole cells.
        assert!(CellMaps::new(&prompts, [4, 8, 8], [2, 1, 1]).is_none());
    }

    #[test]
    fn the_filled_box_covers_what_was_derived_by_hand() {
        // Whole voxels: z 0, y 1, x 1..=2 of a 2×3×4 grid.
        let m = box_mask([0.0, 1.0, 1.0, 0.0, 1.0, 2.0], [2, 3, 4]);
        let mut want = vec![0f32; 24];
        want[4 + 1] = 1.0;
        want[4 + 2] = 1.0;
        assert_eq!(m, want);
        // Corners given in either order.
        assert_eq!(box_mask([0.0, 1.0, 2.0, 0.0, 1.0, 1.0], [2, 3, 4]), want);
        // Fractional corners: x from 0.5 to 1.25 covers [0, 1.75]: voxel 0 half (its part
        // [0, 0.5]), voxel 1 whole, voxel 2 a quarter ([1.5, 1.75]); z, y whole voxel 0.
        let m = box_mask([0.0, 0.0, 0.5, 0.0, 0.0, 1.25], [1, 1, 4]);
        assert_eq!(m, vec![0.5, 1.0, 0.25, 0.0]);
        // The sampler's "no object" box and non-finite corners fill nothing.
        assert!(box_mask([-1.0; 6], [2, 3, 4]).iter().all(|&v| v == 0.0));
        let nan = [0.0, 0.0, 0.0, f32::NAN, 1.0, 1.0];
        assert!(box_mask(nan, [2, 3, 4]).iter().all(|&v| v == 0.0));
        // A box past the grid is clipped to it.
        let m = box_mask([-3.0, -3.0, -3.0, 9.0, 9.0, 9.0], [2, 3, 4]);
        assert!(m.iter().all(|&v| v == 1.0));
    }

    #[test]
    fn the_box_step_starts_from_the_filled_box_with_box_mask_prompt() {
        let device = Default::default();
        let cfg = SegVolConfig::small().with_mask_prompt(true);
        let mut model = SegVol::<Flex>::new(&cfg, &device);
        // Stand-ins for trained weights, so the mask prompt reaches the logits.
        if let Some(mp) = model.mask_prompt.as_mut() {
            let c = cfg.hidden_size;
            mp.token.weight = Param::from_tensor(Tensor::full([64, c], 0.05, &device));
            mp.cell_out.weight = Param::from_tensor(Tensor::full([HIDDEN, c / 8], 0.05, &device));
        }
        let grid = cfg.image_size;
        let emb = model.embed(Tensor::zeros([1, 1, grid[0], grid[1], grid[2]], &device));
        let run = |m: &SegVol<Flex>, p: &Prompts| logits(m, &emb, p);
        let b = [6.0, 18.0, 18.0, 22.0, 42.0, 42.0];
        let boxed = Prompts {
            boxes: Some(b),
            ..Prompts::default()
        };
        let given = Prompts {
            mask: Some(box_mask(b, grid)),
            ..boxed.clone()
        };
        let off = run(&model, &boxed);
        let given_off = run(&model, &given);
        assert_ne!(off, given_off, "the filled box did not reach the logits");
        let click = Prompts {
            points: vec![([12.0, 30.0, 30.0], 1)],
            ..Prompts::default()
        };
        // Decoded once before the clone: burn initialises a parameter lazily, on its first
        // use, and a clone of one not yet used draws its own values (here the prompt
        // encoder's padding point, which box prompts do not use).
        let click_off = run(&model, &click);
        let on = model.clone().with_box_mask_prompt(true);
        // The box step: as if the filled box had been given.
        assert_eq!(run(&on, &boxed), given_off);
        // A previous mask given is used as it is, not replaced by the box.
        let mut prev = vec![0f32; grid.iter().product()];
        prev[..1000].fill(1.0);
        let with_prev = Prompts {
            mask: Some(prev),
            ..boxed.clone()
        };
        assert_eq!(run(&on, &with_prev), run(&model, &with_prev));
        // No box, no filling.
        assert_eq!(run(&on, &click), click_off);
    }
}
