//! The box's own intensities: after the model answers a prompt with a box, the voxels inside
//! the box that the model is sure of teach a two-class intensity model of this one image — a
//! histogram of the sure object voxels and one of the sure background voxels — and every voxel
//! in the box has the log-likelihood ratio of its intensity under the two added to its logit
//! before the threshold ([`BoxIntensity`]).
//!
//! Why: on structures it never saw labelled, the shipped model (docs/model-card.md) gets the
//! middle of an object right and its edge wrong, where the box-shaped start it refines shows
//! through: the box step's mask spills over into background of another intensity, or stops
//! short of object of the same one. The image inside the box says where the object's
//! intensity is, once the model has said which voxels are object: the same idea as GrabCut's
//! colour models, fitted from the model's confident voxels instead of the box's border, and
//! without GrabCut's graph cut. It is ours (not in SegVol or the CVPR25 reference), applied by
//! every front end in the same place ([`crate::object_mask`]), so `eval` measures what `view`
//! and `serve` show.
//!
//! Written here rather than taken from a crate: it is a histogram, a Gaussian smoothing of it
//! and a lookup table, over a box of a plain slice.

use segvol_core::pipeline::VoxelClick;

/// The logit the model must pass (`> +C` object, `< −C` background) for a voxel to teach the
/// intensity model when the sure voxels are not chosen by rank ([`FitOptions::by_rank`] off,
/// `--sure-by-rank off`): 2 (probability 0.88). The default until the fourth session of
/// 2026-12-06; chosen then on the validation split with the negative clicks' rule on
/// (docs/model-card.md, "The box's own intensities"): confidences 1, 1.5, 2 and 3 gave
/// DSC_AUC 2.361, 2.351, 2.345 and 2.274.
pub const BOX_INTENSITY_CONFIDENCE: f32 = 2.0;

/// The share of the box's voxels (the fit's sample of them) with the highest logits that
/// teach the object histogram: the top 10 %, ties included, of those the model calls object
/// (logit above 0). Since the fourth session of 2026-12-06 it replaces a fixed confidence
/// (logit above +2, below −2 for the background): on the validation split's rib boxes the
/// model is above +2 on much of the soft tissue around a rib, which then taught "object" to the
/// whole box; its top tenth is the bone. Chosen on the validation split with the box's
/// surround on (docs/model-card.md, "The box's surround, and sure voxels by rank"): shares
/// (object, background) of (0.1, 0.4), (0.1, 0.5), (0.05, 0.4) and (0.2, 0.4) gave DSC_AUC
/// 2.546, 2.536, 2.503 and 2.516 (a sign guard not yet applied).
pub const SURE_OBJECT_SHARE: f64 = 0.1;

/// The share of the box's voxels with the lowest logits that teach the background histogram:
/// the bottom 40 %, ties included, of those the model calls background (logit below 0).
/// Chosen with [`SURE_OBJECT_SHARE`].
pub const SURE_BACKGROUND_SHARE: f64 = 0.4;

/// The box's surround (`--box-surround`): the voxels within this many voxels outside the box
/// (per axis, clipped to the grid) are what the box was drawn to leave out. Their histogram
/// against the box's own gives a second log-likelihood ratio, added to the model's one:
/// intensities that are common in the box and rare around it lean object. GrabCut's colour
/// models, from the box against its border. Chosen on the validation split with the sure
/// voxels by rank (docs/model-card.md, "The box's surround, and sure voxels by rank"): 2
/// voxels gave DSC_AUC 2.546, 3 gave 2.527 and 5 gave 2.531, all at weight 1 (at 3 voxels,
/// weights 0.5 and 1.5 gave 2.512 and 2.531).
pub const SURROUND_VOXELS: usize = 2;

/// How much each click teaches the intensity model (`--click-teach`): the clicked voxel and
/// its 26 neighbours (those inside the box) join the histogram of the click's side with a
/// total weight of 0.3 × that side's sure voxels (at least 10), spread evenly over them.
/// Chosen on the validation split with every other rule on but the box's smoothness
/// (docs/model-card.md, "Clicks that teach, and the box's smoothness"): 0.1, 0.3 and 1 gave
/// DSC_AUC 2.391, 2.430 and 2.415 (2.370 without).
pub const CLICK_TEACH_WEIGHT: f64 = 0.3;

