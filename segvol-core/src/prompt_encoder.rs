//! SAM's prompt encoder lifted to 3-D (SEGVOL.md §5), with SegVol's coordinate-swap quirk.

use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig};
use burn::tensor::{Tensor, TensorData, backend::Backend};

use crate::SegVolConfig;

/// Prompts for one volume, in model-grid voxel indices `(d, h, w)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prompts {
    /// Box `[d0, h0, w0, d1, h1, w1]`, both corners inclusive.
    pub boxes: Option<[f32; 6]>,
    /// Points `(d, h, w)` with labels: 1 positive, 0 negative, −1 padding.
    pub points: Vec<([f32; 3], i64)>,
    /// A text prompt as its embedding: `hidden_size` values, what SegVol's CLIP text tower
    /// followed by `dim_align` produces for e.g. "liver". It becomes the last sparse token and
    /// adds the text-similarity map in the decoder (SEGVOL.md §5.4, §6.6). Make it with
    /// [`SegVol::embed_text`](crate::SegVol::embed_text) (a name) or
    /// [`SegVol::embed_text_ids`](crate::SegVol::embed_text_ids) (token ids).
    pub text: Option<Vec<f32>>,
    /// The previous mask on the model grid (`D·H·W` values in `[0, 1]`), for a model with
    /// `mask_prompt` (`crate::mask_prompt`); ignored by other models.
    pub mask: Option<Vec<f32>>,
    /// The model-grid image that was encoded (`D·H·W` values), for a model with
    /// `mask_prompt_image`; ignored by other models.
    pub image: Option<Vec<f32>>,
}

/// Random Fourier positional encoding (`PositionEmbeddingRandom`, scale 1).
#[derive(Module, Debug)]
pub struct PositionEmbeddingRandom<B: Backend> {
    /// `[3, C/2]`, drawn N(0, 1) at training time and loaded from the checkpoint.
    pub(crate) positional_encoding_gaussian_matrix: Param<Tensor<B, 2>>,
}

impl<B: Backend> PositionEmbeddingRandom<B> {
    /// `pe(c) = [sin(2π(2c−1)G) | cos(2π(2c−1)G)]`.
    ///
    /// # Shapes
    /// - `coords`: `[n, 3]` normalised → `[n, C]`
    ///
    /// The matrix is a constant, as in SAM and SegVol (a registered buffer there, not a
    /// parameter): it is detached, so training neither updates it nor differentiates the sines
    /// and cosines (their backward pass was 0.6 % of a training step's CPU).
    pub fn encode(&self, coords: Tensor<B, 2>) -> Tensor<B, 2> {
        let u = coords
            .mul_scalar(2.0)
            .sub_scalar(1.0)
            .matmul(self.positional_encoding_gaussian_matrix.val().detach())
            .mul_scalar(2.0 * std::f64::consts::PI);
        Tensor::cat(vec![u.clone().sin(), u.cos()], 1)
    }
}

/// The prompt encoder: sparse tokens for points and box corners, the dense "no mask" embedding,
/// and the dense positional encoding of the image-token grid.
#[derive(Module, Debug)]
pub struct PromptEncoder<B: Backend> {
    pub(crate) pe_layer: PositionEmbeddingRandom<B>,
    /// 0: negative point, 1: positive point, 2: box corner 0, 3: box corner 1.
    pub(crate) point_embeddings: Vec<Embedding<B>>,
    pub(crate) not_a_point_embed: Embedding<B>,
    pub(crate) no_mask_embed: Embedding<B>,
    /// Dense prompt vectors (rows: box, positive click, negative click), when the config has
    /// `dense_prompts`.
    pub(crate) dense_prompt_embed: Option<Embedding<B>>,
    grid: [usize; 3],
    patch: [usize; 3],
    image_size: [usize; 3],
    aligned: bool,
}

