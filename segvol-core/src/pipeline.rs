//! Preprocessing and the zoom-out pass of SegVol's inference (SEGVOL.md §8–§9), on plain
//! (z, y, x) volumes, for a volume of any size and a box / clicks in its voxel indices.
//!
//! Steps, as the challenge variant does them: foreground normalisation → min-max → crop to the
//! foreground → resize the crop to the model grid (`nearest`) → build prompts on that grid →
//! one model pass → resize the logits back to the crop (`nearest`) → paste into the original
//! geometry (outside the crop: no object).
//!
//! The zoom-in sliding-window refinement (§9.2–9.4) is [`Session::predict_zoom_in`], in
//! `zoom.rs` (which builds on this module, not the reverse).

use burn::tensor::{Tensor, TensorData, backend::Backend};

use crate::model::SegVol;
use crate::prompt_encoder::Prompts;
use crate::resize::{ResizeMode, nearest_indices, resize, trilinear_with};

/// numpy's `percentile(v, p)` (linear) of a sorted slice.
fn percentile_sorted(v: &[f32], p: f64) -> f32 {
    let pos = (v.len() - 1) as f64 * p / 100.0;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let f = (pos - lo as f64) as f32;
    v[lo] + (v[hi] - v[lo]) * f
}

/// SegVol's foreground normalisation: voxels above the volume mean are the foreground; clip to
/// its 0.05th–99.95th percentiles, subtract its mean, divide by its (population) std. The
/// plain definition (a sorted copy of the foreground); the pipeline runs
/// [`normalize_for_model`], which gives the same values without the sort.
pub fn foreground_normalize(img: &[f32]) -> Vec<f32> {
    if img.is_empty() {
        return Vec::new();
    }
    let mean = img.iter().map(|&v| f64::from(v)).sum::<f64>() / img.len() as f64;
    let mut fg: Vec<f32> = img
        .iter()
        .copied()
        .filter(|&v| f64::from(v) > mean)
        .collect();
    if fg.is_empty() {
        return img.to_vec();
    }
    fg.sort_by(f32::total_cmp);
    let (lo, hi) = (percentile_sorted(&fg, 0.05), percentile_sorted(&fg, 99.95));
    let n = fg.len() as f64;
    let mu = fg.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let sd = (fg.iter().map(|&v| (f64::from(v) - mu).powi(2)).sum::<f64>() / n).sqrt();
    let (mu, sd) = (mu as f32, (sd as f32).max(1e-8));
    img.iter().map(|&v| (v.clamp(lo, hi) - mu) / sd).collect()
}

/// `img − min`, then divided by `max(max, 1e-8)`.
pub fn min_max(img: &[f32]) -> Vec<f32> {
    let lo = img.iter().copied().fold(f32::INFINITY, f32::min);
    let shifted: Vec<f32> = img.iter().map(|&v| v - lo).collect();
    let hi = shifted.iter().copied().fold(0.0f32, f32::max).max(1e-8);
    shifted.into_iter().map(|v| v / hi).collect()
}

/// A key whose unsigned order is `f32::total_cmp`'s.
fn total_key(v: f32) -> u32 {
    let b = v.to_bits();
    if b >> 31 == 1 { !b } else { b | (1 << 31) }
}

/// The value of a [`total_key`].
fn from_total_key(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 1 { k & !(1 << 31) } else { !k })
}

/// `min_max(&foreground_normalize(img))`, the model's input normalisation, without sorting or
/// copying the foreground: a CT's 40 M foreground voxels took most of a second to sort, about
/// half of a 300×512×512 CT's whole encoding step. The two percentiles are order statistics
/// near the ends (0.05 % of the foreground from each), kept in bounded heaps; the min-max
/// step's extremes are those of the input mapped (every step is monotonic), so one output pass
/// does both; every pass is split over the cores. The only difference from the definition is
/// the order in which the f64 sums are added (in parts and lanes, not in sorted order): a
/// difference in the last bits of an f64, below what the f32 results can show.
pub fn normalize_for_model(img: &[f32]) -> Vec<f32> {
    normalize_in_parts(img, split(img.len()))
}

/// [`normalize_for_model`] with each pass split into `parts` (≥ 1) parts.
fn normalize_in_parts(img: &[f32], parts: usize) -> Vec<f32> {
    let Some(n) = Normalisation::of(img, parts) else {
        return Vec::new();
    };
    let mut out = img.to_vec();
    n.apply_in_parts(&mut out, parts);
    out
}

