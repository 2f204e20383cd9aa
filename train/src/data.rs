//! Training data: challenge `.npz` cases preprocessed exactly as inference preprocesses them
//! (foreground normalisation, min-max, crop to the foreground; SEGVOL.md §8), and the seed's
//! sampling and augmentation on the model grid (GRU_CORRECTION.md §2.2, §7).
//!
//! One sample is one class of one case (classes drawn uniformly over every class of every
//! training case, so large multi-class cases do not drown the lesions). A sample is the whole
//! volume resized to the grid (p = 0.25) or a crop (p = 0.75), positive (centred on a voxel of
//! the class, p = 0.75) or negative (centred anywhere), as MONAI's `RandCropByPosNegLabeld`.
//! Then flips (p = 0.2 per axis), intensity scale ±20 % (p = 0.2) and shift ±20 % (p = 0.2).
//!
//! One addition to the seed, on purpose: crops take a random physical extent (`zoom`, default
//! ×0.5..×2 of the grid, log-uniform, resampled to the grid) instead of exactly the grid. The
//! training volumes are mostly 3 mm while users' CTs are often < 1 mm in plane, and SegVol's
//! zoom-in reads native-resolution windows, so the model must see structures at several sizes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use segvol_core::pipeline::{foreground_box, normalize_for_model};
use segvol_core::resize::{ResizeMode, resize};
use segvol_core::zoom::{mask_box, sub_block};
use segvol_eval::protocol::Box3;
use segvol_eval::rng::Mt19937;
use segvol_io::{AnyVolume, ChallengeCase};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::synth::Uniform;

/// A reproducible random stream (MT19937, the generator the project already uses for the
/// challenge's clicks), seeded from 64 bits.
pub struct Rng(Mt19937);

impl Rng {
    /// A stream for `seed`.
    pub fn new(seed: u64) -> Self {
        let s = splitmix(seed);
        Rng(Mt19937::new((s ^ (s >> 32)) as u32))
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        let hi = f64::from(self.0.next_u32() >> 5);
        let lo = f64::from(self.0.next_u32() >> 6);
        (hi * 67_108_864.0 + lo) / 9_007_199_254_740_992.0
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        Uniform::below(self, n)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        Uniform::chance(self, p)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        Uniform::range(self, lo, hi)
    }

    /// The underlying MT19937 (for `segvol_gru::training::draw_rounds`).
    pub fn mt(&mut self) -> &mut Mt19937 {
        &mut self.0
    }
}

impl Uniform for Rng {
    fn uniform(&mut self) -> f64 {
        Rng::uniform(self)
    }
}

/// SplitMix64's finaliser: a well-mixed 64-bit value from any input.
pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of one step: a function of the run seed, the stage and the step only, so a resumed
/// run draws exactly the samples the uninterrupted run would have drawn.
pub fn step_seed(seed: u64, stage: u64, step: u64) -> u64 {
    splitmix(splitmix(seed ^ (stage << 56)) ^ step)
}

/// Augmentation and sampling settings (the seed's, plus `zoom`; see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augment {
    /// Probability of a whole-volume sample (resized to the grid); else a crop.
    pub full_volume_p: f64,
    /// Probability that a crop is positive (centred on the class).
    pub positive_p: f64,
    /// Flip probability per axis.
    pub flip_p: f64,
    /// Probability of an intensity scale by `1 + U(−scale, scale)`.
    pub scale_p: f64,
    /// Intensity scale range.
    pub scale: f64,
    /// Probability of an intensity shift by `U(−shift, shift)`.
    pub shift_p: f64,
    /// Intensity shift range.
    pub shift: f64,
    /// Physical extent of a crop relative to the grid, `[min, max]`, log-uniform; `[1, 1]`
    /// crops exactly the grid as the seed does.
    pub zoom: [f64; 2],
    /// Probability that a sample's label is replaced by a synthetic object painted into its
    /// image ([`crate::synth`]); 0 (the default) draws nothing extra, so runs without it keep
    /// their random streams.
    pub synthetic_p: f64,
    /// Probability that a label with several pieces on the grid (26-connected) is cut to one of
    /// them, drawn by size (a random voxel of the label picks its piece): "the object in the
    /// box", not the class's name. 0 (the default) draws nothing extra.
    pub component_p: f64,
}