impl<B: Backend> PromptEncoder<B> {
    /// A prompt encoder for `config` (random values; load real ones with the weight loader).
    pub fn new(config: &SegVolConfig, device: &B::Device) -> Self {
        let c = config.hidden_size;
        let emb = || EmbeddingConfig::new(1, c).init(device);
        PromptEncoder {
            pe_layer: PositionEmbeddingRandom {
                positional_encoding_gaussian_matrix: Param::from_tensor(Tensor::random(
                    [3, c / 2],
                    burn::tensor::Distribution::Normal(0.0, 1.0),
                    device,
                )),
            },
            point_embeddings: (0..4).map(|_| emb()).collect(),
            not_a_point_embed: emb(),
            no_mask_embed: emb(),
            dense_prompt_embed: config
                .dense_prompts
                .then(|| EmbeddingConfig::new(3, c).init(device)),
            grid: config.grid(),
            patch: config.patch_size,
            image_size: config.image_size,
            aligned: config.aligned_prompt_coords,
        }
    }

    /// Dense positional encoding of the token grid. Cell `(i_d, i_h, i_w)` is encoded at
    /// `((i_h+0.5)/gh, (i_d+0.5)/gd, (i_w+0.5)/gw)`: channel 0 is H, channel 1 is D (§5.2).
    ///
    /// # Shapes
    /// - returns `[1, C, gd, gh, gw]`
    pub fn dense_pe(&self, device: &B::Device) -> Tensor<B, 5> {
        let [gd, gh, gw] = self.grid;
        let mut coords = Vec::with_capacity(gd * gh * gw * 3);
        for d in 0..gd {
            for h in 0..gh {
                for w in 0..gw {
                    coords.push((h as f32 + 0.5) / gh as f32);
                    coords.push((d as f32 + 0.5) / gd as f32);
                    coords.push((w as f32 + 0.5) / gw as f32);
                }
            }
        }
        let c = Tensor::<B, 2>::from_data(TensorData::new(coords, [gd * gh * gw, 3]), device);
        let pe = self.pe_layer.encode(c); // [n, C]
        let ch = pe.dims()[1];
        pe.swap_dims(0, 1).reshape([1, ch, gd, gh, gw])
    }

    /// Sparse coordinates with SegVol's swap: `((d+0.5)/H, (h+0.5)/D, (w+0.5)/W)` (§5.3), or
    /// in the dense PE's frame `((h+0.5)/H, (d+0.5)/D, (w+0.5)/W)` when the config aligns them.
    fn sparse_coords(&self, pts: &[[f32; 3]], device: &B::Device) -> Tensor<B, 2> {
        let [sd, sh, sw] = self.image_size.map(|s| s as f32);
        let v: Vec<f32> = if self.aligned {
            // The dense PE's frame: channel 0 is H, channel 1 is D.
            pts.iter()
                .flat_map(|p| [(p[1] + 0.5) / sh, (p[0] + 0.5) / sd, (p[2] + 0.5) / sw])
                .collect()
        } else {
            pts.iter()
                .flat_map(|p| [(p[0] + 0.5) / sh, (p[1] + 0.5) / sd, (p[2] + 0.5) / sw])
                .collect()
        };
        Tensor::from_data(TensorData::new(v, [pts.len(), 3]), device)
    }