/// How many intensity bins span the box's range (its least to its greatest value).
const BINS: usize = 256;

/// The Gaussian smoothing of the histograms, in bins (σ).
const SMOOTH_BINS: f64 = 2.0;

/// Neither class has a model below this many voxels: the box is left as the model gave it.
const MIN_VOXELS: f64 = 10.0;

/// The most voxels the histograms are learned from: a larger box is sampled every `s`-th
/// voxel along each axis, the smallest `s` that keeps within this (2²¹ ≈ 2.1 M; a liver's box
/// on a CT holds 5–20 M). Only the fit is sampled; every voxel of the box is re-thresholded.
/// On the validation split the sampled and the full fit score the same (DSC_AUC 2.3697).
const MAX_FIT_VOXELS: usize = 1 << 21;

/// A box's two-class intensity model: per intensity bin, the natural-log likelihood ratio of
/// object against background, learned from the voxels the model was sure of.
#[derive(Debug, Clone, PartialEq)]
pub struct BoxIntensity {
    /// The box, inclusive, clipped to the grid.
    lo: [usize; 3],
    hi: [usize; 3],
    dims: [usize; 3],
    /// Intensity of bin 0's lower edge, and bins per intensity unit.
    min: f64,
    scale: f64,
    /// ln p(bin | object) − ln p(bin | background), per bin.
    llr: Vec<f32>,
}

/// What teaches [`BoxIntensity::fit_with`] besides the model's sure voxels.
#[derive(Debug, Clone, Copy)]
pub struct FitOptions<'c> {
    /// Clicks that teach (`--click-teach`): each click's voxel and its 26 neighbours inside
    /// the box join the histogram of its side (object for a positive click, background for a
    /// negative one) with a total weight of [`CLICK_TEACH_WEIGHT`] × that side's sure voxels
    /// (at least 10), before the smoothing. A click outside the box teaches nothing.
    ///
    /// Why: a CVPR25 click sits in the middle of the largest error, and its intensity says
    /// what the user meant everywhere in the box, not only where the click's flood reaches.
    /// A negative click on a rib's box, in the soft tissue the model took for rib, lowers the
    /// soft tissue's ratio in the whole box. Ours, not in SegVol or the CVPR25 reference.
    pub clicks: &'c [VoxelClick],
    /// The box's surround (`--box-surround`, [`SURROUND_VOXELS`]): the log-likelihood ratio
    /// of the box's intensities against those of the voxels just outside it is added to the
    /// sure voxels' one (skipped when fewer than 10 voxels lie around the box, e.g. a box
    /// that covers the grid).
    ///
    /// Why: the user drew the box to hold the object and leave the rest out, and a CVPR25 box
    /// is tight (SEGVOL.md, CHALLENGE.md §2.2), so what lies just outside it is mostly
    /// background. On the validation split's rib boxes the model's own sure voxels cannot say
    /// that the soft tissue is not rib; the surround, full of soft tissue, can. GrabCut's
    /// initial colour models; ours, not in SegVol or the CVPR25 reference.
    pub surround: bool,
    /// Sure voxels by rank (`--sure-by-rank`): the box's top [`SURE_OBJECT_SHARE`] of
    /// logits above 0 teach the object histogram and its bottom [`SURE_BACKGROUND_SHARE`]
    /// below 0 the background's; off, every voxel above +[`BOX_INTENSITY_CONFIDENCE`] and
    /// below −[`BOX_INTENSITY_CONFIDENCE`] (the rule before).
    pub by_rank: bool,
}

impl Default for FitOptions<'_> {
    /// No clicks; the surround and the ranks on (the engines' default).
    fn default() -> Self {
        FitOptions {
            clicks: &[],
            surround: true,
            by_rank: true,
        }
    }
}

impl BoxIntensity {
    /// Fits the model of the box `bbox` (inclusive corners, either order, clipped to `dims`)
    /// from `value(i)` (the image's intensity of voxel `i`, raster index) and `logit(p)` (the
    /// model's, of voxel `p = [z, y, x]`), with the box's surround and no clicks
    /// ([`FitOptions::default`]; [`Self::fit_with`] says how).
    pub fn fit(
        dims: [usize; 3],
        bbox: ([usize; 3], [usize; 3]),
        value: impl Fn(usize) -> f64,
        logit: impl Fn([usize; 3]) -> f32,
    ) -> Option<Self> {
        Self::fit_with(dims, bbox, value, logit, FitOptions::default())
    }