/// The constants of [`normalize_for_model`] for one image: a voxel `v` becomes
/// [`Normalisation::apply`]`(v)`.
#[derive(Debug, Clone, Copy)]
struct Normalisation {
    /// Clip range (the foreground's 0.05th and 99.95th percentiles).
    lo: f32,
    hi: f32,
    /// The foreground's mean and std.
    mu: f32,
    sd: f32,
    /// The min-max step: the least normalised value and the range.
    nmin: f32,
    range: f32,
    /// No foreground: plain min-max of the input (`lo` = its min, `range` its range).
    plain: bool,
}

impl Normalisation {
    #[inline]
    fn apply(&self, v: f32) -> f32 {
        if self.plain {
            (v - self.lo) / self.range
        } else {
            ((v.clamp(self.lo, self.hi) - self.mu) / self.sd - self.nmin) / self.range
        }
    }

    /// [`Normalisation::apply`] to every voxel of `v` in place, split into `parts` threads.
    fn apply_in_parts(self, v: &mut [f32], parts: usize) {
        let per = v.len().div_ceil(parts.max(1)).max(1);
        std::thread::scope(|scope| {
            for o in v.chunks_mut(per) {
                scope.spawn(move || o.iter_mut().for_each(|x| *x = self.apply(*x)));
            }
        });
    }

    /// The constants, each pass split into `parts`; `None` for an empty image.
    fn of(img: &[f32], parts: usize) -> Option<Self> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        if img.is_empty() {
            return None;
        }
        let parts = parts.clamp(1, img.len());
        // Pass 1: the sum (eight f64 lanes per part: the adds need not wait on each other), min
        // and max.
        let stats = par_map(img, parts, |c| {
            let (mut s, mut l, mut h) = ([0.0f64; 8], f32::INFINITY, f32::NEG_INFINITY);
            let mut it = c.chunks_exact(8);
            for x in it.by_ref() {
                for k in 0..8 {
                    s[k] += f64::from(x[k]);
                    l = if x[k] < l { x[k] } else { l };
                    h = if x[k] > h { x[k] } else { h };
                }
            }
            for &v in it.remainder() {
                s[0] += f64::from(v);
                l = l.min(v);
                h = h.max(v);
            }
            (s.iter().sum::<f64>(), l, h)
        });
        let sum: f64 = stats.iter().map(|p| p.0).sum();
        let vmin = stats.iter().map(|p| p.1).fold(f32::INFINITY, f32::min);
        let vmax = stats.iter().map(|p| p.2).fold(f32::NEG_INFINITY, f32::max);
        let mean = sum / img.len() as f64;
        // Pass 2: the foreground's size and sum.
        let fgs = par_map(img, parts, |c| {
            let (mut n, mut s) = (0usize, [0.0f64; 8]);
            for (i, &v) in c.iter().enumerate() {
                if f64::from(v) > mean {
                    n += 1;
                    s[i % 8] += f64::from(v);
                }
            }
            (n, s.iter().sum::<f64>())
        });
        let m: usize = fgs.iter().map(|p| p.0).sum();
        if m == 0 {
            // min_max of the image itself: (v − min) / max(max − min, 1e-8).
            return Some(Normalisation {
                lo: vmin,
                hi: vmax,
                mu: 0.0,
                sd: 1.0,
                nmin: 0.0,
                range: (vmax - vmin).max(0.0).max(1e-8),
                plain: true,
            });
        }
        let mu = fgs.iter().map(|p| p.1).sum::<f64>() / m as f64;
        // Ranks (0-based, ascending) of the two percentiles' neighbours.
        let rank = |p: f64| {
            let pos = (m - 1) as f64 * p / 100.0;
            (
                pos.floor() as usize,
                pos.ceil() as usize,
                (pos - pos.floor()) as f32,
            )
        };
        let (l0, l1, lf) = rank(0.05);
        let (h0, h1, hf) = rank(99.95);
        // Pass 3: the squared deviations; the l1 + 1 smallest (a max-heap) and the m − h0 largest
        // (a min-heap) of each part, merged after.
        let (nl, nh) = (l1 + 1, m - h0);
        let tails = par_map(img, parts, |c| {
            let mut low: BinaryHeap<u32> = BinaryHeap::new();
            let mut high: BinaryHeap<Reverse<u32>> = BinaryHeap::new();
            let mut sq = [0.0f64; 8];
            for (i, &v) in c.iter().enumerate() {
                if f64::from(v) <= mean {
                    continue;
                }
                sq[i % 8] += (f64::from(v) - mu).powi(2);
                let k = total_key(v);
                keep_low(&mut low, nl, k);
                keep_high(&mut high, nh, k);
            }
            (sq.iter().sum::<f64>(), low, high)
        });
        let mut low: BinaryHeap<u32> = BinaryHeap::new();
        let mut high: BinaryHeap<Reverse<u32>> = BinaryHeap::new();
        let mut sq = 0.0f64;
        for (s2, l, h) in tails {
            sq += s2;
            l.into_iter().for_each(|k| keep_low(&mut low, nl, k));
            h.into_iter()
                .for_each(|Reverse(k)| keep_high(&mut high, nh, k));
        }
        // low's largest is rank l1, the next rank l0; high's smallest is rank h0, the next h1.
        let b = low.pop().map_or(0.0, from_total_key);
        let a = if l0 == l1 {
            b
        } else {
            low.peek().map_or(b, |&k| from_total_key(k))
        };
        let c = high.pop().map_or(0.0, |Reverse(k)| from_total_key(k));
        let d = if h0 == h1 {
            c
        } else {
            high.peek().map_or(c, |&Reverse(k)| from_total_key(k))
        };
        let (lo, hi) = (a + (b - a) * lf, c + (d - c) * hf);
        let sd = (sq / m as f64).sqrt();
        let (mu, sd) = (mu as f32, (sd as f32).max(1e-8));
        let norm = move |v: f32| (v.clamp(lo, hi) - mu) / sd;
        let (nmin, nmax) = (norm(vmin), norm(vmax));
        let range = (nmax - nmin).max(0.0).max(1e-8);
        Some(Normalisation {
            lo,
            hi,
            mu,
            sd,
            nmin,
            range,
            plain: false,
        })
    }
}

