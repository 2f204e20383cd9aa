#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

use std::collections::BinaryHeap;
use std::fmt;

/// How the input map is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MapKind {
    /// Probabilities in `[0, 1]`.
    #[default]
    Probabilities,
    /// Logits; `p = 1 / (1 + exp(-l))` in `f32`, then the same rules.
    Logits,
}

/// Sampler settings (GRU_CORRECTION.md D2–D4). Defaults: K = 200, τ = 0.1, r = 8 voxels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerConfig {
    /// Rows per set (K > 0).
    pub k: usize,
    /// Uncertainty band: `τ < p < 1 − τ`, with `0 < τ < 0.5`.
    pub tau: f32,
    /// Error-set radius around each click: voxels, or mm when `spacing` is set (> 0).
    pub radius: f64,
    /// Voxel spacing `[z, y, x]` in mm for an anisotropic radius; `None` = isotropic voxels.
    pub spacing: Option<[f64; 3]>,
    /// Whether the map holds probabilities or logits.
    pub map: MapKind,
    /// Threads for the uncertainty scan: 0 = all cores, 1 = the calling thread only. Maps
    /// under 2¹⁸ voxels always use one. The result never depends on it.
    pub threads: usize,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            k: 200,
            tau: 0.1,
            radius: 8.0,
            spacing: None,
            map: MapKind::Probabilities,
            threads: 0,
        }
    }
}

/// A user click: voxel `[z, y, x]` and whether it marks foreground.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Click {
    /// Voxel index `[z, y, x]`.
    pub zyx: [usize; 3],
    /// `true` = foreground ("add this"), `false` = background ("remove this").
    pub foreground: bool,
}

impl Click {
    /// A foreground click.
    pub fn fg(zyx: [usize; 3]) -> Click {
        Click {
            zyx,
            foreground: true,
        }
    }
    /// A background click.
    pub fn bg(zyx: [usize; 3]) -> Click {
        Click {
            zyx,
            foreground: false,
        }
    }
}

/// Why sampling refused its input.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SamplerError {
    /// A configuration value is out of range.
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// The volume has no voxels.
    EmptyVolume,
    /// `map.len()` is not `dims[0]·dims[1]·dims[2]`.
    ShapeMismatch {
        /// The shape given.
        dims: [usize; 3],
        /// The map length.
        len: usize,
    },
    /// A click lies outside the volume.
    ClickOutside {
        /// Position in the click list.
        index: usize,
        /// The click.
        zyx: [usize; 3],
        /// The volume shape.
        dims: [usize; 3],
    },
    /// The map holds a NaN.
    NotANumber {
        /// Raster index of the first NaN.
        index: usize,
    },
    /// A probability outside `[0, 1]` (logits passed as probabilities?).
    OutOfRange {
        /// Raster index.
        index: usize,
        /// The value.
        value: f32,
    },
}

// `thiserror` is the project's usual choice; this crate stays std-only so any tool can embed
// it, so `Display` and `Error` are written by hand.
impl fmt::Display for SamplerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SamplerError::InvalidConfig { field, reason } => {
                write!(f, "invalid sampler setting `{field}`: {reason}")
            }
            SamplerError::EmptyVolume => write!(f, "the volume has no voxels"),
            SamplerError::ShapeMismatch { dims, len } => write!(
                f,
                "map has {len} values but shape {dims:?} needs {}",
                dims.iter().product::<usize>()
            ),
            SamplerError::ClickOutside { index, zyx, dims } => {
                write!(
                    f,
                    "click {index} at {zyx:?} lies outside the volume {dims:?}"
                )
            }
            SamplerError::NotANumber { index } => {
                write!(f, "the map holds NaN at raster index {index}")
            }
            SamplerError::OutOfRange { index, value } => write!(
                f,
                "probability {value} at raster index {index} is outside [0, 1] (pass logits with MapKind::Logits)"
            ),
        }
    }
}

impl std::error::Error for SamplerError {}

