//! Overlap and surface metrics on binary masks with anisotropic spacing (CHALLENGE.md §6, §9).
//!
//! Every function takes masks in (z, y, x) raster order, `dims = [z, y, x]` and `spacing` in mm
//! in the same axis order. Empty-mask rule (documented, never a panic): both masks empty → NaN
//! for every metric (MONAI's `ignore_empty`: skip it when averaging); exactly one empty →
//! DSC 0, NSD 0, HD / HD95 / ASD `+∞` (DeepMind's convention; MONAI returns ∞ with a warning).

use crate::edt::edt_squared;
use crate::surfel_table::NEIGHBOUR_CODE_TO_NORMALS;

/// How HD95 pools the surface distances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hd95Mode {
    /// `max(q95(d_pred→gt), q95(d_gt→pred))` over surface voxels, linear interpolation
    /// (MONAI `compute_hausdorff_distance(percentile=95)`). The default.
    #[default]
    MaxOfDirected,
    /// `q95` of both directed sets pooled (medpy `hd95`).
    UnionPercentile,
    /// Area-weighted directed percentiles over DeepMind surfels, their max
    /// (`compute_robust_hausdorff(.., 95)`).
    SurfelAreaWeighted,
}

/// How ASD averages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AsdMode {
    /// Mean over the union of both directed surface-voxel distance sets (medpy 0.5 `assd`,
    /// MONAI `symmetric=True`). The default.
    #[default]
    UnionMean,
    /// Mean of the two directed means (medpy ≤ 0.4).
    MeanOfDirectedMeans,
    /// Mean of DeepMind's two area-weighted directed means.
    SurfelAreaWeighted,
}

/// Dice `2|P ∩ G| / (|P| + |G|)`; NaN when both are empty.
pub fn dsc(pred: &[bool], gt: &[bool]) -> f64 {
    crate::dice(pred, gt)
}

/// Surface voxels: `mask ∧ ¬erode(mask, 6-connectivity)`, outside the volume counting as
/// background (medpy's and MONAI's border).
pub fn surface_voxels(mask: &[bool], dims: [usize; 3]) -> Vec<bool> {
    let [d, h, w] = dims;
    let mut out = vec![false; mask.len()];
    for z in 0..d {
        for y in 0..h {
            for x in 0..w {
                let i = (z * h + y) * w + x;
                if !mask[i] {
                    continue;
                }
                let inner = z > 0
                    && z + 1 < d
                    && y > 0
                    && y + 1 < h
                    && x > 0
                    && x + 1 < w
                    && mask[i - h * w]
                    && mask[i + h * w]
                    && mask[i - w]
                    && mask[i + w]
                    && mask[i - 1]
                    && mask[i + 1];
                out[i] = !inner;
            }
        }
    }
    out
}

/// Distances (mm) from each `from` surface voxel to the nearest `to` surface voxel, in raster
/// order of `from`'s surface; all `+∞` when `to` has no surface.
fn directed(from: &[bool], to: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Vec<f64> {
    let not_to: Vec<bool> = to.iter().map(|&b| !b).collect();
    let d2 = edt_squared(&not_to, dims, spacing);
    from.iter()
        .zip(&d2)
        .filter(|(f, _)| **f)
        .map(|(_, &e)| e.sqrt())
        .collect()
}

/// numpy's default (`linear`) percentile of unsorted values.
fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = (v.len() - 1) as f64 * q / 100.0;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    if v[hi].is_infinite() || v[lo].is_infinite() {
        return if frac == 0.0 { v[lo] } else { v[hi] };
    }
    v[lo] + (v[hi] - v[lo]) * frac
}

fn empty_rule(pred: &[bool], gt: &[bool]) -> Option<f64> {
    match (pred.iter().any(|&b| b), gt.iter().any(|&b| b)) {
        (false, false) => Some(f64::NAN),
        (true, false) | (false, true) => Some(f64::INFINITY),
        _ => None,
    }
}

/// Surface-voxel distances in both directions: `(pred → gt, gt → pred)`.
pub fn surface_distances(
    pred: &[bool],
    gt: &[bool],
    dims: [usize; 3],
    spacing: [f64; 3],
) -> (Vec<f64>, Vec<f64>) {
    let sp = surface_voxels(pred, dims);
    let sg = surface_voxels(gt, dims);
    (
        directed(&sp, &sg, dims, spacing),
        directed(&sg, &sp, dims, spacing),
    )
}