/// SegVol's crop of the normalised image: the box of the voxels whose normalised value is
/// above 0 (SEGVOL.md §8), grown to hold `cover`, as `[lo, hi)`, and the normalised voxels
/// inside it. Equal to cropping [`normalize_for_model`]'s output to [`foreground_box`] of it,
/// without holding the whole normalised image (a float copy of the volume: 1 GB for a
/// 1000×512×512 CT).
pub fn normalized_crop(
    img: &[f32],
    dims: [usize; 3],
    cover: &[[usize; 3]],
) -> ([usize; 3], [usize; 3], Vec<f32>) {
    let Some(n) = Normalisation::of(img, split(img.len())) else {
        return ([0; 3], dims, Vec::new());
    };
    let (mut lo, mut hi) = match crate::bbox::box_where(img, dims, |v| n.apply(v) > 0.0) {
        Some((lo, hi)) => (lo, hi.map(|v| v + 1)),
        None => ([0; 3], dims),
    };
    for p in cover.iter().filter(|p| (0..3).all(|a| p[a] < dims[a])) {
        for a in 0..3 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a] + 1);
        }
    }
    let mut out = crop(img, dims, lo, hi);
    let parts = split(out.len());
    n.apply_in_parts(&mut out, parts);
    (lo, hi, out)
}

/// Keeps the `n` smallest keys in a max-heap.
fn keep_low(h: &mut std::collections::BinaryHeap<u32>, n: usize, k: u32) {
    if h.len() < n {
        h.push(k);
    } else if h.peek().is_some_and(|&t| k < t) {
        h.pop();
        h.push(k);
    }
}

/// Keeps the `n` largest keys in a min-heap.
fn keep_high(h: &mut std::collections::BinaryHeap<std::cmp::Reverse<u32>>, n: usize, k: u32) {
    use std::cmp::Reverse;
    if h.len() < n {
        h.push(Reverse(k));
    } else if h.peek().is_some_and(|&Reverse(t)| k > t) {
        h.pop();
        h.push(Reverse(k));
    }
}

/// How many parts to split `n` voxels into: one per core, none under a million voxels each.
fn split(n: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    cores.min(n.div_ceil(1 << 20)).max(1)
}