impl SamplerConfig {
    /// Checks `k > 0`, `0 < τ < 0.5`, `r > 0` (finite) and a positive finite spacing.
    ///
    /// # Errors
    /// [`SamplerError::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<(), SamplerError> {
        let bad = |field, reason| Err(SamplerError::InvalidConfig { field, reason });
        if self.k == 0 {
            return bad("k", "must be at least 1");
        }
        if !(self.tau > 0.0 && self.tau < 0.5) {
            return bad("tau", "must lie strictly between 0 and 0.5");
        }
        if !(self.radius > 0.0 && self.radius.is_finite()) {
            return bad("radius", "must be a positive finite number");
        }
        if let Some(s) = self.spacing
            && s.iter().any(|v| !(*v > 0.0 && v.is_finite()))
        {
            return bad("spacing", "must be three positive finite numbers");
        }
        Ok(())
    }
}

/// One ranked set: exactly K rows, valid rows first in rank order, then padding.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledSet {
    /// Voxel `[z, y, x]` per row (`[0, 0, 0]` for padding).
    pub coords: Vec<[usize; 3]>,
    /// Row value: `|p − 0.5|` (uncertainty) or the click label 1/0 (error); 0 for padding.
    pub values: Vec<f32>,
    /// The ranking key: `|p − 0.5|` or the distance to the nearest qualifying click; 0 for
    /// padding.
    pub keys: Vec<f64>,
    /// Number of real rows (the rest is padding).
    pub n_valid: usize,
    /// How many voxels qualified before truncation to K.
    pub n_candidates: usize,
}

impl SampledSet {
    fn from_rows(k: usize, rows: &[Row], dims: [usize; 3], n_candidates: usize) -> Self {
        let mut s = SampledSet {
            coords: vec![[0; 3]; k],
            values: vec![0.0; k],
            keys: vec![0.0; k],
            n_valid: rows.len(),
            n_candidates,
        };
        for (i, &(key, idx, value)) in rows.iter().enumerate() {
            s.coords[i] = unravel(idx, dims);
            s.values[i] = value;
            s.keys[i] = key;
        }
        s
    }

    /// Whether row `i` is real (not padding).
    pub fn is_valid(&self, i: usize) -> bool {
        i < self.n_valid
    }
}

/// The sampler's output for one round (GRU_CORRECTION.md D2–D5).
#[derive(Debug, Clone, PartialEq)]
pub struct InteractionState {
    /// Volume shape `[z, y, x]`.
    pub dims: [usize; 3],
    /// Rows per set.
    pub k: usize,
    /// Uncertainty set `U`: `τ < p < 1 − τ`, ranked by `|p − 0.5|` then raster index.
    pub uncertainty: SampledSet,
    /// Error set `E`: voxels within r of a click whose prediction disagrees with it, ranked by
    /// distance to the nearest such click then raster index.
    pub error: SampledSet,
    /// The first click of the sequence (feature context), if any.
    pub first_click: Option<[usize; 3]>,
}

/// Columns of a feature row.
pub const FEATURES: usize = 8;

impl InteractionState {
    /// Normalised coordinate (D4): `index / (dim − 1)`, 0 when `dim == 1`.
    pub fn normalize(&self, zyx: [usize; 3]) -> [f32; 3] {
        let mut out = [0.0f32; 3];
        for ax in 0..3 {
            if self.dims[ax] > 1 {
                out[ax] = (zyx[ax] as f64 / (self.dims[ax] - 1) as f64) as f32;
            }
        }
        out
    }

    /// All 2K raw voxel coordinates: uncertainty rows, then error rows (`[0,0,0]` padding).
    pub fn raw_coords(&self) -> Vec<[usize; 3]> {
        let mut v = self.uncertainty.coords.clone();
        v.extend_from_slice(&self.error.coords);
        v
    }

    /// Whether each of the 2K rows is real.
    pub fn valid(&self) -> Vec<bool> {
        (0..self.k)
            .map(|i| self.uncertainty.is_valid(i))
            .chain((0..self.k).map(|i| self.error.is_valid(i)))
            .collect()
    }