    /// Fits the model of the box: the sure voxels are the box's top [`SURE_OBJECT_SHARE`] of
    /// logits (ties included) that are above 0 and its bottom [`SURE_BACKGROUND_SHARE`] that
    /// are below 0 (with [`FitOptions::by_rank`] off: those above +2 and below −2); their
    /// histograms over 256 bins spanning the box's intensities (the clicks' neighbourhoods
    /// added, [`FitOptions::clicks`]) are smoothed (σ = 2 bins), each bin's probability
    /// `(smoothed count + 0.01) / (voxels + 1)`, and the ratio is `ln p(bin | object) −
    /// ln p(bin | background)`, plus with [`FitOptions::surround`] the same of the box's
    /// voxels against its surround's. Non-finite intensities are skipped.
    /// `None` when the box holds one intensity only, or fewer than 10 sure voxels of either
    /// class (nothing to learn from).
    pub fn fit_with(
        dims: [usize; 3],
        bbox: ([usize; 3], [usize; 3]),
        value: impl Fn(usize) -> f64,
        logit: impl Fn([usize; 3]) -> f32,
        options: FitOptions<'_>,
    ) -> Option<Self> {
        let (lo, hi) = clip_box(dims, bbox)?;
        let mut model = BoxIntensity {
            lo,
            hi,
            dims,
            min: f64::INFINITY,
            scale: 0.0,
            llr: Vec::new(),
        };
        let n: usize = (0..3).map(|a| hi[a] + 1 - lo[a]).product();
        let stride = (1..)
            .find(|s| n / (s * s * s) <= MAX_FIT_VOXELS)
            .unwrap_or(1);
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        let mut logits = Vec::new();
        model.for_each_every(stride, |i, p| {
            let v = value(i);
            if v.is_finite() {
                min = min.min(v);
                max = max.max(v);
                if options.by_rank {
                    logits.push(logit(p));
                }
            }
        });
        // Never NaN: both finite, or ±∞ when the box holds no finite value.
        if max <= min {
            return None;
        }
        model.min = min;
        model.scale = BINS as f64 / (max - min);
        let (top, bottom) = if options.by_rank {
            (
                quantile(&mut logits, 1.0 - SURE_OBJECT_SHARE)?.max(f32::MIN_POSITIVE),
                quantile(&mut logits, SURE_BACKGROUND_SHARE)?.min(-f32::MIN_POSITIVE),
            )
        } else {
            // Strictly beyond ±C, as before the ranks.
            let c = BOX_INTENSITY_CONFIDENCE;
            (c.next_up(), (-c).next_down())
        };
        let (mut object, mut background) = (vec![0.0f64; BINS], vec![0.0f64; BINS]);
        let mut inside = vec![0.0f64; BINS];
        model.for_each_every(stride, |i, p| {
            if let Some(b) = model.bin(value(i)) {
                let l = logit(p);
                inside[b] += 1.0;
                if l >= top {
                    object[b] += 1.0;
                } else if l <= bottom {
                    background[b] += 1.0;
                }
            }
        });
        let sure = [object.iter().sum::<f64>(), background.iter().sum::<f64>()];
        for c in options.clicks {
            let bins: Vec<usize> = model
                .neighbours(c.zyx)
                .filter_map(|i| model.bin(value(i)))
                .collect();
            if bins.is_empty() {
                continue;
            }
            let (hist, n) = if c.foreground {
                (&mut object, sure[0])
            } else {
                (&mut background, sure[1])
            };
            let w = CLICK_TEACH_WEIGHT * n.max(MIN_VOXELS) / bins.len() as f64;
            for b in bins {
                hist[b] += w;
            }
        }
        let (po, pb) = (probabilities(&object)?, probabilities(&background)?);
        model.llr = po
            .iter()
            .zip(&pb)
            .map(|(o, b)| (o / b).ln() as f32)
            .collect();
        if options.surround {
            let mut around = vec![0.0f64; BINS];
            model.for_each_around(SURROUND_VOXELS, |i| {
                if let Some(b) = model.bin(value(i)) {
                    around[b] += 1.0;
                }
            });
            if let (Some(pi), Some(pa)) = (probabilities(&inside), probabilities(&around)) {
                for (l, (i, a)) in model.llr.iter_mut().zip(pi.iter().zip(&pa)) {
                    *l += (i / a).ln() as f32;
                }
            }
        }
        Some(model)
    }

