//! The whole model: encoder, prompt encoder, decoder, final upsampling (SEGVOL.md §3).

use burn::module::Module;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Int, Tensor, TensorData, backend::Backend};

use crate::SegVolConfig;
use crate::image_encoder::ImageEncoder;
use crate::mask_decoder::MaskDecoder;
use crate::mask_prompt::{CellMaps, MaskPrompt};
use crate::prompt_encoder::{PromptEncoder, Prompts};
use crate::text::{TextEncoder, TextError};

/// SegVol: image encoder, prompt encoder, mask decoder and, when the weights carry it, the CLIP
/// text tower. Create with [`SegVol::new`] (no text tower), then load weights with
/// [`crate::weights::load_segvol`], which adds the tower when the checkpoint has its keys.
#[derive(Module, Debug)]
pub struct SegVol<B: Backend> {
    pub(crate) image_encoder: ImageEncoder<B>,
    pub(crate) prompt_encoder: PromptEncoder<B>,
    pub(crate) mask_decoder: MaskDecoder<B>,
    /// SegVol's `text_encoder` (frozen CLIP + `dim_align`); `None` for weights without it.
    pub(crate) text_encoder: Option<TextEncoder<B>>,
    /// The previous mask and the clicks as dense prompts, with the config's `mask_prompt`.
    pub(crate) mask_prompt: Option<MaskPrompt<B>>,
    image_size: [usize; 3],
    /// Text embeddings by name (computed once per model).
    #[module(skip)]
    text_cache: TextCache,
    /// Where the weights came from (for the "no text tower" error).
    #[module(skip)]
    weights_name: Option<String>,
    /// The configuration the model was built with (checked against the one a `.bpk` stores).
    #[module(skip)]
    config: SegVolConfig,
    /// The dense positional encoding is the same for every decode: it depends only on the grid
    /// and the prompt encoder's Gaussian matrix. On the CPU fast path it is kept here with the
    /// matrix it came from and reused while the matrix is unchanged (new weights, training).
    #[module(skip)]
    pe_cache: PeCache,
}

/// `(Gaussian matrix, dense PE)` of the last decode: the PE a `Tensor<B, 5>`, type-erased
/// (burn's `Module` derive takes a field generic over the backend for a module). Returned as
/// a handle to the same buffer, which lets the decoder's image cache see it unchanged at once.
type PeCache = std::sync::Arc<std::sync::Mutex<Option<(Vec<f32>, Box<dyn std::any::Any + Send>)>>>;

/// Name → text embedding (`embed_text` takes `&self`, hence the lock).
type TextCache = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<f32>>>>;

/// Every intermediate of one decode, for parity checks and debugging.
#[derive(Debug, Clone)]
pub struct DecodeOutput<B: Backend> {
    /// `[1, T, C]`
    pub sparse: Tensor<B, 3>,
    /// `[1, C, gd, gh, gw]`
    pub dense: Tensor<B, 5>,
    /// Upscaled embedding `[1, C/8, 4gd, 4gh, 4gw]`: always from
    /// [`decode_with_upscaled`](SegVol::decode_with_upscaled); `decode` leaves it out on the
    /// fast CPU path (burn-flex), which reduces it to the mask as it is made, never holding it
    /// whole, and returns it on other backends.
    pub upscaled: Option<Tensor<B, 5>>,
    /// `[1, 1, 4gd, 4gh, 4gw]`
    pub low_res_logits: Tensor<B, 5>,
    /// `[1, 1, D, H, W]` on the model grid.
    pub logits: Tensor<B, 5>,
}

impl<B: Backend> SegVol<B> {
    /// A model for `config` with random weights.
    pub fn new(config: &SegVolConfig, device: &B::Device) -> Self {
        SegVol {
            image_encoder: ImageEncoder::new(config, device),
            prompt_encoder: PromptEncoder::new(config, device),
            mask_decoder: MaskDecoder::new(config, device),
            text_encoder: None,
            mask_prompt: config.mask_prompt.then(|| MaskPrompt::new(config, device)),
            image_size: config.image_size,
            text_cache: TextCache::default(),
            weights_name: None,
            config: config.clone(),
            pe_cache: PeCache::default(),
        }
    }