    /// The 2K feature rows `[z, y, x, value, valid, cz, cy, cx]` (D5; normalised coordinates;
    /// padding rows all zero).
    pub fn features(&self) -> Vec<[f32; FEATURES]> {
        let first = self.first_click.map_or([0.0; 3], |c| self.normalize(c));
        let mut rows = Vec::with_capacity(2 * self.k);
        for set in [&self.uncertainty, &self.error] {
            for i in 0..self.k {
                if set.is_valid(i) {
                    let [z, y, x] = self.normalize(set.coords[i]);
                    rows.push([z, y, x, set.values[i], 1.0, first[0], first[1], first[2]]);
                } else {
                    rows.push([0.0; FEATURES]);
                }
            }
        }
        rows
    }

    /// The GRU input of one round, `2 × (K·8)` row-major: token 0 is the uncertainty matrix,
    /// token 1 the error matrix, each flattened row by row.
    pub fn gru_input(&self) -> Vec<f32> {
        self.features().into_iter().flatten().collect()
    }

    /// The normalised coordinates of all 2K rows as `2K × 3` (zeros for padding): the heads'
    /// coordinate input.
    pub fn coords_normalized(&self) -> Vec<f32> {
        let valid = self.valid();
        self.raw_coords()
            .into_iter()
            .zip(valid)
            .flat_map(|(c, ok)| if ok { self.normalize(c) } else { [0.0; 3] })
            .collect()
    }

    /// A one-line summary, e.g. for logs.
    pub fn summary(&self) -> String {
        format!(
            "K={} uncertainty {}/{} real ({} candidates), error {}/{} real ({} candidates)",
            self.k,
            self.uncertainty.n_valid,
            self.k,
            self.uncertainty.n_candidates,
            self.error.n_valid,
            self.k,
            self.error.n_candidates
        )
    }
}

/// Concatenates several states' [`InteractionState::gru_input`] into the `B × 2 × (K·8)`
/// layout. All states must share K.
pub fn batch_gru_input(states: &[InteractionState]) -> Vec<f32> {
    states
        .iter()
        .flat_map(InteractionState::gru_input)
        .collect()
}

/// Concatenates several states' [`InteractionState::coords_normalized`] into `B × 2K × 3`.
pub fn batch_coords(states: &[InteractionState]) -> Vec<f32> {
    states
        .iter()
        .flat_map(InteractionState::coords_normalized)
        .collect()
}

#[inline]
fn unravel(idx: usize, dims: [usize; 3]) -> [usize; 3] {
    let x = idx % dims[2];
    let r = idx / dims[2];
    [r / dims[1], r % dims[1], x]
}

#[inline]
fn sigmoid(l: f32) -> f32 {
    1.0 / (1.0 + (-l).exp())
}

/// A ranked row: (key, raster index, row value).
type Row = (f64, usize, f32);
/// Ranked rows and the number of voxels that qualified.
type Rows = (Vec<Row>, usize);

/// Heap entry ordered by (key, raster index): the max-heap's top is the worst kept row.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Ranked {
    key_bits: u32, // |p − 0.5| ≥ 0, whose f32 bit pattern orders like the value
    idx: usize,
}

/// The K best (key, raster index) pairs seen so far, in a bounded max-heap.
struct TopK {
    heap: BinaryHeap<Ranked>,
    k: usize,
    /// Once full, a voxel must have a key strictly below this to enter (equal keys never
    /// displace: the kept voxel has the smaller raster index).
    bound: u32,
}

impl TopK {
    fn new(k: usize) -> Self {
        TopK {
            heap: BinaryHeap::with_capacity(k + 1),
            k,
            bound: u32::MAX,
        }
    }