    /// The offset added to the logit of voxel `p = [z, y, x]` whose intensity is `v`: the
    /// log-likelihood ratio of its bin inside the box (intensities beyond the fitted range
    /// take the end bins), 0 outside the box or for a non-finite `v`.
    pub fn offset(&self, p: [usize; 3], v: f64) -> f32 {
        if (0..3).any(|a| p[a] < self.lo[a] || p[a] > self.hi[a]) {
            return 0.0;
        }
        self.ratio(v)
    }

    /// Re-thresholds `mask` inside the box: voxel `p` (raster index `i`) is object when
    /// `logit(p)` plus its offset is above 0. Returns the voxels that changed.
    pub fn apply(
        &self,
        mask: &mut [u8],
        value: impl Fn(usize) -> f64,
        logit: impl Fn([usize; 3]) -> f32,
    ) -> usize {
        let mut changed = 0;
        self.for_each(|i, p| {
            let on = u8::from(logit(p) + self.ratio(value(i)) > 0.0);
            if let Some(m) = mask.get_mut(i)
                && *m != on
            {
                *m = on;
                changed += 1;
            }
        });
        changed
    }

    /// Adds the offsets to full-grid `logits` (the box's voxels only).
    pub fn add_to(&self, logits: &mut [f32], value: impl Fn(usize) -> f64) {
        self.for_each(|i, _| {
            if let Some(l) = logits.get_mut(i) {
                *l += self.ratio(value(i));
            }
        });
    }

    /// The log-likelihood ratio of intensity `v`'s bin, 0 for a non-finite `v`.
    fn ratio(&self, v: f64) -> f32 {
        self.bin(v).map_or(0.0, |b| self.llr[b])
    }

    /// The bin of intensity `v` (clamped to the fitted range), `None` when not finite.
    fn bin(&self, v: f64) -> Option<usize> {
        v.is_finite()
            .then(|| (((v - self.min) * self.scale).max(0.0) as usize).min(BINS - 1))
    }

    /// The raster indices of `p` and its 26 neighbours that lie in the box (none when `p` is
    /// more than one voxel outside it).
    fn neighbours(&self, p: [usize; 3]) -> impl Iterator<Item = usize> + '_ {
        let [_, h, w] = self.dims;
        let range = move |a: usize| {
            p[a].saturating_sub(1).max(self.lo[a])..=p[a].saturating_add(1).min(self.hi[a])
        };
        range(0).flat_map(move |z| {
            range(1).flat_map(move |y| range(2).map(move |x| (z * h + y) * w + x))
        })
    }

    /// Calls `f` with the raster index of every voxel within `k` voxels outside the box
    /// (per axis; the grown box clipped to the grid, less the box).
    fn for_each_around(&self, k: usize, mut f: impl FnMut(usize)) {
        let [_, h, w] = self.dims;
        let lo: [usize; 3] = std::array::from_fn(|a| self.lo[a].saturating_sub(k));
        let hi: [usize; 3] = std::array::from_fn(|a| (self.hi[a] + k).min(self.dims[a] - 1));
        let within = |a: usize, v: usize| (self.lo[a]..=self.hi[a]).contains(&v);
        for z in lo[0]..=hi[0] {
            for y in lo[1]..=hi[1] {
                let row = (z * h + y) * w;
                if within(0, z) && within(1, y) {
                    // A row through the box: its two ends only.
                    (lo[2]..self.lo[2])
                        .chain(self.hi[2] + 1..=hi[2])
                        .for_each(|x| f(row + x));
                } else {
                    (lo[2]..=hi[2]).for_each(|x| f(row + x));
                }
            }
        }
    }

    /// Calls `f` with the raster index and `[z, y, x]` of every voxel in the box.
    fn for_each(&self, f: impl FnMut(usize, [usize; 3])) {
        self.for_each_every(1, f);
    }

    /// [`Self::for_each`] on every `s`-th voxel along each axis, from the box's first corner.
    fn for_each_every(&self, s: usize, mut f: impl FnMut(usize, [usize; 3])) {
        let [_, h, w] = self.dims;
        for z in (self.lo[0]..=self.hi[0]).step_by(s) {
            for y in (self.lo[1]..=self.hi[1]).step_by(s) {
                let row = (z * h + y) * w;
                for x in (self.lo[2]..=self.hi[2]).step_by(s) {
                    f(row + x, [z, y, x]);
                }
            }
        }
    }
}