    /// This model with the mask prompt added (`crate::mask_prompt`; its output layers at zero,
    /// so it predicts what this model predicts until trained). A model that has it is
    /// returned as it is.
    pub fn with_mask_prompt(mut self, device: &B::Device) -> Self {
        if self.mask_prompt.is_none() {
            self.config = self.config.clone().with_mask_prompt(true);
            self.mask_prompt = Some(MaskPrompt::new(&self.config, device));
            if let Ok(mut c) = self.pe_cache.lock() {
                *c = None;
            }
        }
        self
    }

    /// This model with the mask prompt's image input added (`mask_prompt_image`; the mask
    /// prompt too when it is missing), at zero, so it predicts as before until trained.
    pub fn with_mask_prompt_image(self, device: &B::Device) -> Self {
        let mut m = self.with_mask_prompt(device);
        if !m.config.mask_prompt_image {
            m.config = m.config.clone().with_mask_prompt_image(true);
            m.mask_prompt = m.mask_prompt.map(|p| p.with_image(device));
        }
        m
    }

    /// This model with `box_mask_prompt` set to `on` (the box step starts from the filled box;
    /// it has no weights, so any model takes it, and one without the mask prompt ignores it).
    pub fn with_box_mask_prompt(mut self, on: bool) -> Self {
        self.config = self.config.clone().with_box_mask_prompt(on);
        self
    }

    /// The model grid `[D, H, W]`.
    pub fn image_size(&self) -> [usize; 3] {
        self.image_size
    }

    /// The expensive step, once per volume: `[1, 1, D, H, W]` → `[1, C, gd, gh, gw]`.
    pub fn embed(&self, image: Tensor<B, 5>) -> Tensor<B, 5> {
        self.image_encoder.forward(image)
    }

    /// The dense positional encoding of the token grid, `[1, C, gd, gh, gw]`.
    pub fn image_pe(&self, device: &B::Device) -> Tensor<B, 5> {
        self.prompt_encoder.dense_pe(device)
    }