    #[inline]
    fn offer(&mut self, key_bits: u32, idx: usize) {
        if self.heap.len() < self.k {
            self.heap.push(Ranked { key_bits, idx });
            if self.heap.len() == self.k {
                self.bound = self.heap.peek().map_or(u32::MAX, |r| r.key_bits);
            }
        } else if key_bits < self.bound {
            self.heap.pop();
            self.heap.push(Ranked { key_bits, idx });
            self.bound = self.heap.peek().map_or(u32::MAX, |r| r.key_bits);
        }
    }

    fn into_rows(self) -> Vec<Row> {
        let mut rows: Vec<Ranked> = self.heap.into_vec();
        rows.sort_unstable();
        rows.into_iter()
            .map(|r| {
                let key = f32::from_bits(r.key_bits);
                (f64::from(key), r.idx, key)
            })
            .collect()
    }
}

/// Chunk width of the branch-free prefilter.
const LANES: usize = 256;
/// `1.0f32.to_bits()`: a non-negative float is at most 1 exactly when its bits are at most
/// this (and `-0.0`, bits `0x8000_0000`, is mapped to `+0.0` first).
const ONE_BITS: u32 = 0x3f80_0000;

/// Summary of one chunk of probabilities, computed with reductions only (no branches, no
/// variable shifts) so the compiler vectorises it: the largest bit pattern (anything above
/// [`ONE_BITS`] is NaN, negative or above 1), the smallest key `|p − 0.5|` as bits, and how many
/// voxels lie in the band. The rare chunk that can change the top K is then walked voxel by
/// voxel.
#[inline(always)]
fn chunk_summary(chunk: &[f32], lo: f32, hi: f32) -> (u32, u32, usize) {
    let (mut max_bits, mut min_key, mut in_band) = (0u32, u32::MAX, 0u32);
    for &v in chunk {
        let b = v.to_bits();
        let b = if b == 0x8000_0000 { 0 } else { b };
        max_bits = max_bits.max(b);
        min_key = min_key.min((v - 0.5).abs().to_bits());
        in_band += u32::from(v > lo && v < hi);
    }
    (max_bits, min_key, in_band as usize)
}

/// The uncertainty band: `lo < p < hi` in probability, and in logits `|l| < logit` (with a
/// margin: the probability test stays the judge).
#[derive(Clone, Copy)]
struct Band {
    lo: f32,
    hi: f32,
    logit: f32,
}

/// One thread's share of the probability scan: `map` starts at raster index `base`.
fn scan_probabilities(
    map: &[f32],
    base: usize,
    band: Band,
    k: usize,
) -> Result<Rows, SamplerError> {
    let Band { lo, hi, .. } = band;
    let mut top = TopK::new(k);
    let mut n_candidates = 0usize;
    for (ci, chunk) in map.chunks(LANES).enumerate() {
        let start = base + ci * LANES;
        let (max_bits, min_key, in_band) = chunk_summary(chunk, lo, hi);
        if max_bits > ONE_BITS {
            let j = chunk
                .iter()
                .position(|v| !(*v >= 0.0 && *v <= 1.0))
                .unwrap_or(0);
            let (index, value) = (start + j, chunk[j]);
            return Err(if value.is_nan() {
                SamplerError::NotANumber { index }
            } else {
                SamplerError::OutOfRange { index, value }
            });
        }
        n_candidates += in_band;
        if in_band == 0 || min_key >= top.bound {
            continue; // nothing here can enter the top K
        }
        for (j, &v) in chunk.iter().enumerate() {
            let key = (v - 0.5).abs().to_bits();
            if key < top.bound && v > lo && v < hi {
                top.offer(key, start + j);
            }
        }
    }
    Ok((top.into_rows(), n_candidates))
}

/// Maps smaller than this are scanned on the calling thread.
const PARALLEL_MIN: usize = 1 << 18;