/// The box `bbox` (inclusive corners, either order) clipped to the grid `dims`, as inclusive
/// `(lo, hi)`; `None` when it misses the grid (or the grid is empty). The box rules'
/// ([`BoxIntensity`], [`crate::smooth_box`]) one reading of a box.
pub(crate) fn clip_box(
    dims: [usize; 3],
    bbox: ([usize; 3], [usize; 3]),
) -> Option<([usize; 3], [usize; 3])> {
    if dims.contains(&0) {
        return None;
    }
    let lo: [usize; 3] = std::array::from_fn(|a| bbox.0[a].min(bbox.1[a]));
    let hi: [usize; 3] = std::array::from_fn(|a| bbox.0[a].max(bbox.1[a]).min(dims[a] - 1));
    (0..3).all(|a| lo[a] <= hi[a]).then_some((lo, hi))
}

/// The value at rank `⌊q·n⌋` (clamped to the last) of `values` in ascending order (NaN
/// last, by `total_cmp`); reorders `values`. `None` when empty.
fn quantile(values: &mut [f32], q: f64) -> Option<f32> {
    let last = values.len().checked_sub(1)?;
    let k = ((q * values.len() as f64) as usize).min(last);
    Some(*values.select_nth_unstable_by(k, f32::total_cmp).1)
}