/// `f` on each of `parts` consecutive parts of `data`, on scoped threads; results in order.
fn par_map<R: Send>(data: &[f32], parts: usize, f: impl Fn(&[f32]) -> R + Sync) -> Vec<R> {
    let per = data.len().div_ceil(parts.max(1)).max(1);
    if parts <= 1 {
        return vec![f(data)];
    }
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = data
            .chunks(per)
            .map(|c| scope.spawn(move || f(c)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// Bounding box `[start, end)` of voxels `> 0`; the whole volume when there are none.
pub fn foreground_box(img: &[f32], dims: [usize; 3]) -> ([usize; 3], [usize; 3]) {
    match crate::bbox::box_where(img, dims, |v| v > 0.0) {
        Some((lo, hi)) => (lo, hi.map(|v| v + 1)),
        None => ([0; 3], dims),
    }
}

fn crop(data: &[f32], dims: [usize; 3], lo: [usize; 3], hi: [usize; 3]) -> Vec<f32> {
    let mut out = Vec::with_capacity((0..3).map(|a| hi[a] - lo[a]).product());
    for z in lo[0]..hi[0] {
        for y in lo[1]..hi[1] {
            let row = (z * dims[1] + y) * dims[2];
            out.extend_from_slice(&data[row + lo[2]..row + hi[2]]);
        }
    }
    out
}

/// A click in the volume's voxel indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoxelClick {
    /// `[z, y, x]`.
    pub zyx: [usize; 3],
    /// Foreground (true) or background.
    pub foreground: bool,
}

/// Why a segmentation request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// The image has no voxels or its length disagrees with its shape.
    #[error("image of shape {dims:?} holds {len} values")]
    BadImage {
        /// The shape.
        dims: [usize; 3],
        /// The data length.
        len: usize,
    },
    /// The box is empty or leaves the volume.
    #[error("box {lo:?}..={hi:?} is empty or outside the volume {dims:?}")]
    BoxOutside {
        /// Low corner.
        lo: [usize; 3],
        /// High corner (inclusive).
        hi: [usize; 3],
        /// The volume.
        dims: [usize; 3],
    },
    /// A click lies outside the volume.
    #[error("click {zyx:?} lies outside the volume {dims:?}")]
    ClickOutside {
        /// The click.
        zyx: [usize; 3],
        /// The volume.
        dims: [usize; 3],
    },
    /// Neither a box nor a click (nor a text prompt).
    #[error("give a box, clicks, or both")]
    NoPrompt,
    /// A text embedding of the wrong length for the model.
    #[error("a text embedding of {len} values, but the model is {expected} wide")]
    TextLength {
        /// Its length.
        len: usize,
        /// The model's width.
        expected: usize,
    },
}

/// Where the model grid sits in the original volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoomOut {
    /// Foreground crop `[start, end)` in the original volume.
    pub crop_lo: [usize; 3],
    /// End of the crop (exclusive).
    pub crop_hi: [usize; 3],
}

/// Maps an index of the crop (size `n_in`) to the model grid (size `n_out`) under the
/// `nearest` resize: the first output index that samples it, else the nearest one.
fn to_model_index(i: usize, n_in: usize, n_out: usize) -> usize {
    let s = n_in as f32 / n_out as f32;
    let src = |o: usize| ((o as f32 * s).floor() as usize).min(n_in - 1);
    (0..n_out)
        .min_by_key(|&o| (src(o).abs_diff(i), o))
        .unwrap_or(0)
}

/// Checks a request before any model work: the box inside the volume and not inverted, every
/// click inside, and at least one prompt: a box, a click, or (`text`) a text prompt.
///
/// # Errors
/// [`SegmentError::BoxOutside`], [`SegmentError::ClickOutside`] or [`SegmentError::NoPrompt`].
pub fn check_prompts(
    dims: [usize; 3],
    boxes: Option<([usize; 3], [usize; 3])>,
    clicks: &[VoxelClick],
    text: bool,
) -> Result<(), SegmentError> {
    if let Some((lo, hi)) = boxes
        && (0..3).any(|a| lo[a] > hi[a] || hi[a] >= dims[a])
    {
        return Err(SegmentError::BoxOutside { lo, hi, dims });
    }
    if let Some(c) = clicks.iter().find(|c| (0..3).any(|a| c.zyx[a] >= dims[a])) {
        return Err(SegmentError::ClickOutside { zyx: c.zyx, dims });
    }
    if boxes.is_none() && clicks.is_empty() && !text {
        return Err(SegmentError::NoPrompt);
    }
    Ok(())
}

/// An interactive session on one volume: preprocessing, the foreground crop and the image
/// embedding are computed once in [`Session::new`]; each [`Session::predict`] runs only the
/// prompt encoder and the mask decoder.
#[derive(Debug)]
pub struct Session<'m, B: Backend> {
    model: &'m SegVol<B>,
    dims: [usize; 3],
    zoom: ZoomOut,
    embedding: Tensor<B, 5>,
    /// The normalised crop at native resolution (the zoom-in reads its windows from it).
    crop_img: Vec<f32>,
    /// A text prompt's embedding, added to every decode (global and zoom-in windows).
    text: Option<Vec<f32>>,
    /// The encoded model-grid image, for a model with `mask_prompt_image`.
    grid_img: Option<Vec<f32>>,
    /// The previous mask cut to the crop (native resolution, crop shape, 0/1), for a model
    /// with the mask prompt.
    previous: Option<Vec<u8>>,
    /// The zoom-in's window encodings, kept between passes (a click re-runs the zoom-in over
    /// the same image: only its decodes change).
    windows: std::sync::Mutex<crate::windows::WindowCache<B>>,
    device: B::Device,
}