impl Default for Augment {
    fn default() -> Self {
        Augment {
            full_volume_p: 0.25,
            positive_p: 0.75,
            flip_p: 0.2,
            scale_p: 0.2,
            scale: 0.2,
            shift_p: 0.2,
            shift: 0.2,
            zoom: [0.5, 2.0],
            synthetic_p: 0.0,
            component_p: 0.0,
        }
    }
}

/// One labelled structure of a case.
#[derive(Debug, Clone)]
pub struct ClassInfo {
    /// Its label in the case (1-based).
    pub label: u8,
    /// Its name (from the manifest when there is one, else `class_<label>`).
    pub name: String,
    /// Flat indices (in the cropped volume) of its voxels.
    pub voxels: Vec<u32>,
}

/// One training case, preprocessed and cropped to its foreground.
#[derive(Debug, Clone)]
pub struct Case {
    /// File stem.
    pub name: String,
    /// Shape of the crop `[z, y, x]`.
    pub dims: [usize; 3],
    /// Normalised image (what the encoder sees, before resizing).
    pub image: Vec<f32>,
    /// Labels on the crop.
    pub labels: Vec<u8>,
    /// Its structures.
    pub classes: Vec<ClassInfo>,
}

/// A validation case as the protocol wants it: raw `imgs`, `gts`, boxes.
#[derive(Debug, Clone)]
pub struct ValCase {
    /// File stem.
    pub name: String,
    /// `[z, y, x]`.
    pub dims: [usize; 3],
    /// Spacing as stored.
    pub spacing: [f64; 3],
    /// `imgs` (0..255).
    pub image: Vec<u8>,
    /// `gts`.
    pub gts: Vec<u8>,
    /// One box per class (the case's own `boxes`).
    pub boxes: Vec<Box3>,
    /// Class names.
    pub names: Vec<String>,
}

/// Which case files go where, by file stem.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// Training cases.
    pub train: Vec<String>,
    /// Validation cases.
    pub validation: Vec<String>,
    /// Where the split came from.
    pub source: String,
}

/// Reads `manifest.json` next to `dir`'s npz folder (the training set's layout: `DIR/npz/*.npz`
/// with `DIR/manifest.json`) or inside `dir`.
fn find_manifest(dir: &Path) -> Option<PathBuf> {
    [dir.join("manifest.json"), dir.join("../manifest.json")]
        .into_iter()
        .find(|p| p.is_file())
}