/// A histogram smoothed by a Gaussian of σ = [`SMOOTH_BINS`] (normalised over the bins it
/// covers, so the ends are not thinned), as probabilities `(s + 0.01) / (n + 1)`; `None` when
/// it holds fewer than [`MIN_VOXELS`].
fn probabilities(hist: &[f64]) -> Option<Vec<f64>> {
    let n: f64 = hist.iter().sum();
    if n < MIN_VOXELS {
        return None;
    }
    let r = (3.0 * SMOOTH_BINS).ceil() as isize;
    let kernel: Vec<f64> = (-r..=r)
        .map(|d| (-((d * d) as f64) / (2.0 * SMOOTH_BINS * SMOOTH_BINS)).exp())
        .collect();
    Some(
        (0..hist.len() as isize)
            .map(|b| {
                let (mut s, mut wsum) = (0.0, 0.0);
                for (k, d) in kernel.iter().zip(-r..=r) {
                    if let Some(&h) = usize::try_from(b + d).ok().and_then(|u| hist.get(u)) {
                        s += k * h;
                        wsum += k;
                    }
                }
                (s / wsum + 0.01) / (n + 1.0)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Raster index ↔ `[z, y, x]` on the tests' 4×4×4 grid.
    fn at(p: [usize; 3]) -> usize {
        (p[0] * 4 + p[1]) * 4 + p[2]
    }
    fn zyx(i: usize) -> [usize; 3] {
        [i / 16, (i / 4) % 4, i % 4]
    }

    /// A 4×4×4 grid, box = the whole grid: object voxels (intensity 100, logit +5) in the
    /// upper half of z, background (intensity 0, logit −5) in the lower half, with one unsure
    /// voxel on each side that the other side's intensity claims.
    fn two_tissues() -> ([usize; 3], Vec<f64>, Vec<f32>) {
        let dims = [4, 4, 4];
        let value: Vec<f64> = (0..64).map(|i| if i >= 32 { 100.0 } else { 0.0 }).collect();
        let mut logit: Vec<f32> = (0..64).map(|i| if i >= 32 { 5.0 } else { -5.0 }).collect();
        logit[40] = -1.0; // object's intensity, the model leans background
        logit[8] = 1.0; // background's intensity, the model leans object
        (dims, value, logit)
    }

    /// The offset by hand: all 31 sure object voxels sit in the top bin (100 is the box's
    /// maximum), all 31 sure background voxels in bin 0. The top bin's smoothed object count
    /// is 31 / W with W = Σ_{d=0..6} exp(−d²/8) (the kernel's half that lies inside the
    /// bins), its background count 0 (bin 0 is 255 bins away); so the offset is
    /// ln(((31/W + 0.01)/32) / (0.01/32)), and bin 0's its negative.
    #[test]
    fn the_offset_is_the_smoothed_log_likelihood_ratio() {
        let (dims, value, logit) = two_tissues();
        let m = BoxIntensity::fit(dims, ([0, 0, 0], [3, 3, 3]), |i| value[i], |p| logit[at(p)])
            .expect("both classes have sure voxels");
        let w: f64 = (0..=6).map(|d| (-f64::from(d * d) / 8.0).exp()).sum();
        let top = ((31.0 / w + 0.01) / 32.0 / (0.01 / 32.0)).ln() as f32;
        assert!(
            (m.offset(zyx(40), 100.0) - top).abs() < 1e-4,
            "{}",
            m.offset(zyx(40), 100.0)
        );
        assert!(
            (m.offset(zyx(8), 0.0) + top).abs() < 1e-4,
            "{}",
            m.offset(zyx(8), 0.0)
        );
        // Beyond the fitted range: the end bins.
        assert_eq!(m.offset(zyx(40), 1e6), m.offset(zyx(40), 100.0));
        assert_eq!(m.offset(zyx(40), f64::NAN), 0.0);
    }

    /// Re-thresholding: each unsure voxel takes the side of its intensity; the sure ones keep
    /// theirs. `add_to` moves the logits by the same offsets.
    #[test]
    fn unsure_voxels_follow_their_intensity() {
        let (dims, value, logit) = two_tissues();
        let m = BoxIntensity::fit(dims, ([3, 3, 3], [0, 0, 0]), |i| value[i], |p| logit[at(p)])
            .expect("fitted (corners in either order)");
        let mut mask: Vec<u8> = logit.iter().map(|&l| u8::from(l > 0.0)).collect();
        assert_eq!(m.apply(&mut mask, |i| value[i], |p| logit[at(p)]), 2);
        let want: Vec<u8> = (0..64).map(|i| u8::from(i >= 32)).collect();
        assert_eq!(mask, want);
        let mut l = logit.clone();
        m.add_to(&mut l, |i| value[i]);
        assert_eq!(
            l.iter().map(|&v| u8::from(v > 0.0)).collect::<Vec<_>>(),
            want
        );
    }

    /// Only the box moves: a box over z = 2..=3 learns nothing of the background (no sure
    /// background voxel in it) and is not fitted; a box over the middle two slices is, and a
    /// voxel outside it gets no offset.
    #[test]
    fn the_box_bounds_what_is_learned_and_moved() {
        let (dims, value, logit) = two_tissues();
        let fit = |lo, hi| BoxIntensity::fit(dims, (lo, hi), |i| value[i], |p| logit[at(p)]);
        assert!(fit([2, 0, 0], [3, 3, 3]).is_none(), "one class only");
        let m = fit([1, 0, 0], [2, 3, 3]).expect("16 voxels of each");
        assert_eq!(m.offset(zyx(0), 0.0), 0.0, "z = 0 is outside the box");
        assert!(m.offset(zyx(20), 0.0) < 0.0);
        let mut mask: Vec<u8> = logit.iter().map(|&l| u8::from(l > 0.0)).collect();
        // The unsure background-intensity voxel (index 8, z = 0) is outside: it stays on.
        assert_eq!(m.apply(&mut mask, |i| value[i], |p| logit[at(p)]), 1);
        assert_eq!((mask[8], mask[40]), (1, 1));
    }

    /// Clicks that teach, by hand. A 4×4×4 grid: z ≥ 2 is sure object (intensity 100, logit
    /// +5, 32 voxels), the corner block z, y, x < 2 is unsure (intensity 50, logit +1, 8
    /// voxels), the rest sure background (intensity 0, logit −5, 24 voxels). Bin 128 (= 50)
    /// is 128 bins from both classes, so untaught its ratio is ln((0.01/33)/(0.01/25)) and
    /// the corner stays object. A negative click at [0, 0, 0] puts its 8 in-box neighbours
    /// (the corner block) into the background histogram with 0.3 × 24 = 7.2 in all, so bin
    /// 128's background probability is (7.2/W + 0.01)/32.2, W the whole kernel's sum: the
    /// corner turns background. Only a click's neighbours inside the box teach: one more than
    /// a voxel outside it teaches nothing.
    #[test]
    fn a_click_teaches_its_neighbourhood_to_its_side() {
        let dims = [4, 4, 4];
        let corner = |p: [usize; 3]| p.iter().all(|&v| v < 2);
        let value = |i: usize| match zyx(i) {
            p if p[0] >= 2 => 100.0,
            p if corner(p) => 50.0,
            _ => 0.0,
        };
        let logit = |p: [usize; 3]| match p {
            p if p[0] >= 2 => 5.0f32,
            p if corner(p) => 1.0,
            _ => -5.0,
        };
        let whole = ([0, 0, 0], [3, 3, 3]);
        let plain = BoxIntensity::fit(dims, whole, value, logit).expect("fitted");
        let untaught = (25.0f64 / 33.0).ln() as f32;
        assert!((plain.offset([0, 0, 0], 50.0) - untaught).abs() < 1e-5);
        let negative = [VoxelClick {
            zyx: [0, 0, 0],
            foreground: false,
        }];
        let teach = |clicks| FitOptions {
            clicks,
            ..FitOptions::default()
        };
        let taught =
            BoxIntensity::fit_with(dims, whole, value, logit, teach(&negative)).expect("fitted");
        let w: f64 = (-6..=6i32).map(|d| (-f64::from(d * d) / 8.0).exp()).sum();
        let want = ((0.01 / 33.0) / ((7.2 / w + 0.01) / 32.2)).ln() as f32;
        let got = taught.offset([0, 0, 0], 50.0);
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
        let mut mask: Vec<u8> = (0..64).map(|i| u8::from(logit(zyx(i)) > 0.0)).collect();
        assert_eq!(plain.apply(&mut mask.clone(), value, logit), 0);
        assert_eq!(taught.apply(&mut mask, value, logit), 8, "the corner block");
        // The box x = 2..=3 (16 voxels of each class): the click at x = 0 is two voxels out,
        // the one at x = 1 has neighbours in it.
        let half = ([0, 0, 2], [3, 3, 3]);
        let at_x = |x| {
            [VoxelClick {
                zyx: [0, 0, x],
                foreground: true,
            }]
        };
        let plain = BoxIntensity::fit(dims, half, value, logit).expect("fitted");
        let (two_out, one_out) = (at_x(0), at_x(1));
        assert_eq!(
            BoxIntensity::fit_with(dims, half, value, logit, teach(&two_out)),
            Some(plain.clone())
        );
        assert_ne!(
            BoxIntensity::fit_with(dims, half, value, logit, teach(&one_out)),
            Some(plain)
        );
    }

    /// Sure voxels by rank, by hand. A 1×10×10 box (the whole grid, so no surround): 10
    /// "bone" voxels (intensity 200, logit +6), 40 "soft tissue" (100, +3) and 50 background
    /// (0, −3). The top tenth of the logits is the bone alone, the bottom 40 % background:
    /// soft tissue lies in neither histogram, so its bin (128) holds only the 0.01 floor of
    /// each, and its ratio is ln((0.01/11)/(0.01/51)) = ln(51/11). With every voxel above +2
    /// sure (the rule before) the soft tissue would teach "object" (a ratio near +7).
    #[test]
    fn the_top_tenth_of_the_logits_teaches_object() {
        let dims = [1, 10, 10];
        let kind = |i: usize| match i {
            0..10 => (200.0, 6.0f32),
            10..50 => (100.0, 3.0),
            _ => (0.0, -3.0),
        };
        let value = |i: usize| kind(i).0;
        let logit = |p: [usize; 3]| kind(p[1] * 10 + p[2]).1;
        let whole = ([0, 0, 0], [0, 9, 9]);
        let m = BoxIntensity::fit(dims, whole, value, logit).expect("fitted");
        let want = (51.0f64 / 11.0).ln() as f32;
        let got = m.offset([0, 3, 0], 100.0);
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        assert!(m.offset([0, 0, 0], 200.0) > 5.0);
        assert!(m.offset([0, 9, 9], 0.0) < -5.0);
    }

    /// The box's surround, by hand. A 1×16×16 grid, the box y, x = 3..=12 (100 voxels: 20 of
    /// intensity 200 with logit +5, 30 of 100 with +0.2, 50 of 0 with −5); the surround is the
    /// 96 voxels of y, x = 1..=14 outside the box, all 100; the grid's outer ring (60 voxels,
    /// intensity 0) is 3 voxels out and not part of it. Bin 128 (= 100) is more than 6 bins
    /// from the others, so its smoothed counts are 30/W in the box and 96/W around it (W the
    /// whole kernel's sum): the surround adds ln(((30/W + 0.01)/101) / ((96/W + 0.01)/97)) to
    /// the sure voxels' ln(51/21).
    #[test]
    fn the_surround_is_what_the_box_leaves_out() {
        let dims = [1, 16, 16];
        let inside = |y: usize, x: usize| (3..=12).contains(&y) && (3..=12).contains(&x);
        let kind = |y: usize, x: usize| {
            if inside(y, x) {
                match (y - 3) * 10 + (x - 3) {
                    0..20 => (200.0, 5.0f32),
                    20..50 => (100.0, 0.2),
                    _ => (0.0, -5.0),
                }
            } else if (1..=14).contains(&y) && (1..=14).contains(&x) {
                (100.0, -5.0)
            } else {
                (0.0, -5.0)
            }
        };
        let value = |i: usize| kind(i / 16, i % 16).0;
        let logit = |p: [usize; 3]| kind(p[1], p[2]).1;
        let bbox = ([0, 3, 3], [0, 12, 12]);
        let fit = |surround| {
            let options = FitOptions {
                surround,
                ..FitOptions::default()
            };
            BoxIntensity::fit_with(dims, bbox, value, logit, options).expect("fitted")
        };
        let sure = (51.0f64 / 21.0).ln();
        let w: f64 = (-6..=6i32).map(|d| (-f64::from(d * d) / 8.0).exp()).sum();
        let around = (((30.0 / w + 0.01) / 101.0) / ((96.0 / w + 0.01) / 97.0)).ln();
        let (without, with) = (fit(false), fit(true));
        assert!((f64::from(without.offset([0, 5, 5], 100.0)) - sure).abs() < 1e-5);
        let got = f64::from(with.offset([0, 5, 5], 100.0));
        assert!(
            (got - (sure + around)).abs() < 1e-5,
            "{got} vs {}",
            sure + around
        );
        assert_eq!(
            fit(true),
            BoxIntensity::fit(dims, bbox, value, logit).unwrap()
        );
        // The sure voxels' ratio alone keeps the middle intensity (logit +0.2) object; with its
        // surround, the box learns that 100 is what lies around it.
        assert!(0.2 + without.offset([0, 5, 5], 100.0) > 0.0);
        assert!(0.2 + with.offset([0, 5, 5], 100.0) < 0.0);
    }

    /// Fewer than 10 sure voxels of a class, or one intensity in the whole box: no model.
    #[test]
    fn too_little_to_learn_from_gives_none() {
        let (dims, value, mut logit) = two_tissues();
        let whole = ([0, 0, 0], [3, 3, 3]);
        for l in logit.iter_mut().skip(32).take(23) {
            *l = 0.5; // 9 sure object voxels left (index 40 was not sure)
        }
        assert!(BoxIntensity::fit(dims, whole, |i| value[i], |p| logit[at(p)]).is_none());
        let (_, _, logit) = two_tissues();
        assert!(BoxIntensity::fit(dims, whole, |_| 7.0, |p| logit[at(p)]).is_none());
    }

    /// Over 2²¹ voxels the fit samples every second voxel per axis from the first corner: a
    /// grid whose sure object voxels are exactly those with even z, y and x (the rest sure
    /// background) fits at 128³ = 2²¹ voxels (every voxel read) and not at 129×128×128 (only
    /// object read: no background to learn from).
    #[test]
    fn a_large_box_is_learned_from_every_second_voxel() {
        for (d, fitted) in [(128, true), (129, false)] {
            let dims = [d, 128, 128];
            let even = |p: [usize; 3]| p.iter().all(|c| c % 2 == 0);
            let idx = |i: usize| [i / (128 * 128), (i / 128) % 128, i % 128];
            let value = |i: usize| if even(idx(i)) { 100.0 } else { 0.0 };
            let logit = |p: [usize; 3]| if even(p) { 5.0 } else { -5.0 };
            let m = BoxIntensity::fit(dims, ([0, 0, 0], [d - 1, 127, 127]), value, logit);
            assert_eq!(m.is_some(), fitted, "{d}×128×128");
        }
    }
}