    /// Sparse and dense embeddings of `prompts` (batch 1).
    ///
    /// Token order: points (+ a padding point when there is no box), then the two box
    /// corners, then the text token.
    ///
    /// # Shapes
    /// - returns `([1, T, C], [1, C, gd, gh, gw])`
    ///
    /// # Panics
    /// When a text embedding does not hold exactly `C` values (a programming error: check the
    /// length against the config's `hidden_size` before building the prompts).
    pub fn forward(&self, prompts: &Prompts, device: &B::Device) -> (Tensor<B, 3>, Tensor<B, 5>) {
        let mut rows: Vec<Tensor<B, 2>> = Vec::new();
        if !prompts.points.is_empty() {
            let mut pts: Vec<([f32; 3], i64)> = prompts.points.clone();
            if prompts.boxes.is_none() {
                pts.push(([-0.5; 3], -1)); // SAM appends (0,0,0)/−1 after the shift
            }
            let coords: Vec<[f32; 3]> = pts.iter().map(|p| p.0).collect();
            let pe = self.pe_layer.encode(self.sparse_coords(&coords, device)); // [n, C]
            for (i, (_, label)) in pts.iter().enumerate() {
                let row = pe.clone().narrow(0, i, 1);
                rows.push(match label {
                    -1 => self.not_a_point_embed.weight.val(),
                    0 => row + self.point_embeddings[0].weight.val(),
                    _ => row + self.point_embeddings[1].weight.val(),
                });
            }
        }
        if let Some(b) = prompts.boxes {
            let pe = self
                .pe_layer
                .encode(self.sparse_coords(&[[b[0], b[1], b[2]], [b[3], b[4], b[5]]], device));
            rows.push(pe.clone().narrow(0, 0, 1) + self.point_embeddings[2].weight.val());
            rows.push(pe.narrow(0, 1, 1) + self.point_embeddings[3].weight.val());
        }
        let c = self.no_mask_embed.weight.dims()[1];
        if let Some(t) = &prompts.text {
            assert_eq!(
                t.len(),
                c,
                "text embedding of {} values, expected {c}",
                t.len()
            );
            rows.push(Tensor::from_data(
                TensorData::new(t.clone(), [1, c]),
                device,
            ));
        }
        let sparse = if rows.is_empty() {
            Tensor::zeros([1, 0, c], device)
        } else {
            Tensor::cat(rows, 0).unsqueeze::<3>()
        };
        let [gd, gh, gw] = self.grid;
        let no_mask = self.no_mask_embed.weight.val().reshape([1, c, 1, 1, 1]);
        let dense = match &self.dense_prompt_embed {
            None => no_mask.expand([1, c, gd, gh, gw]),
            Some(e) => {
                let maps = self.dense_maps(prompts);
                let n = gd * gh * gw;
                let m = Tensor::<B, 2>::from_data(TensorData::new(maps, [3, n]), device);
                // [C, 3] · [3, n] → [C, n]
                let add = e
                    .weight
                    .val()
                    .transpose()
                    .matmul(m)
                    .reshape([1, c, gd, gh, gw]);
                // Broadcast by the add (the same sums as adding the expanded view): an element-wise
                // op with an `expand`ed (stride-0) operand walks burn-flex's strided iterator, 1 %
                // of a training step's CPU.
                add + no_mask
            }
        };
        (sparse, dense)
    }

    /// The three dense maps over the token grid, row-major `[3, gd·gh·gw]`: the fraction of
    /// each token inside the box (both corners inclusive, model-grid voxels), and per token the
    /// number of positive and of negative clicks in it.
    fn dense_maps(&self, prompts: &Prompts) -> Vec<f32> {
        let [gd, gh, gw] = self.grid;
        let n = gd * gh * gw;
        let mut maps = vec![0f32; 3 * n];
        if let Some(b) = prompts.boxes
            && b.iter().all(|v| v.is_finite())
            && (0..3).all(|a| b[a] >= 0.0 && b[a + 3] >= b[a])
        {
            // Per axis, the covered fraction of each token.
            let frac = |a: usize, g: usize| -> Vec<f32> {
                let p = self.patch[a] as f32;
                (0..g)
                    .map(|i| {
                        let (lo, hi) = (i as f32 * p, (i + 1) as f32 * p);
                        ((b[a + 3] + 1.0).min(hi) - b[a].max(lo)).max(0.0) / p
                    })
                    .collect()
            };
            let (fd, fh, fw) = (frac(0, gd), frac(1, gh), frac(2, gw));
            for (d, vd) in fd.iter().enumerate() {
                for (h, vh) in fh.iter().enumerate() {
                    for (w, vw) in fw.iter().enumerate() {
                        maps[(d * gh + h) * gw + w] = vd * vh * vw;
                    }
                }
            }
        }
        for (p, label) in &prompts.points {
            let row = match label {
                1 => 1,
                0 => 2,
                _ => continue,
            };
            if !p.iter().all(|v| v.is_finite() && *v >= 0.0) {
                continue;
            }
            let t =
                [0, 1, 2].map(|a| ((p[a] / self.patch[a] as f32) as usize).min(self.grid[a] - 1));
            maps[row * n + (t[0] * gh + t[1]) * gw + t[2]] += 1.0;
        }
        maps
    }
}