/// Top-K uncertain voxels in one pass with a bounded max-heap: O(N + M log K), no sort of
/// the whole volume. Probabilities go through a vectorised prefilter, split over threads; each
/// thread keeps its own top K and the union is re-ranked, which is exact because the ranking
/// (key, raster index) is a total order.
fn uncertainty_rows(map: &[f32], cfg: &SamplerConfig) -> Result<Rows, SamplerError> {
    let band = Band {
        lo: cfg.tau,
        hi: 1.0 - cfg.tau,
        // In logit space the band is |l| < ln((1−τ)/τ); the margin keeps the exact f32
        // probability test below the judge of membership.
        logit: ((1.0 - f64::from(cfg.tau)) / f64::from(cfg.tau)).ln() as f32 * 1.0001 + 1e-6,
    };
    let scan = |part: &[f32], base: usize| match cfg.map {
        MapKind::Probabilities => scan_probabilities(part, base, band, cfg.k),
        MapKind::Logits => scan_logits(part, base, band, cfg.k),
    };
    let threads = match cfg.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        t => t,
    };
    let parts = if map.len() >= PARALLEL_MIN {
        threads.max(1)
    } else {
        1
    };
    if parts == 1 {
        return scan(map, 0);
    }
    let per = map.len().div_ceil(parts).div_ceil(LANES) * LANES;
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = map
            .chunks(per)
            .enumerate()
            .skip(1)
            .map(|(i, part)| scope.spawn(move || scan(part, i * per)))
            .collect();
        let first = scan(&map[..per.min(map.len())], 0);
        std::iter::once(first)
            .chain(
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))),
            )
            .collect()
    });
    let mut rows = Vec::new();
    let mut n_candidates = 0;
    for r in results {
        // Parts are in raster order, so the first error is the earliest voxel.
        let (part_rows, n) = r?;
        rows.extend(part_rows);
        n_candidates += n;
    }
    // Each part kept its K best by (key, raster index); the K best of their union are the
    // K best of the whole map.
    rows.sort_unstable_by(|a, b| a.2.total_cmp(&b.2).then(a.1.cmp(&b.1)));
    rows.truncate(cfg.k);
    Ok((rows, n_candidates))
}

/// [`scan_probabilities`] for a map of logits: the band test in logit space first (no
/// sigmoid for the voxels far from the boundary), then the exact probability test.
fn scan_logits(map: &[f32], base: usize, band: Band, k: usize) -> Result<Rows, SamplerError> {
    let Band {
        lo,
        hi,
        logit: logit_band,
    } = band;
    let mut top = TopK::new(k);
    let mut n_candidates = 0usize;
    for (j, &v) in map.iter().enumerate() {
        if v.is_nan() {
            return Err(SamplerError::NotANumber { index: base + j });
        }
        if v.abs() >= logit_band {
            continue;
        }
        let p = sigmoid(v);
        if p > lo && p < hi {
            n_candidates += 1;
            top.offer((p - 0.5).abs().to_bits(), base + j);
        }
    }
    Ok((top.into_rows(), n_candidates))
}

/// Error rows: voxels inside each click's ball whose prediction `p > 0.5` disagrees with it.
/// Visits only the balls' bounding boxes.
fn error_rows(map: &[f32], dims: [usize; 3], clicks: &[Click], cfg: &SamplerConfig) -> Rows {
    let s = cfg.spacing.unwrap_or([1.0; 3]);
    let r = cfg.radius;
    // (raster index, distance, click index)
    let mut hits: Vec<(usize, f64, usize)> = Vec::new();
    for (n, c) in clicks.iter().enumerate() {
        let mut lo = [0usize; 3];
        let mut hi = [0usize; 3];
        for ax in 0..3 {
            let reach = (r / s[ax]).floor() as usize;
            lo[ax] = c.zyx[ax].saturating_sub(reach);
            hi[ax] = (c.zyx[ax] + reach).min(dims[ax] - 1);
        }
        for z in lo[0]..=hi[0] {
            let dz = (z as f64 - c.zyx[0] as f64) * s[0];
            for y in lo[1]..=hi[1] {
                let dy = (y as f64 - c.zyx[1] as f64) * s[1];
                let row = (z * dims[1] + y) * dims[2];
                for x in lo[2]..=hi[2] {
                    let dx = (x as f64 - c.zyx[2] as f64) * s[2];
                    let d = (dz * dz + dy * dy + dx * dx).sqrt();
                    if d > r {
                        continue;
                    }
                    let idx = row + x;
                    let p = match cfg.map {
                        MapKind::Probabilities => map[idx],
                        MapKind::Logits => sigmoid(map[idx]),
                    };
                    if (p > 0.5) != c.foreground {
                        hits.push((idx, d, n));
                    }
                }
            }
        }
    }
    // Per voxel keep the nearest qualifying click (earliest on ties): sort by (idx, d, n).
    hits.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
    hits.dedup_by_key(|h| h.0);
    let n_candidates = hits.len();
    // Rank by (distance, raster index); only K are needed.
    let by_rank =
        |a: &(usize, f64, usize), b: &(usize, f64, usize)| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0));
    if hits.len() > cfg.k {
        hits.select_nth_unstable_by(cfg.k - 1, by_rank);
        hits.truncate(cfg.k);
    }
    hits.sort_unstable_by(by_rank);
    (
        hits.into_iter()
            .map(|(idx, d, n)| (d, idx, if clicks[n].foreground { 1.0 } else { 0.0 }))
            .collect(),
        n_candidates,
    )
}