/// The npz files in `dir` (or `dir/npz`), sorted by name.
pub fn npz_files(dir: &Path) -> Result<Vec<PathBuf>, TrainError> {
    let sub = dir.join("npz");
    let d = if sub.is_dir() { sub } else { dir.to_path_buf() };
    let rd = std::fs::read_dir(&d).map_err(|e| TrainError::Data {
        path: d.clone(),
        detail: format!("cannot list: {e}"),
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "npz"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(TrainError::Data {
            path: d,
            detail: "no .npz files".into(),
        });
    }
    Ok(files)
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Class names per case from a manifest (`cases[*].case` / `names`).
fn manifest_names(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let Some(m) = find_manifest(dir) else {
        return out;
    };
    let Ok(text) = std::fs::read_to_string(&m) else {
        return out;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return out;
    };
    for c in v["cases"].as_array().into_iter().flatten() {
        if let (Some(name), Some(names)) = (c["case"].as_str(), c["names"].as_array()) {
            out.insert(
                name.to_string(),
                names
                    .iter()
                    .map(|n| n.as_str().unwrap_or("?").to_string())
                    .collect(),
            );
        }
    }
    out
}

/// The split for the data in `dir`: explicit lists win; else the manifest's `split` (the
/// training set's, authoritative); else every file trains and none validates.
///
/// # Errors
/// [`TrainError::Data`] when the folder has no npz or a named case has no file.
pub fn resolve_split(
    dir: &Path,
    train: Option<&[String]>,
    validation: Option<&[String]>,
) -> Result<Split, TrainError> {
    let files: Vec<String> = npz_files(dir)?.iter().map(|p| stem(p)).collect();
    let check = |names: &[String]| -> Result<Vec<String>, TrainError> {
        for n in names {
            if !files.contains(n) {
                return Err(TrainError::Data {
                    path: dir.to_path_buf(),
                    detail: format!("case `{n}` has no {n}.npz"),
                });
            }
        }
        Ok(names.to_vec())
    };
    if let Some(t) = train {
        let v = validation.map(check).transpose()?.unwrap_or_default();
        return Ok(Split {
            train: check(t)?,
            validation: v,
            source: "config".into(),
        });
    }
    let manifest = find_manifest(dir)
        .and_then(|m| std::fs::read_to_string(m).ok())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    if let Some(m) = manifest
        && let (Some(t), Some(v)) = (
            m["split"]["train"].as_array(),
            m["split"]["validation"].as_array(),
        )
    {
        let names = |a: &Vec<serde_json::Value>| -> Vec<String> {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .filter(|s| files.contains(s))
                .collect()
        };
        let validation = match validation {
            Some(v) => check(v)?,
            None => names(v),
        };
        return Ok(Split {
            train: names(t),
            validation,
            source: "manifest.json".into(),
        });
    }
    let validation = validation.map(check).transpose()?.unwrap_or_default();
    Ok(Split {
        train: files
            .iter()
            .filter(|f| !validation.contains(f))
            .cloned()
            .collect(),
        validation,
        source: "all files".into(),
    })
}

fn file_of(dir: &Path, name: &str) -> PathBuf {
    let sub = dir.join("npz");
    let d = if sub.is_dir() { sub } else { dir.to_path_buf() };
    d.join(format!("{name}.npz"))
}

/// Image (f32), labels, shape and the whole case.
type ImageAndLabels = (Vec<f32>, Vec<u8>, [usize; 3], ChallengeCase);

/// Reads image, labels and spacing of a challenge case; the image as f32 (0..255 for `imgs`).
fn read_image_and_labels(path: &Path) -> Result<ImageAndLabels, TrainError> {
    let bad = |detail: String| TrainError::Data {
        path: path.to_path_buf(),
        detail,
    };
    let case = ChallengeCase::read(path).map_err(|e| bad(e.to_string()))?;
    let imgs = case.imgs.as_ref().ok_or_else(|| bad("no `imgs`".into()))?;
    let dims = imgs.dims();
    let image = match imgs {
        AnyVolume::U8(v) => v.data.iter().map(|&b| f32::from(b)).collect(),
        other => other.to_f32().data,
    };
    if image.iter().any(|v| !v.is_finite()) {
        return Err(bad("`imgs` holds NaN or infinite values".into()));
    }
    let gts = case
        .gts
        .as_ref()
        .ok_or_else(|| bad("no `gts` (training needs labels)".into()))?;
    if gts.dims != dims {
        return Err(bad(format!(
            "`imgs` {dims:?} and `gts` {:?} differ",
            gts.dims
        )));
    }
    let labels = gts.data.clone();
    Ok((image, labels, dims, case))
}

impl Case {
    /// Loads and preprocesses one case: normalisation as inference, crop to the foreground
    /// grown to cover every label.
    ///
    /// # Errors
    /// [`TrainError::Data`] naming the file.
    pub fn load(path: &Path, names: Option<&[String]>) -> Result<Case, TrainError> {
        let (raw, labels, dims, _) = read_image_and_labels(path)?;
        let norm = normalize_for_model(&raw);
        let (mut lo, mut hi) = foreground_box(&norm, dims);
        let labelled: Vec<bool> = labels.iter().map(|&l| l > 0).collect();
        if let Some((l0, l1)) = mask_box(&labelled, dims) {
            for a in 0..3 {
                lo[a] = lo[a].min(l0[a]);
                hi[a] = hi[a].max(l1[a] + 1);
            }
        }
        let cd = [0, 1, 2].map(|a| hi[a] - lo[a]);
        let mut image = Vec::with_capacity(cd.iter().product());
        let mut lab = Vec::with_capacity(image.capacity());
        for z in lo[0]..hi[0] {
            for y in lo[1]..hi[1] {
                let row = (z * dims[1] + y) * dims[2];
                image.extend_from_slice(&norm[row + lo[2]..row + hi[2]]);
                lab.extend_from_slice(&labels[row + lo[2]..row + hi[2]]);
            }
        }
        let n_classes = lab.iter().copied().max().unwrap_or(0);
        let mut classes: Vec<ClassInfo> = (1..=n_classes)
            .map(|l| ClassInfo {
                label: l,
                name: names
                    .and_then(|n| n.get(usize::from(l) - 1))
                    .cloned()
                    .unwrap_or_else(|| format!("class_{l}")),
                voxels: Vec::new(),
            })
            .collect();
        for (i, &l) in lab.iter().enumerate() {
            if l > 0 {
                classes[usize::from(l) - 1].voxels.push(i as u32);
            }
        }
        classes.retain(|c| !c.voxels.is_empty());
        Ok(Case {
            name: stem(path),
            dims: cd,
            image,
            labels: lab,
            classes,
        })
    }
}

impl ValCase {
    /// Loads a validation case with its boxes.
    ///
    /// # Errors
    /// [`TrainError::Data`] naming the file (no boxes, boxes outside, …).
    pub fn load(path: &Path, names: Option<&[String]>) -> Result<ValCase, TrainError> {
        let (raw, gts, dims, case) = read_image_and_labels(path)?;
        let bad = |detail: String| TrainError::Data {
            path: path.to_path_buf(),
            detail,
        };
        let n = usize::from(gts.iter().copied().max().unwrap_or(0));
        let boxes = case
            .boxes
            .as_ref()
            .ok_or_else(|| bad("no `boxes`".into()))?
            .iter()
            .map(|b| {
                let (lo, hi) = b.zyx_inclusive();
                if (0..3).all(|a| lo[a] >= 0 && lo[a] <= hi[a] && (hi[a] as usize) < dims[a]) {
                    Ok(Box3 {
                        lo: lo.map(|v| v as usize),
                        hi: hi.map(|v| v as usize),
                    })
                } else {
                    Err(bad(format!("box {lo:?}..={hi:?} outside {dims:?}")))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if boxes.len() != n {
            return Err(bad(format!("{} boxes for {n} classes", boxes.len())));
        }
        Ok(ValCase {
            name: stem(path),
            dims,
            spacing: case.spacing.unwrap_or([1.0; 3]),
            image: raw.iter().map(|&v| v.clamp(0.0, 255.0) as u8).collect(),
            gts,
            boxes,
            names: (1..=n)
                .map(|l| {
                    names
                        .and_then(|v| v.get(l - 1))
                        .cloned()
                        .unwrap_or_else(|| format!("class_{l}"))
                })
                .collect(),
        })
    }
}

/// The training cases of a split.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Cases.
    pub cases: Vec<Case>,
    /// `(case, class)` index pairs: what a sample is drawn from.
    pub classes: Vec<(usize, usize)>,
}

/// Loads the training cases of `split` from `dir`.
///
/// # Errors
/// [`TrainError::Data`] for an unreadable case, or when no class is left.
pub fn load_train(dir: &Path, split: &Split) -> Result<Dataset, TrainError> {
    let names = manifest_names(dir);
    let cases = split
        .train
        .iter()
        .map(|n| Case::load(&file_of(dir, n), names.get(n).map(Vec::as_slice)))
        .collect::<Result<Vec<_>, _>>()?;
    let classes: Vec<(usize, usize)> = cases
        .iter()
        .enumerate()
        .flat_map(|(i, c)| (0..c.classes.len()).map(move |j| (i, j)))
        .collect();
    if classes.is_empty() {
        return Err(TrainError::Data {
            path: dir.to_path_buf(),
            detail: "the training cases hold no labelled voxel".into(),
        });
    }
    Ok(Dataset { cases, classes })
}

/// Loads the validation cases of `split` from `dir`.
///
/// # Errors
/// [`TrainError::Data`] for an unreadable case.
pub fn load_validation(dir: &Path, split: &Split) -> Result<Vec<ValCase>, TrainError> {
    let names = manifest_names(dir);
    split
        .validation
        .iter()
        .map(|n| ValCase::load(&file_of(dir, n), names.get(n).map(Vec::as_slice)))
        .collect()
}

/// One training sample on the model grid.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The image `[D, H, W]` of the grid.
    pub image: Vec<f32>,
    /// The class's mask on the grid.
    pub gt: Vec<bool>,
    /// `(case, class)` it came from.
    pub source: (usize, usize),
    /// Whether the sample was drawn as a positive one (its mask may still be empty after
    /// resizing a tiny structure).
    pub positive: bool,
    /// Whether the mask is a synthetic object ([`Augment::synthetic_p`]) instead of the class.
    pub synthetic: bool,
    /// Whether the mask is one piece of a class that had several ([`Augment::component_p`]).
    pub component: bool,
}

fn flip_axis<T: Copy>(v: &mut [T], dims: [usize; 3], axis: usize) {
    let [d, h, w] = dims;
    let idx = |z: usize, y: usize, x: usize| (z * h + y) * w + x;
    match axis {
        0 => {
            for z in 0..d / 2 {
                for y in 0..h {
                    for x in 0..w {
                        v.swap(idx(z, y, x), idx(d - 1 - z, y, x));
                    }
                }
            }
        }
        1 => {
            for z in 0..d {
                for y in 0..h / 2 {
                    for x in 0..w {
                        v.swap(idx(z, y, x), idx(z, h - 1 - y, x));
                    }
                }
            }
        }
        _ => {
            for row in v.chunks_mut(w) {
                row.reverse();
            }
        }
    }
}

impl Dataset {
    /// Draws one augmented sample for a `grid`-sized model.
    pub fn draw(&self, rng: &mut Rng, grid: [usize; 3], aug: &Augment) -> Sample {
        let (ci, cl) = self.classes[rng.below(self.classes.len())];
        let case = &self.cases[ci];
        let class = &case.classes[cl];
        let dims = case.dims;
        let (mut image, mask, positive) = if rng.chance(aug.full_volume_p) {
            let img = resize(&case.image, dims, grid, ResizeMode::Nearest);
            let m: Vec<f32> = case
                .labels
                .iter()
                .map(|&l| f32::from(u8::from(l == class.label)))
                .collect();
            (img, resize(&m, dims, grid, ResizeMode::Nearest), true)
        } else {
            let positive = rng.chance(aug.positive_p);
            let centre = if positive {
                let v = class.voxels[rng.below(class.voxels.len())] as usize;
                [
                    v / (dims[1] * dims[2]),
                    (v / dims[2]) % dims[1],
                    v % dims[2],
                ]
            } else {
                [0, 1, 2].map(|a| rng.below(dims[a]))
            };
            let (lz, hz) = (aug.zoom[0].max(1e-3).ln(), aug.zoom[1].max(1e-3).ln());
            let sz = rng.range(lz, hz.max(lz)).exp();
            let sxy = rng.range(lz, hz.max(lz)).exp();
            let ext = [
                ((grid[0] as f64 * sz).round() as usize).max(1),
                ((grid[1] as f64 * sxy).round() as usize).max(1),
                ((grid[2] as f64 * sxy).round() as usize).max(1),
            ];
            let lo = [0, 1, 2].map(|a| {
                if dims[a] >= ext[a] {
                    (centre[a] as isize - (ext[a] / 2) as isize)
                        .clamp(0, (dims[a] - ext[a]) as isize)
                } else {
                    -(((ext[a] - dims[a]) / 2) as isize)
                }
            });
            let img = sub_block(&case.image, dims, lo, ext);
            let lab = sub_block(&case.labels, dims, lo, ext);
            let m: Vec<f32> = lab
                .iter()
                .map(|&l| f32::from(u8::from(l == class.label)))
                .collect();
            if ext == grid {
                (img, m, positive)
            } else {
                (
                    resize(&img, ext, grid, ResizeMode::Trilinear),
                    resize(&m, ext, grid, ResizeMode::Nearest),
                    positive,
                )
            }
        };
        let mut gt: Vec<bool> = mask.iter().map(|&v| v > 0.5).collect();
        let mut component = false;
        if aug.component_p > 0.0 && rng.chance(aug.component_p) {
            component = one_piece(&mut gt, grid, rng);
        }
        let mut synthetic = false;
        if aug.synthetic_p > 0.0
            && rng.chance(aug.synthetic_p)
            && let Some(m) = crate::synth::random_shape(rng, grid)
        {
            crate::synth::paint(&mut image, &m, grid, rng);
            gt = m;
            synthetic = true;
        }
        for axis in 0..3 {
            if rng.chance(aug.flip_p) {
                flip_axis(&mut image, grid, axis);
                flip_axis(&mut gt, grid, axis);
            }
        }
        if rng.chance(aug.scale_p) {
            let f = 1.0 + rng.range(-aug.scale, aug.scale) as f32;
            image.iter_mut().for_each(|v| *v *= f);
        }
        if rng.chance(aug.shift_p) {
            let s = rng.range(-aug.shift, aug.shift) as f32;
            image.iter_mut().for_each(|v| *v += s);
        }
        Sample {
            image,
            gt,
            source: (ci, cl),
            positive: positive || synthetic,
            synthetic,
            component: component && !synthetic,
        }
    }
}

/// Keeps one 26-connected piece of `gt` (the piece of a uniformly drawn foreground voxel, so a
/// piece is drawn in proportion to its size); true when `gt` had several. One or no piece:
/// `gt` is left as it is and nothing is drawn.
fn one_piece(gt: &mut [bool], dims: [usize; 3], rng: &mut Rng) -> bool {
    use segvol_eval::components::{Connectivity, label};
    let (labels, n) = label(gt, dims, Connectivity::TwentySix);
    if n < 2 {
        return false;
    }
    let count = gt.iter().filter(|&&g| g).count();
    let k = rng.below(count);
    let Some(pick) = labels.iter().filter(|&&l| l > 0).nth(k).copied() else {
        return false;
    };
    for (g, &l) in gt.iter_mut().zip(&labels) {
        *g = l == pick;
    }
    true
}

/// A box prompt for a mask on the model grid: half the time the tight 3-D box, half the time
/// the challenge's (the class's z range with the in-plane box of its middle slice only); each
/// side then grows by 0–2 voxels. An empty mask gives `[-1; 6]`, which is what SegVol's
/// zoom-in feeds for a window with nothing in it (SEGVOL.md §9.3).
pub fn box_prompt(gt: &[bool], dims: [usize; 3], rng: &mut Rng) -> [f32; 6] {
    let Some((mut lo, mut hi)) = mask_box(gt, dims) else {
        return [-1.0; 6];
    };
    if rng.chance(0.5) {
        // Challenge style: median slice of the unique z indices.
        let zs: Vec<usize> = (lo[0]..=hi[0])
            .filter(|&z| {
                gt[z * dims[1] * dims[2]..(z + 1) * dims[1] * dims[2]]
                    .iter()
                    .any(|&g| g)
            })
            .collect();
        let zm = zs[zs.len() / 2];
        let slice = &gt[zm * dims[1] * dims[2]..(zm + 1) * dims[1] * dims[2]];
        if let Some((l2, h2)) = mask_box(slice, [1, dims[1], dims[2]]) {
            lo[1] = l2[1];
            lo[2] = l2[2];
            hi[1] = h2[1];
            hi[2] = h2[2];
        }
    }
    let mut b = [0f32; 6];
    for a in 0..3 {
        b[a] = lo[a].saturating_sub(rng.below(3)) as f32;
        b[a + 3] = (hi[a] + rng.below(3)).min(dims[a] - 1) as f32;
    }
    b
}

/// Widens a box prompt `[z0, y0, x0, z1, y1, x1]` (inclusive) by `margin` voxels on each of
/// its four in-plane sides, clipped to `dims`; `z` is left alone. This is what the CVPR25 box
/// generator does to the tight box of a class's middle slice (`bbox_shift`, the same on every
/// side; CHALLENGE.md §2.2). The "nothing here" box `[-1; 6]` stays as it is.
pub fn widen_in_plane(b: &mut [f32; 6], dims: [usize; 3], margin: usize) {
    if b[0] < 0.0 {
        return;
    }
    let m = margin as f32;
    for a in 1..3 {
        b[a] = (b[a] - m).max(0.0);
        b[a + 3] = (b[a + 3] + m).min((dims[a] - 1) as f32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_moves_the_in_plane_sides_only_and_clips() {
        let dims = [8, 20, 30];
        let mut b = [2.0, 5.0, 3.0, 6.0, 9.0, 27.0];
        widen_in_plane(&mut b, dims, 4);
        // y: 5−4 = 1, 9+4 = 13; x: 3−4 clips at 0, 27+4 clips at 29; z untouched.
        assert_eq!(b, [2.0, 1.0, 0.0, 6.0, 13.0, 29.0]);
        let mut none = [-1.0; 6];
        widen_in_plane(&mut none, dims, 4);
        assert_eq!(none, [-1.0; 6]);
        let mut same = [2.0, 5.0, 3.0, 6.0, 9.0, 27.0];
        widen_in_plane(&mut same, dims, 0);
        assert_eq!(same, [2.0, 5.0, 3.0, 6.0, 9.0, 27.0]);
    }

    #[test]
    fn flips_reverse_one_axis() {
        let mut v: Vec<u8> = (0..8).collect(); // 2×2×2
        flip_axis(&mut v, [2, 2, 2], 0);
        assert_eq!(v, vec![4, 5, 6, 7, 0, 1, 2, 3]);
        flip_axis(&mut v, [2, 2, 2], 2);
        assert_eq!(v, vec![5, 4, 7, 6, 1, 0, 3, 2]);
        flip_axis(&mut v, [2, 2, 2], 1);
        assert_eq!(v, vec![7, 6, 5, 4, 3, 2, 1, 0]);
    }

    #[test]
    fn boxes_hold_the_mask_and_empty_masks_give_minus_one() {
        let dims = [4, 6, 6];
        let mut gt = vec![false; 144];
        // A 2×2×2 cube at (1..3, 2..4, 2..4).
        for z in 1..3 {
            for y in 2..4 {
                for x in 2..4 {
                    gt[(z * 6 + y) * 6 + x] = true;
                }
            }
        }
        let mut rng = Rng::new(7);
        for _ in 0..20 {
            let b = box_prompt(&gt, dims, &mut rng);
            assert!(b[0] <= 1.0 && b[3] >= 2.0 && b[1] <= 2.0 && b[4] >= 3.0);
            assert!(b[0] >= 0.0 && b[3] <= 3.0 && b[5] <= 5.0);
        }
        assert_eq!(box_prompt(&[false; 144], dims, &mut rng), [-1.0; 6]);
    }

    /// A 20×40×40 case whose one label covers the given boxes (corner, extent; z, y, x), the
    /// image brighter inside.
    fn boxes_case(name: &str, boxes: &[([usize; 3], [usize; 3])]) -> Dataset {
        let dims = [20, 40, 40];
        let n: usize = dims.iter().product();
        let mut labels = vec![0u8; n];
        for &([z0, y0, x0], [ez, ey, ex]) in boxes {
            for z in z0..z0 + ez {
                for y in y0..y0 + ey {
                    for x in x0..x0 + ex {
                        labels[(z * 40 + y) * 40 + x] = 1;
                    }
                }
            }
        }
        let voxels = (0..n as u32).filter(|&i| labels[i as usize] == 1).collect();
        let image = (0..n).map(|i| 0.3 + 0.2 * f32::from(labels[i])).collect();
        Dataset {
            cases: vec![Case {
                name: name.into(),
                dims,
                image,
                labels,
                classes: vec![ClassInfo {
                    label: 1,
                    name: name.into(),
                    voxels,
                }],
            }],
            classes: vec![(0, 0)],
        }
    }

    fn one_cube_case() -> Dataset {
        boxes_case("cube", &[([5, 10, 10], [10, 20, 20])])
    }

    #[test]
    fn synthetic_samples_replace_the_label_and_only_when_asked() {
        let data = one_cube_case();
        let grid = [16, 32, 32];
        let plain = Augment {
            full_volume_p: 1.0,
            flip_p: 0.0,
            scale_p: 0.0,
            shift_p: 0.0,
            ..Augment::default()
        };
        // The whole volume resized: the cube's mask, as the label says.
        let cube = data.draw(&mut Rng::new(1), grid, &plain);
        assert!(!cube.synthetic);
        let mut synth = plain.clone();
        synth.synthetic_p = 1.0;
        let mut seen = 0;
        for seed in 0..10 {
            let s = data.draw(&mut Rng::new(seed), grid, &synth);
            if !s.synthetic {
                continue; // eight draws under MIN_VOXELS in a row: allowed, rare
            }
            seen += 1;
            assert!(s.positive);
            assert_ne!(s.gt, cube.gt, "seed {seed}: the label was kept");
            assert!(s.gt.iter().filter(|&&g| g).count() >= crate::synth::MIN_VOXELS);
            assert_ne!(s.image, cube.image, "seed {seed}: nothing painted");
        }
        assert!(seen >= 8, "{seen} of 10 synthetic");
    }

    /// Two 4×4×4 cubes of one label, far apart (a 20×40×40 volume), and a third of 2×2×2.
    fn two_piece_case() -> Dataset {
        boxes_case(
            "pieces",
            &[
                ([4, 4, 4], [4, 4, 4]),
                ([12, 30, 30], [4, 4, 4]),
                ([10, 4, 30], [2, 2, 2]),
            ],
        )
    }

    #[test]
    fn component_samples_keep_one_piece_drawn_by_size() {
        use segvol_eval::components::{Connectivity, label};
        let data = two_piece_case();
        let grid = [20, 40, 40]; // the volume's own size: the whole-volume draw keeps voxels
        let whole = Augment {
            full_volume_p: 1.0,
            flip_p: 0.0,
            scale_p: 0.0,
            shift_p: 0.0,
            ..Augment::default()
        };
        let all = data.draw(&mut Rng::new(1), grid, &whole);
        assert_eq!(label(&all.gt, grid, Connectivity::TwentySix).1, 3);
        assert!(!all.component);
        let mut one = whole.clone();
        one.component_p = 1.0;
        let mut sizes = std::collections::BTreeMap::new();
        for seed in 0..200 {
            let s = data.draw(&mut Rng::new(seed), grid, &one);
            assert!(s.component, "seed {seed}");
            assert_eq!(
                label(&s.gt, grid, Connectivity::TwentySix).1,
                1,
                "seed {seed}"
            );
            // A piece of the label, whole: every kept voxel is labelled, and the piece is
            // one of the three cubes (64, 64 or 8 voxels).
            assert!(s.gt.iter().zip(&all.gt).all(|(&g, &a)| !g || a));
            let size = s.gt.iter().filter(|&&g| g).count();
            assert!([64, 8].contains(&size), "seed {seed}: {size}");
            *sizes.entry(size).or_insert(0) += 1;
        }
        // Drawn by size: the small cube 8 of 136 voxels (≈ 12 of 200), the big ones ≈ 188.
        let small = sizes.get(&8).copied().unwrap_or(0);
        assert!((2..=30).contains(&small), "{sizes:?}");
        // One piece only: nothing drawn, nothing changed.
        let single = one_cube_case();
        let a = single.draw(&mut Rng::new(5), [16, 32, 32], &whole);
        let b = single.draw(&mut Rng::new(5), [16, 32, 32], &one);
        assert_eq!(a.gt, b.gt);
        assert!(!b.component);
    }

    #[test]
    fn step_seeds_differ_and_repeat() {
        assert_eq!(step_seed(1, 0, 5), step_seed(1, 0, 5));
        assert_ne!(step_seed(1, 0, 5), step_seed(1, 0, 6));
        assert_ne!(step_seed(1, 0, 5), step_seed(1, 1, 5));
        let mut r = Rng::new(3);
        for _ in 0..1000 {
            let u = r.uniform();
            assert!((0.0..1.0).contains(&u));
            assert!(r.below(5) < 5);
        }
    }
}