    /// Replaces the decoder's text-similarity projection `txt_align_upscaled_embedding`
    /// (weight `[C, C/8]` in burn's layout, bias `[C/8]`), e.g. with weights of a text-enabled
    /// checkpoint loaded separately.
    pub fn set_text_align(
        &mut self,
        weight: burn::module::Param<Tensor<B, 2>>,
        bias: burn::module::Param<Tensor<B, 1>>,
    ) {
        self.mask_decoder.txt_align_upscaled_embedding.weight = weight;
        self.mask_decoder.txt_align_upscaled_embedding.bias = Some(bias);
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &SegVolConfig {
        &self.config
    }

    /// The model's width (768 for the released SegVol): the length of a text embedding.
    pub fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    /// Whether the text tower is loaded.
    pub fn has_text(&self) -> bool {
        self.text_encoder.is_some()
    }

    /// Sets (or removes) the text tower; forgets cached text embeddings.
    pub fn set_text_encoder(&mut self, text: Option<TextEncoder<B>>) {
        self.text_encoder = text;
        if let Ok(mut c) = self.text_cache.lock() {
            c.clear();
        }
    }

    /// Records where the weights came from, for error messages.
    pub fn set_weights_name(&mut self, name: &str) {
        self.weights_name = Some(name.to_string());
    }

    fn text_tower(&self) -> Result<&TextEncoder<B>, TextError> {
        self.text_encoder
            .as_ref()
            .ok_or_else(|| TextError::NotLoaded {
                weights: self
                    .weights_name
                    .clone()
                    .unwrap_or_else(|| "the model".into()),
            })
    }

    /// SegVol's text embedding (`dim_align(pooler_output)`, `hidden_size` values) of CLIP token
    /// ids (start and end tokens included).
    ///
    /// # Errors
    /// [`TextError::NotLoaded`] without a text tower; [`TextError::BadIds`] / `TooLong` for
    /// ids the tower cannot take.
    pub fn embed_text_ids(&self, ids: &[u32]) -> Result<Vec<f32>, TextError> {
        self.text_tower()?.embed_ids(ids)
    }

    /// SegVol's text embedding of a structure's name: the prompt
    /// `"A computerized tomography of a {name}."`, CLIP's tokenizer, the tower and `dim_align`.
    /// Computed once per name and model, then taken from a cache.
    ///
    /// # Errors
    /// [`TextError::NotLoaded`] without a text tower; [`TextError::TooLong`] for a name whose
    /// prompt exceeds 77 tokens; [`TextError::NoTokenizer`] in a build without the `text`
    /// feature.
    pub fn embed_text(&self, name: &str) -> Result<Vec<f32>, TextError> {
        let tower = self.text_tower()?;
        if let Some(v) = self
            .text_cache
            .lock()
            .ok()
            .and_then(|c| c.get(name).cloned())
        {
            return Ok(v);
        }
        let ids = crate::text::tokenize_prompt(name)?;
        let v = tower.embed_ids(&ids).map_err(|e| match e {
            TextError::TooLong { tokens, max, .. } => TextError::TooLong {
                name: name.to_string(),
                tokens,
                max,
            },
            other => other,
        })?;
        if let Ok(mut c) = self.text_cache.lock() {
            c.insert(name.to_string(), v.clone());
        }
        Ok(v)
    }

    /// The cheap step, per prompt: decode `prompts` against a cached embedding.
    pub fn decode(&self, embedding: Tensor<B, 5>, prompts: &Prompts) -> DecodeOutput<B> {
        self.decode_marked(embedding, prompts, &mut |_| {})
    }

    /// [`decode`](Self::decode), keeping the upscaled embedding in
    /// [`DecodeOutput::upscaled`] (parity checks, debugging).
    pub fn decode_with_upscaled(
        &self,
        embedding: Tensor<B, 5>,
        prompts: &Prompts,
    ) -> DecodeOutput<B> {
        self.decode_inner(embedding, prompts, true, &mut |_| {})
    }

    /// [`decode`](Self::decode), calling `mark(stage)` as each stage ends (profiling).
    pub fn decode_marked(
        &self,
        embedding: Tensor<B, 5>,
        prompts: &Prompts,
        mark: &mut dyn FnMut(&'static str),
    ) -> DecodeOutput<B> {
        self.decode_inner(embedding, prompts, false, mark)
    }

    fn decode_inner(
        &self,
        embedding: Tensor<B, 5>,
        prompts: &Prompts,
        keep_upscaled: bool,
        mark: &mut dyn FnMut(&'static str),
    ) -> DecodeOutput<B> {
        let device = embedding.device();
        let (sparse, mut dense) = self.prompt_encoder.forward(prompts, &device);
        let mut cell_term = None;
        if let Some(mp) = &self.mask_prompt {
            // The box step of a model with `box_mask_prompt`: the filled box is the mask it
            // starts from.
            let filled = match (self.config.box_mask_prompt, &prompts.mask, prompts.boxes) {
                (true, None, Some(b)) => Some(crate::mask_prompt::box_mask(b, self.image_size)),
                _ => None,
            };
            let mask = prompts.mask.as_deref().or(filled.as_deref());
            if let Some(maps) =
                CellMaps::with_mask(prompts, mask, self.image_size, self.config.grid())
            {
                if let Some(t) = mp.dense(&maps, &device) {
                    dense = dense + t;
                }
                cell_term = Some(mp.cells(&maps, &device));
            }
        }
        let pe = self.cached_dense_pe(&device);
        let text = prompts
            .text
            .as_ref()
            .map(|t| Tensor::<B, 2>::from_data(TensorData::new(t.clone(), [1, t.len()]), &device));
        mark("prompt encoder");
        let (upscaled, low) = self.mask_decoder.forward_marked(
            embedding,
            pe,
            sparse.clone(),
            dense.clone(),
            text,
            cell_term,
            keep_upscaled,
            self.mask_prompt.is_none() && self.prompt_encoder.dense_prompt_embed.is_none(),
            mark,
        );
        let logits = upsample_trilinear(low.clone(), self.image_size);
        mark("upsample to the model grid");
        DecodeOutput {
            sparse,
            dense,
            upscaled,
            low_res_logits: low,
            logits,
        }
    }
}

impl<B: Backend> SegVol<B> {
    /// The dense PE, from the cache on the fast CPU path (see `pe_cache`), computed otherwise.
    fn cached_dense_pe(&self, device: &B::Device) -> Tensor<B, 5> {
        if !crate::fast::is_active::<B>() {
            return self.prompt_encoder.dense_pe(device);
        }
        let key: Vec<f32> = match self
            .prompt_encoder
            .pe_layer
            .positional_encoding_gaussian_matrix
            .val()
            .into_data()
            .to_vec()
        {
            Ok(v) => v,
            Err(_) => return self.prompt_encoder.dense_pe(device),
        };
        let Ok(mut slot) = self.pe_cache.lock() else {
            return self.prompt_encoder.dense_pe(device);
        };
        if let Some((k, pe)) = slot.as_ref()
            && *k == key
            && let Some(pe) = pe.downcast_ref::<Tensor<B, 5>>()
        {
            return pe.clone();
        }
        let pe = self.prompt_encoder.dense_pe(device);
        *slot = Some((key, Box::new(pe.clone())));
        pe
    }
}

/// `F.interpolate(x, size, mode="trilinear", align_corners=False)`. Separable: per-slice
/// bilinear on (H, W) with burn's interpolate, then linear along D with PyTorch's source index
/// rule (SEGVOL.md §6.8: `x = max((o + 0.5)·s − 0.5, 0)`, `s = n_in / n_out` in f32). In
/// SegVol the depth does not change and the D step is skipped (the identity).
pub fn upsample_trilinear<B: Backend>(x: Tensor<B, 5>, size: [usize; 3]) -> Tensor<B, 5> {
    let [b, c, d, h, w] = x.dims();
    // On the CPU (burn-flex) on the host, one axis at a time (`resize::trilinear`, PyTorch's
    // rule and order of operations): burn's bilinear took 14.5 ms of a 180 ms decode.
    if crate::fast::is_active::<B>()
        && b * c * d * h * w > 0
        && let Ok(v) = x.clone().into_data().to_vec::<f32>()
    {
        let out = if d == size[0] {
            // SegVol's case (the depth kept): the planes in parallel, 8 MB at base size.
            let mut out = vec![0.0f32; b * c * d * size[1] * size[2]];
            crate::fast::zip_chunks(&mut out, size[1] * size[2], &v, h * w, |o, p| {
                crate::resize::bilinear_plane(p, [h, w], [size[1], size[2]], o)
            });
            out
        } else {
            let mut out = Vec::with_capacity(b * c * size.iter().product::<usize>());
            for vol in v.chunks_exact(d * h * w) {
                out.extend(crate::resize::trilinear(vol, [d, h, w], size));
            }
            out
        };
        return Tensor::from_data(
            TensorData::new(out, [b, c, size[0], size[1], size[2]]),
            &x.device(),
        );
    }
    let slices = x.reshape([b * c * d, 1, h, w]);
    let up = interpolate(
        slices,
        [size[1], size[2]],
        InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false),
    );
    let up: Tensor<B, 5> = up.reshape([b, c, d, size[1], size[2]]);
    if d == size[0] {
        return up;
    }
    let device = up.device();
    let n_out = size[0];
    let s = d as f32 / n_out as f32;
    let mut i0 = Vec::with_capacity(n_out);
    let mut i1 = Vec::with_capacity(n_out);
    let mut lam = Vec::with_capacity(n_out);
    for o in 0..n_out {
        let src = ((o as f32 + 0.5) * s - 0.5).max(0.0);
        let lo = (src.floor() as usize).min(d - 1);
        i0.push(lo as i64);
        i1.push((lo + 1).min(d - 1) as i64);
        lam.push(src - lo as f32);
    }
    let idx = |v: Vec<i64>| Tensor::<B, 1, Int>::from_data(TensorData::new(v, [n_out]), &device);
    let l = Tensor::<B, 1>::from_data(TensorData::new(lam, [n_out]), &device)
        .reshape([1, 1, n_out, 1, 1]);
    let a = up.clone().select(2, idx(i0));
    let bb = up.select(2, idx(i1));
    a.clone() + (bb - a) * l
}