/// Samples the uncertainty and error sets of one round.
///
/// - `dims`: `[z, y, x]`; `map`: probabilities (or logits, see [`MapKind`]) in raster order.
/// - `clicks`: all clicks of the current target so far, in time order; the first one is the
///   feature context `(cz, cy, cx)`.
///
/// Deterministic: ties are broken by raster index, so the same input gives the same state on
/// every machine.
///
/// # Errors
/// [`SamplerError`] for a bad config, an empty volume, a map of the wrong length, a click
/// outside the volume, a NaN, or a probability outside `[0, 1]`.
///
/// # Examples
/// ```
/// use segvol_sampler::{sample, Click, SamplerConfig};
/// // 1×1×4 map: two uncertain voxels (0.45 is the most uncertain), one click.
/// let map = [0.05, 0.45, 0.7, 0.95];
/// let cfg = SamplerConfig { k: 2, ..Default::default() };
/// let state = sample([1, 1, 4], &map, &[Click::fg([0, 0, 0])], &cfg)?;
/// assert_eq!(state.uncertainty.coords, vec![[0, 0, 1], [0, 0, 2]]);
/// // The fg click disagrees with the prediction at x = 0 and x = 1 (p ≤ 0.5), nearest first.
/// assert_eq!(state.error.coords, vec![[0, 0, 0], [0, 0, 1]]);
/// assert_eq!(state.gru_input().len(), 2 * 2 * 8);
/// # Ok::<_, segvol_sampler::SamplerError>(())
/// ```
pub fn sample(
    dims: [usize; 3],
    map: &[f32],
    clicks: &[Click],
    cfg: &SamplerConfig,
) -> Result<InteractionState, SamplerError> {
    cfg.validate()?;
    let n = dims.iter().product::<usize>();
    if n == 0 {
        return Err(SamplerError::EmptyVolume);
    }
    if map.len() != n {
        return Err(SamplerError::ShapeMismatch {
            dims,
            len: map.len(),
        });
    }
    for (index, c) in clicks.iter().enumerate() {
        if (0..3).any(|ax| c.zyx[ax] >= dims[ax]) {
            return Err(SamplerError::ClickOutside {
                index,
                zyx: c.zyx,
                dims,
            });
        }
    }
    let (u_rows, u_cand) = uncertainty_rows(map, cfg)?;
    let (e_rows, e_cand) = error_rows(map, dims, clicks, cfg);
    Ok(InteractionState {
        dims,
        k: cfg.k,
        uncertainty: SampledSet::from_rows(cfg.k, &u_rows, dims, u_cand),
        error: SampledSet::from_rows(cfg.k, &e_rows, dims, e_cand),
        first_click: clicks.first().map(|c| c.zyx),
    })
}

#[cfg(test)]
mod tests;