impl<'m, B: Backend> Session<'m, B> {
    /// Preprocesses `image` (shape `dims`), crops it to its foreground grown to cover `cover`
    /// (e.g. the first box's corners, so the prompt is never cut off), resizes the crop to the
    /// model grid and encodes it.
    ///
    /// # Errors
    /// [`SegmentError::BadImage`] when `image` and `dims` disagree or are empty.
    pub fn new(
        model: &'m SegVol<B>,
        image: &[f32],
        dims: [usize; 3],
        cover: &[[usize; 3]],
        device: &B::Device,
    ) -> Result<Self, SegmentError> {
        let n: usize = dims.iter().product();
        if n == 0 || image.len() != n {
            return Err(SegmentError::BadImage {
                dims,
                len: image.len(),
            });
        }
        let (lo, hi, crop_img) = normalized_crop(image, dims, cover);
        let cdims = [0, 1, 2].map(|a| hi[a] - lo[a]);
        let grid = model.image_size();
        let x = resize(&crop_img, cdims, grid, ResizeMode::Nearest);
        let grid_img = model.config().mask_prompt_image.then(|| x.clone());
        let t = Tensor::<B, 5>::from_data(
            TensorData::new(x, [1, 1, grid[0], grid[1], grid[2]]),
            device,
        );
        Ok(Session {
            model,
            dims,
            zoom: ZoomOut {
                crop_lo: lo,
                crop_hi: hi,
            },
            embedding: model.embed(t),
            crop_img,
            grid_img,
            text: None,
            previous: None,
            windows: std::sync::Mutex::default(),
            device: device.clone(),
        })
    }

    /// Sets (or clears) the previous mask (shape [`dims`](Self::dims), non-zero = object) that
    /// later predictions are given as a dense prompt. Only a model with the config's
    /// `mask_prompt` reads it (`segvol_core::mask_prompt`); for others this does nothing.
    /// Taken as the `u8` masks every engine keeps, so nothing converts a whole grid first.
    ///
    /// # Errors
    /// [`SegmentError::BadImage`] when its length is not the volume's.
    pub fn set_previous_mask(&mut self, mask: Option<&[u8]>) -> Result<(), SegmentError> {
        let Some(mask) = mask else {
            self.previous = None;
            return Ok(());
        };
        if mask.len() != self.dims.iter().product::<usize>() {
            return Err(SegmentError::BadImage {
                dims: self.dims,
                len: mask.len(),
            });
        }
        if !self.model.config().mask_prompt {
            return Ok(());
        }
        let (lo, hi) = (self.zoom.crop_lo, self.zoom.crop_hi);
        let cdims = [0, 1, 2].map(|a| hi[a] - lo[a]);
        let mut crop = Vec::with_capacity(cdims.iter().product());
        for z in lo[0]..hi[0] {
            for y in lo[1]..hi[1] {
                let row = (z * self.dims[1] + y) * self.dims[2];
                crop.extend(
                    mask[row + lo[2]..row + hi[2]]
                        .iter()
                        .map(|&m| u8::from(m != 0)),
                );
            }
        }
        self.previous = Some(crop);
        Ok(())
    }

    /// The zoom-in's window encodings.
    pub(crate) fn window_cache(&self) -> &std::sync::Mutex<crate::windows::WindowCache<B>> {
        &self.windows
    }

    /// The previous mask on the crop grid (0/1), if set.
    pub(crate) fn previous_crop(&self) -> Option<&[u8]> {
        self.previous.as_deref()
    }

    /// Sets (or clears) the text prompt: SegVol's embedding of a name
    /// ([`SegVol::embed_text`](crate::SegVol::embed_text)). It joins every later prediction, as
    /// the last sparse token and the text-similarity map; with it, a prediction needs no box or
    /// click (SegVol's text-only segmentation).
    ///
    /// # Errors
    /// [`SegmentError::TextLength`] when its length is not the model's width.
    pub fn set_text(&mut self, text: Option<Vec<f32>>) -> Result<(), SegmentError> {
        let expected = self.model.hidden_size();
        if let Some(t) = &text
            && t.len() != expected
        {
            return Err(SegmentError::TextLength {
                len: t.len(),
                expected,
            });
        }
        self.text = text;
        Ok(())
    }

    /// The text prompt's embedding, if one is set.
    pub fn text(&self) -> Option<&[f32]> {
        self.text.as_deref()
    }

    pub(crate) fn model(&self) -> &SegVol<B> {
        self.model
    }