/// Hausdorff distance (max of both directed maxima), mm.
pub fn hd(pred: &[bool], gt: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> f64 {
    if let Some(v) = empty_rule(pred, gt) {
        return v;
    }
    let (a, b) = surface_distances(pred, gt, dims, spacing);
    hd_of(&a, &b)
}

fn hd_of(a: &[f64], b: &[f64]) -> f64 {
    a.iter().chain(b).copied().fold(0.0, f64::max)
}

fn hd95_max_of_directed(a: &[f64], b: &[f64]) -> f64 {
    percentile(a, 95.0).max(percentile(b, 95.0))
}

fn asd_union_mean(a: &[f64], b: &[f64]) -> f64 {
    // Summed in the same order as the concatenated set, as before.
    a.iter().chain(b).sum::<f64>() / (a.len() + b.len()) as f64
}

/// 95th-percentile Hausdorff distance, mm, pooled as `mode` says.
pub fn hd95(
    pred: &[bool],
    gt: &[bool],
    dims: [usize; 3],
    spacing: [f64; 3],
    mode: Hd95Mode,
) -> f64 {
    if let Some(v) = empty_rule(pred, gt) {
        return v;
    }
    match mode {
        Hd95Mode::MaxOfDirected => {
            let (a, b) = surface_distances(pred, gt, dims, spacing);
            hd95_max_of_directed(&a, &b)
        }
        Hd95Mode::UnionPercentile => {
            let (mut a, b) = surface_distances(pred, gt, dims, spacing);
            a.extend(b);
            percentile(&a, 95.0)
        }
        Hd95Mode::SurfelAreaWeighted => {
            let s = surfel_distances(pred, gt, dims, spacing);
            robust_directed(&s.gt_to_pred, &s.area_gt, 95.0).max(robust_directed(
                &s.pred_to_gt,
                &s.area_pred,
                95.0,
            ))
        }
    }
}

/// Average symmetric surface distance, mm, as `mode` says.
pub fn asd(pred: &[bool], gt: &[bool], dims: [usize; 3], spacing: [f64; 3], mode: AsdMode) -> f64 {
    if let Some(v) = empty_rule(pred, gt) {
        return v;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    match mode {
        AsdMode::UnionMean => {
            let (a, b) = surface_distances(pred, gt, dims, spacing);
            asd_union_mean(&a, &b)
        }
        AsdMode::MeanOfDirectedMeans => {
            let (a, b) = surface_distances(pred, gt, dims, spacing);
            (mean(&a) + mean(&b)) / 2.0
        }
        AsdMode::SurfelAreaWeighted => {
            let s = surfel_distances(pred, gt, dims, spacing);
            let wmean = |d: &[f64], a: &[f64]| {
                d.iter().zip(a).map(|(d, a)| d * a).sum::<f64>() / a.iter().sum::<f64>()
            };
            (wmean(&s.gt_to_pred, &s.area_gt) + wmean(&s.pred_to_gt, &s.area_pred)) / 2.0
        }
    }
}

/// DeepMind's surfels of both masks with their areas and distances to the other surface
/// (`surface_distance.compute_surface_distances`, unsorted).
#[derive(Debug, Clone, Default)]
pub struct SurfelDistances {
    /// Distance of each ground-truth surfel to the predicted surface (mm).
    pub gt_to_pred: Vec<f64>,
    /// Distance of each predicted surfel to the ground-truth surface (mm).
    pub pred_to_gt: Vec<f64>,
    /// Area of each ground-truth surfel (mm²).
    pub area_gt: Vec<f64>,
    /// Area of each predicted surfel (mm²).
    pub area_pred: Vec<f64>,
}

/// The area of every neighbour code for this spacing (`create_table_neighbour_code_to_surface_area`).
fn code_areas(spacing: [f64; 3]) -> [f64; 256] {
    let mut out = [0.0; 256];
    for (code, normals) in NEIGHBOUR_CODE_TO_NORMALS.iter().enumerate() {
        out[code] = normals
            .iter()
            .map(|n| {
                let v = [
                    n[0] * spacing[1] * spacing[2],
                    n[1] * spacing[0] * spacing[2],
                    n[2] * spacing[0] * spacing[1],
                ];
                (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
            })
            .sum();
    }
    out
}

/// DeepMind's surfels and distances, as the challenge's `SurfaceDice.py` computes them:
/// crop to the bounding box of `pred ∪ gt` with one zero layer after it, neighbour codes of
/// the 2×2×2 blocks, EDT (with spacing) to each border set.
pub fn surfel_distances(
    pred: &[bool],
    gt: &[bool],
    dims: [usize; 3],
    spacing: [f64; 3],
) -> SurfelDistances {
    let [_, h, w] = dims;
    let Some((lo, hi)) =
        crate::components::voxel_box(pred.len().min(gt.len()), dims, |i| pred[i] || gt[i])
    else {
        return SurfelDistances::default();
    };
    // Grid points 0..=extent per axis; point g covers voxels g−1 and g on each axis of the
    // crop (voxels outside the crop are 0).
    let ext: [usize; 3] = [0, 1, 2].map(|ax| hi[ax] - lo[ax] + 1);
    let g: [usize; 3] = ext.map(|e| e + 1);
    let gn: usize = g.iter().product();
    // The crop with one zero layer on both sides of every axis: voxel v of the crop sits at
    // q = v + 1, so grid point g reads q = g (voxel g − 1) and q = g + 1 (voxel g) unchecked.
    let q: [usize; 3] = ext.map(|e| e + 2);
    let padded = |m: &[bool]| -> Vec<u8> {
        let mut out = vec![0u8; q.iter().product()];
        for z in 0..ext[0] {
            for y in 0..ext[1] {
                let src = ((lo[0] + z) * h + lo[1] + y) * w + lo[2];
                let dst = ((z + 1) * q[1] + y + 1) * q[2] + 1;
                for x in 0..ext[2] {
                    out[dst + x] = u8::from(m[src + x]);
                }
            }
        }
        out
    };
    let codes = |m: &[bool]| -> Vec<u8> {
        let p = padded(m);
        let mut c = vec![0u8; gn];
        let (sz, sy) = (q[1] * q[2], q[2]);
        for z in 0..g[0] {
            for y in 0..g[1] {
                let row = (z * g[1] + y) * g[2];
                // q-index of voxel (z−1, y−1, x−1) for x = 0.
                let base = z * sz + y * sy;
                for x in 0..g[2] {
                    let o = base + x;
                    // Bit weights by voxel offset (CHALLENGE.md §6.2): (−1,−1,−1) → 128 … (0,0,0) → 1.
                    c[row + x] = (p[o] << 7)
                        | (p[o + 1] << 6)
                        | (p[o + sy] << 5)
                        | (p[o + sy + 1] << 4)
                        | (p[o + sz] << 3)
                        | (p[o + sz + 1] << 2)
                        | (p[o + sz + sy] << 1)
                        | p[o + sz + sy + 1];
                }
            }
        }
        c
    };
    let (cg, cp) = (codes(gt), codes(pred));
    let border = |c: &[u8]| -> Vec<bool> { c.iter().map(|&v| v != 0 && v != 255).collect() };
    let (bg, bp) = (border(&cg), border(&cp));
    // Squared distance of every grid point to the nearest point of border `b`.
    let dist2_to = |b: &[bool]| -> Option<Vec<f64>> {
        b.iter().any(|&x| x).then(|| {
            let not: Vec<bool> = b.iter().map(|&x| !x).collect();
            edt_squared(&not, g, spacing)
        })
    };
    // The two transforms are independent: one per thread.
    let (dg, dp) = std::thread::scope(|sc| {
        let t = sc.spawn(|| dist2_to(&bg));
        let dp = dist2_to(&bp);
        (
            t.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
            dp,
        )
    });
    let dist = |d: &Option<Vec<f64>>, i: usize| d.as_ref().map_or(f64::INFINITY, |d| d[i].sqrt());
    let areas = code_areas(spacing);
    let mut s = SurfelDistances::default();
    for i in 0..gn {
        if bg[i] {
            s.gt_to_pred.push(dist(&dp, i));
            s.area_gt.push(areas[cg[i] as usize]);
        }
        if bp[i] {
            s.pred_to_gt.push(dist(&dg, i));
            s.area_pred.push(areas[cp[i] as usize]);
        }
    }
    s
}

/// DeepMind's robust directed distance (`compute_robust_hausdorff`): sorted by distance, the
/// first whose cumulative area fraction reaches `percent`/100 (`np.searchsorted`, no
/// interpolation); `+∞` when there are no surfels.
fn robust_directed(d: &[f64], a: &[f64], percent: f64) -> f64 {
    let mut idx: Vec<usize> = (0..d.len()).collect();
    idx.sort_by(|&i, &j| d[i].total_cmp(&d[j]));
    let total: f64 = a.iter().sum();
    let mut cum = 0.0;
    for &i in &idx {
        cum += a[i];
        if cum / total >= percent / 100.0 {
            return d[i];
        }
    }
    idx.last().map_or(f64::INFINITY, |&i| d[i])
}

/// Normalised surface Dice at `tolerance_mm` with DeepMind surfels, the challenge's NSD:
/// `(Σ a_G[d_G→S ≤ τ] + Σ a_S[d_S→G ≤ τ]) / (Σ a_G + Σ a_S)`; NaN when both masks are empty,
/// 0 when one is.
pub fn nsd(
    pred: &[bool],
    gt: &[bool],
    dims: [usize; 3],
    spacing: [f64; 3],
    tolerance_mm: f64,
) -> f64 {
    let s = surfel_distances(pred, gt, dims, spacing);
    let within = |d: &[f64], a: &[f64]| {
        d.iter()
            .zip(a)
            .filter(|(d, _)| **d <= tolerance_mm)
            .map(|(_, a)| a)
            .sum::<f64>()
    };
    let num = within(&s.gt_to_pred, &s.area_gt) + within(&s.pred_to_gt, &s.area_pred);
    let den: f64 = s.area_gt.iter().sum::<f64>() + s.area_pred.iter().sum::<f64>();
    num / den
}

/// All the metrics of one class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassMetrics {
    /// Dice.
    pub dsc: f64,
    /// Normalised surface Dice at the tolerance.
    pub nsd: f64,
    /// HD95 (default mode), mm.
    pub hd95: f64,
    /// ASD (default mode), mm.
    pub asd: f64,
    /// Hausdorff distance, mm.
    pub hd: f64,
}

/// DSC, NSD@`tolerance_mm`, HD95, ASD and HD of one binary pair with the default definitions.
pub fn class_metrics(
    pred: &[bool],
    gt: &[bool],
    dims: [usize; 3],
    spacing: [f64; 3],
    tolerance_mm: f64,
) -> ClassMetrics {
    // HD95, ASD and HD (default modes) share one pair of surface-voxel distance sets.
    let (hd95_v, asd_v, hd_v) = match empty_rule(pred, gt) {
        Some(v) => (v, v, v),
        None => {
            let (a, b) = surface_distances(pred, gt, dims, spacing);
            (
                hd95_max_of_directed(&a, &b),
                asd_union_mean(&a, &b),
                hd_of(&a, &b),
            )
        }
    };
    ClassMetrics {
        dsc: dsc(pred, gt),
        nsd: nsd(pred, gt, dims, spacing, tolerance_mm),
        hd95: hd95_v,
        asd: asd_v,
        hd: hd_v,
    }
}

/// [`class_metrics`] for every label present in the ground truth label map `gts` (or only
/// `only`), against the same label in `segs`; and their mean over those labels (the challenge's
/// case value). Labels absent from the ground truth are ignored, as the evaluator does.
pub fn per_label_metrics(
    segs: &[u8],
    gts: &[u8],
    dims: [usize; 3],
    spacing: [f64; 3],
    tolerance_mm: f64,
    only: Option<u8>,
) -> (Vec<(u8, ClassMetrics)>, Option<ClassMetrics>) {
    let mut present = [false; 256];
    for &g in gts {
        present[g as usize] = true;
    }
    let rows: Vec<(u8, ClassMetrics)> = (1..=255u8)
        .filter(|&l| present[l as usize] && only.is_none_or(|o| o == l))
        .map(|l| {
            let p: Vec<bool> = segs.iter().map(|&v| v == l).collect();
            let g: Vec<bool> = gts.iter().map(|&v| v == l).collect();
            (l, class_metrics(&p, &g, dims, spacing, tolerance_mm))
        })
        .collect();
    if rows.is_empty() {
        return (rows, None);
    }
    let n = rows.len() as f64;
    let mean = |f: fn(&ClassMetrics) -> f64| rows.iter().map(|(_, m)| f(m)).sum::<f64>() / n;
    let m = ClassMetrics {
        dsc: mean(|m| m.dsc),
        nsd: mean(|m| m.nsd),
        hd95: mean(|m| m.hd95),
        asd: mean(|m| m.asd),
        hd: mean(|m| m.hd),
    };
    (rows, Some(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One voxel against itself: marching cubes cuts one corner triangle in each of the 8
    /// grid cells around it, each with normal (±⅛, ±⅛, ±⅛) of length √3/8, so 8 surfels of
    /// total area √3 mm² (surface-distance gives 1.7320508075688772), all at distance 0 →
    /// NSD 1; HD = 0.
    #[test]
    fn single_voxel() {
        let m = [false, false, false, false, true, false, false, false, false];
        let dims = [1, 3, 3];
        let s = surfel_distances(&m, &m, dims, [1.0; 3]);
        let area: f64 = s.area_gt.iter().sum();
        assert_eq!(s.area_gt.len(), 8);
        assert!((area - 3f64.sqrt()).abs() < 1e-12, "{area}");
        assert_eq!(nsd(&m, &m, dims, [1.0; 3], 0.0), 1.0);
        assert_eq!(hd(&m, &m, dims, [1.0; 3]), 0.0);
    }

    /// Two 1-voxel masks 3 voxels apart along x with 2 mm spacing: every surface distance is
    /// 6 mm, so HD = HD95 = ASD = 6 in every mode; NSD at 2 mm is 0.
    #[test]
    fn two_points() {
        let mut p = vec![false; 7];
        let mut g = vec![false; 7];
        p[1] = true;
        g[4] = true;
        let (dims, sp) = ([1, 1, 7], [1.0, 1.0, 2.0]);
        assert_eq!(hd(&p, &g, dims, sp), 6.0);
        for m in [Hd95Mode::MaxOfDirected, Hd95Mode::UnionPercentile] {
            assert_eq!(hd95(&p, &g, dims, sp, m), 6.0);
        }
        for m in [AsdMode::UnionMean, AsdMode::MeanOfDirectedMeans] {
            assert_eq!(asd(&p, &g, dims, sp, m), 6.0);
        }
        assert_eq!(nsd(&p, &g, dims, sp, 2.0), 0.0);
        assert_eq!(dsc(&p, &g), 0.0);
    }

    #[test]
    fn empty_rules() {
        let e = [false; 8];
        let f = [true; 8];
        let dims = [2, 2, 2];
        assert!(hd(&e, &e, dims, [1.0; 3]).is_nan());
        assert!(nsd(&e, &e, dims, [1.0; 3], 2.0).is_nan());
        assert_eq!(hd(&f, &e, dims, [1.0; 3]), f64::INFINITY);
        assert_eq!(
            hd95(&e, &f, dims, [1.0; 3], Hd95Mode::MaxOfDirected),
            f64::INFINITY
        );
        assert_eq!(nsd(&e, &f, dims, [1.0; 3], 2.0), 0.0);
    }

    /// GT labels {1, 2}; the prediction gets 1 right, misses 2 and invents 3 (ignored):
    /// DSC 1 and 0, mean 0.5.
    #[test]
    fn per_label_ignores_labels_absent_from_the_ground_truth() {
        let gts = [1, 1, 2, 2, 0, 0];
        let segs = [1, 1, 0, 0, 3, 3];
        let (rows, mean) = per_label_metrics(&segs, &gts, [1, 1, 6], [1.0; 3], 2.0, None);
        let labels: Vec<u8> = rows.iter().map(|r| r.0).collect();
        assert_eq!(labels, vec![1, 2]);
        assert_eq!((rows[0].1.dsc, rows[1].1.dsc), (1.0, 0.0));
        assert_eq!(mean.unwrap().dsc, 0.5);
        let (rows, _) = per_label_metrics(&segs, &gts, [1, 1, 6], [1.0; 3], 2.0, Some(2));
        assert_eq!(rows.len(), 1);
        assert!(
            per_label_metrics(&segs, &[0; 6], [1, 1, 6], [1.0; 3], 2.0, None)
                .1
                .is_none()
        );
    }

    #[test]
    fn percentile_is_numpys_linear() {
        // np.percentile([1, 2, 3, 4], 95) = 3.85
        assert!((percentile(&[4.0, 1.0, 3.0, 2.0], 95.0) - 3.85).abs() < 1e-12);
        assert_eq!(percentile(&[7.0], 95.0), 7.0);
    }
}