    pub(crate) fn device(&self) -> B::Device {
        self.device.clone()
    }

    pub(crate) fn crop_image(&self) -> &[f32] {
        &self.crop_img
    }

    /// Shape `[z, y, x]` of the image.
    pub fn dims(&self) -> [usize; 3] {
        self.dims
    }

    /// The crop the model sees.
    pub fn zoom(&self) -> ZoomOut {
        self.zoom
    }

    /// Logits on the original grid for a box (inclusive corners) and/or clicks, in the
    /// volume's voxel indices; prompts outside the crop are clamped into it. Voxels outside the
    /// crop get `-1e4` (no object).
    ///
    /// # Errors
    /// [`SegmentError`] for a box or click outside the volume, or no prompt.
    pub fn predict(
        &self,
        boxes: Option<([usize; 3], [usize; 3])>,
        clicks: &[VoxelClick],
    ) -> Result<Vec<f32>, SegmentError> {
        Ok(self.paste(&self.predict_crop(boxes, clicks)?))
    }

    /// The global pass's logits on the crop grid (native resolution, crop shape).
    pub(crate) fn predict_crop(
        &self,
        boxes: Option<([usize; 3], [usize; 3])>,
        clicks: &[VoxelClick],
    ) -> Result<Vec<f32>, SegmentError> {
        let (grid_logits, cdims) = self.predict_grid(boxes, clicks)?;
        Ok(resize(
            &grid_logits,
            self.model.image_size(),
            cdims,
            ResizeMode::Nearest,
        ))
    }

    /// The mask of [`predict`](Self::predict) (`logits > 0` → 1, 0 outside the crop) without
    /// its full-grid float logits: thresholded on the model grid, then resized (`nearest`) and
    /// pasted as bytes. Thresholding commutes with a nearest resize, so the mask is the one the
    /// logits give, voxel for voxel; on a 1000×512×512 CT it skips two grid-sized float
    /// buffers (crop and pasted logits, 1 GB each).
    ///
    /// # Errors
    /// As [`predict`](Self::predict).
    pub fn predict_mask(
        &self,
        boxes: Option<([usize; 3], [usize; 3])>,
        clicks: &[VoxelClick],
    ) -> Result<Vec<u8>, SegmentError> {
        Ok(self.predict_lookup(boxes, clicks)?.mask())
    }

    /// [`predict`](Self::predict)'s logits kept on the model grid, read voxel by voxel
    /// ([`GridLogits::at`]) or as the mask ([`GridLogits::mask`]): what a caller that needs
    /// the logits of a few voxels (a box, a click's neighbourhood) takes instead of the
    /// full-grid float buffer.
    ///
    /// # Errors
    /// As [`predict`](Self::predict).
    pub fn predict_lookup(
        &self,
        boxes: Option<([usize; 3], [usize; 3])>,
        clicks: &[VoxelClick],
    ) -> Result<GridLogits, SegmentError> {
        let (logits, cdims) = self.predict_grid(boxes, clicks)?;
        let grid = self.model.image_size();
        Ok(GridLogits {
            index: nearest_indices(grid, cdims, false),
            logits,
            grid,
            dims: self.dims,
            crop_lo: self.zoom.crop_lo,
            crop_dims: cdims,
        })
    }

    /// The global pass's logits on the model grid, with the crop's shape.
    fn predict_grid(
        &self,
        boxes: Option<([usize; 3], [usize; 3])>,
        clicks: &[VoxelClick],
    ) -> Result<(Vec<f32>, [usize; 3]), SegmentError> {
        check_prompts(self.dims, boxes, clicks, self.text.is_some())?;
        let (lo, hi) = (self.zoom.crop_lo, self.zoom.crop_hi);
        let cdims = [0, 1, 2].map(|a| hi[a] - lo[a]);
        let grid = self.model.image_size();
        let m = |i: usize, a: usize| {
            let c = i.clamp(lo[a], hi[a] - 1) - lo[a];
            to_model_index(c, cdims[a], grid[a]) as f32
        };
        let prompts = Prompts {
            boxes: boxes.map(|(b0, b1)| {
                [
                    m(b0[0], 0),
                    m(b0[1], 1),
                    m(b0[2], 2),
                    m(b1[0], 0),
                    m(b1[1], 1),
                    m(b1[2], 2),
                ]
            }),
            points: clicks
                .iter()
                .map(|c| {
                    (
                        [m(c.zyx[0], 0), m(c.zyx[1], 1), m(c.zyx[2], 2)],
                        i64::from(c.foreground),
                    )
                })
                .collect(),
            text: self.text.clone(),
            mask: self.previous.as_ref().map(|p| {
                trilinear_with(cdims, grid, |z, y, x| {
                    f32::from(p[(z * cdims[1] + y) * cdims[2] + x])
                })
            }),
            image: self.grid_img.clone(),
        };
        let logits = self.model.decode(self.embedding.clone(), &prompts).logits;
        let grid_logits: Vec<f32> = logits
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap_or_default();
        Ok((grid_logits, cdims))
    }

    /// Crop-grid logits pasted into the original volume (`-1e4` outside the crop).
    pub(crate) fn paste(&self, crop_logits: &[f32]) -> Vec<f32> {
        let (lo, hi) = (self.zoom.crop_lo, self.zoom.crop_hi);
        let cdims = [0, 1, 2].map(|a| hi[a] - lo[a]);
        let mut out = vec![-1e4f32; self.dims.iter().product()];
        for z in 0..cdims[0] {
            for y in 0..cdims[1] {
                let src = (z * cdims[1] + y) * cdims[2];
                let dst = ((lo[0] + z) * self.dims[1] + lo[1] + y) * self.dims[2] + lo[2];
                if let (Some(d), Some(s)) = (
                    out.get_mut(dst..dst + cdims[2]),
                    crop_logits.get(src..src + cdims[2]),
                ) {
                    d.copy_from_slice(s);
                }
            }
        }
        out
    }
}

/// The global pass's logits on the model grid with the nearest-neighbour map to the volume:
/// [`Session::predict`]'s logits voxel for voxel (`-1e4` outside the crop) without the
/// full-grid float buffer ([`Session::predict_lookup`]).
#[derive(Debug, Clone)]
pub struct GridLogits {
    logits: Vec<f32>,
    grid: [usize; 3],
    /// Per axis, the model-grid index each crop index reads (`nearest`).
    index: [Vec<usize>; 3],
    dims: [usize; 3],
    crop_lo: [usize; 3],
    crop_dims: [usize; 3],
}

impl GridLogits {
    /// The logit of voxel `p = [z, y, x]` of the volume, as [`Session::predict`] gives it.
    pub fn at(&self, p: [usize; 3]) -> f32 {
        let mut g = [0usize; 3];
        for a in 0..3 {
            match p[a].checked_sub(self.crop_lo[a]) {
                Some(c) if c < self.crop_dims[a] => g[a] = self.index[a][c],
                _ => return -1e4,
            }
        }
        self.logits
            .get((g[0] * self.grid[1] + g[1]) * self.grid[2] + g[2])
            .copied()
            .unwrap_or(-1e4)
    }

    /// The mask (`logit > 0` → 1) on the volume, thresholded on the model grid and pasted as
    /// bytes.
    pub fn mask(&self) -> Vec<u8> {
        let [iz, iy, ix] = &self.index;
        let (lo, cdims, grid) = (self.crop_lo, self.crop_dims, self.grid);
        let [_, h, w] = self.dims;
        let mut out = vec![0u8; self.dims.iter().product()];
        for (z, &sz) in iz.iter().enumerate() {
            for (y, &sy) in iy.iter().enumerate() {
                let src = (sz * grid[1] + sy) * grid[2];
                let dst = ((lo[0] + z) * h + lo[1] + y) * w + lo[2];
                if let (Some(d), Some(s)) = (
                    out.get_mut(dst..dst + cdims[2]),
                    self.logits.get(src..src + grid[2]),
                ) {
                    for (o, &x) in d.iter_mut().zip(ix) {
                        *o = u8::from(s[x] > 0.0);
                    }
                }
            }
        }
        out
    }
}

/// Segments one object in one call: a [`Session`] whose crop covers the prompts, then one
/// [`Session::predict`]. Returns logits on the original grid and the crop.
///
/// # Errors
/// [`SegmentError`] for an inconsistent image, a box or click outside it, or no prompt.
pub fn segment_zoom_out<B: Backend>(
    model: &SegVol<B>,
    image: &[f32],
    dims: [usize; 3],
    boxes: Option<([usize; 3], [usize; 3])>,
    clicks: &[VoxelClick],
    device: &B::Device,
) -> Result<(Vec<f32>, ZoomOut), SegmentError> {
    let n: usize = dims.iter().product();
    if n == 0 || image.len() != n {
        return Err(SegmentError::BadImage {
            dims,
            len: image.len(),
        });
    }
    check_prompts(dims, boxes, clicks, false)?;
    let mut cover: Vec<[usize; 3]> = clicks.iter().map(|c| c.zyx).collect();
    if let Some((b0, b1)) = boxes {
        cover.extend([b0, b1]);
    }
    let session = Session::new(model, image, dims, &cover, device)?;
    let logits = session.predict(boxes, clicks)?;
    Ok((logits, session.zoom()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_max_and_box() {
        assert_eq!(min_max(&[2.0, 4.0, 6.0]), vec![0.0, 0.5, 1.0]);
        // Voxels 3 = (0,1,1) and 7 = (1,1,1) are foreground.
        let img = [0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.7];
        assert_eq!(foreground_box(&img, [2, 2, 2]), ([0, 1, 1], [2, 2, 2]));
        assert_eq!(foreground_box(&[0.0; 8], [2, 2, 2]), ([0; 3], [2, 2, 2]));
    }

    /// Hand-derived: values 0..=9 (mean 4.5) → foreground 5..=9, μ = 7, σ = √2; percentiles
    /// 0.05 / 99.95 of 5 values are 5.002 and 8.998.
    #[test]
    fn foreground_normalisation() {
        let img: Vec<f32> = (0..10).map(|v| v as f32).collect();
        let out = foreground_normalize(&img);
        let s = 2f32.sqrt();
        assert!((out[0] - (5.002 - 7.0) / s).abs() < 1e-4, "{}", out[0]);
        assert!((out[7] - 0.0).abs() < 1e-6);
        assert!((out[9] - (8.998 - 7.0) / s).abs() < 1e-4, "{}", out[9]);
    }

    /// The one-pass normalisation equals the two-step definition, bit for bit: on integer
    /// CT-like values with many ties, on floats, on a constant image (no foreground) and on
    /// sizes where the percentile ranks fall on and between voxels.
    #[test]
    fn normalize_for_model_equals_the_definition() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as f32 / (1u64 << 31) as f32
        };
        let mut cases: Vec<Vec<f32>> = vec![vec![5.0; 17], vec![1.0], vec![0.0, 1.0]];
        for n in [2, 3, 10, 999, 4001, 30_000] {
            cases.push((0..n).map(|_| (next() * 3000.0 - 1000.0).round()).collect());
            cases.push((0..n).map(|_| next().powi(3) * 7.5 - 0.3).collect());
        }
        for (i, img) in cases.iter().enumerate() {
            let want = min_max(&foreground_normalize(img));
            // One part, and split as on machines with 2, 3 and 7 cores.
            for parts in [1, 2, 3, 7] {
                let got = normalize_in_parts(img, parts);
                assert_eq!(got.len(), want.len());
                for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        g.to_bits(),
                        w.to_bits(),
                        "case {i}, {parts} parts, voxel {j}: {g} vs {w}"
                    );
                }
            }
        }
        assert_eq!(
            normalize_for_model(&cases[5]),
            min_max(&foreground_normalize(&cases[5]))
        );
    }

    /// The crop made without the whole normalised image equals the crop of it, at the
    /// foreground box, grown by a point outside it; and the whole image when nothing is
    /// foreground.
    #[test]
    fn normalized_crop_equals_cropping_the_normalised_image() {
        let dims = [6, 7, 9];
        let mut img = vec![-1000.0f32; 6 * 7 * 9];
        for z in 1..4 {
            for y in 2..6 {
                for x in 3..7 {
                    img[(z * 7 + y) * 9 + x] = (40 + z * 7 + y * 3 + x) as f32;
                }
            }
        }
        let norm = normalize_for_model(&img);
        let (flo, fhi) = foreground_box(&norm, dims);
        assert_eq!((flo, fhi), ([1, 2, 3], [4, 6, 7]));
        for cover in [vec![], vec![[5, 0, 8]]] {
            let (lo, hi, c) = normalized_crop(&img, dims, &cover);
            let (mut wlo, mut whi) = (flo, fhi);
            for p in &cover {
                for a in 0..3 {
                    wlo[a] = wlo[a].min(p[a]);
                    whi[a] = whi[a].max(p[a] + 1);
                }
            }
            assert_eq!((lo, hi), (wlo, whi));
            let want = crop(&norm, dims, lo, hi);
            assert_eq!(
                c.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
        let flat = vec![3.0f32; 6 * 7 * 9];
        let (lo, hi, c) = normalized_crop(&flat, dims, &[]);
        assert_eq!((lo, hi, c), ([0; 3], dims, min_max(&flat)));
    }

    #[test]
    fn model_index_mapping() {
        // Upsampling 4 → 8: crop index 2 is first sampled at model index 4.
        assert_eq!(to_model_index(2, 4, 8), 4);
        // Downsampling 8 → 4 (src = 0, 2, 4, 6): index 3 goes to the nearest sample (2 → o=1).
        assert_eq!(to_model_index(3, 8, 4), 1);
    }
}
