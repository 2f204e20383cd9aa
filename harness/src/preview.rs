//! `--preview P.png`: a three-plane montage (axial | coronal | sagittal through the mask's
//! centre) of the image with the mask over it in red, each plane resampled (nearest) to square
//! millimetres so anatomy keeps its proportions; higher z is drawn at the top of the coronal and
//! sagittal planes. Written atomically (temporary file, then rename).

use std::path::Path;

use crate::HarnessError;
use crate::error::write_file;
use crate::plot::encode_png;

type Result<T> = std::result::Result<T, HarnessError>;

/// One plane: rows × cols of (intensity 0..=255, in mask, on the ground truth's outline).
struct Plane {
    rows: usize,
    cols: usize,
    px: Vec<(u8, bool, bool)>,
}

/// Each pixel repeated `f` × `f` times.
fn enlarge(p: Plane, f: usize) -> Plane {
    if f <= 1 {
        return p;
    }
    let (rows, cols) = (p.rows * f, p.cols * f);
    let px = (0..rows)
        .flat_map(|r| (0..cols).map(move |c| (r / f, c / f)))
        .map(|(r, c)| p.px[r * p.cols + c])
        .collect();
    Plane { rows, cols, px }
}

/// Grey levels from the 0.5th–99.5th percentile of the image (robust to CT air and metal).
fn window(img: &[f32]) -> (f32, f32) {
    let mut s: Vec<f32> = img.iter().copied().filter(|v| v.is_finite()).collect();
    if s.is_empty() {
        return (0.0, 1.0);
    }
    s.sort_by(f32::total_cmp);
    let at = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
    let (lo, hi) = (at(0.005), at(0.995));
    if hi > lo { (lo, hi) } else { (lo, lo + 1.0) }
}

/// Nearest resample of a plane whose pixels are `sr` × `sc` mm to square pixels of the smaller.
fn square(p: Plane, sr: f64, sc: f64) -> Plane {
    let s = sr.min(sc).max(1e-6);
    let rows = ((p.rows as f64 * sr / s).round() as usize).clamp(1, 4096);
    let cols = ((p.cols as f64 * sc / s).round() as usize).clamp(1, 4096);
    let mut px = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let sr_i = (r * p.rows / rows).min(p.rows - 1);
        for c in 0..cols {
            let sc_i = (c * p.cols / cols).min(p.cols - 1);
            px.push(p.px[sr_i * p.cols + sc_i]);
        }
    }
    Plane { rows, cols, px }
}

/// Writes the montage of `img` (shape `dims`, spacing `[z, y, x]` mm) with `mask` (non-zero =
/// object) to `path`; small volumes are enlarged so each plane is at least 256 pixels.
///
/// # Errors
/// When the file cannot be written; the message names it.
pub fn write_preview(
    path: &Path,
    img: &[f32],
    dims: [usize; 3],
    spacing: [f64; 3],
    mask: &[u8],
) -> Result<()> {
    write_montage(path, img, dims, spacing, &[mask], None, 256)
}

/// The voxel at the centroid of the non-zero voxels of `mask`, if any.
fn centroid(mask: &[u8], dims: [usize; 3]) -> Option<[usize; 3]> {
    let [_, h, w] = dims;
    let (mut sum, mut n) = ([0usize; 3], 0usize);
    for (i, _) in mask.iter().enumerate().filter(|(_, m)| **m != 0) {
        let p = [i / (h * w), (i / w) % h, i % w];
        for a in 0..3 {
            sum[a] += p[a];
        }
        n += 1;
    }
    (n > 0).then(|| sum.map(|s| s / n))
}

/// One row per mask (e.g. the steps of an interactive session): axial | coronal | sagittal
/// through one centre (the ground truth's centroid when given, else the last mask's), the mask
/// in red and the ground truth's outline in green; planes at square millimetres, enlarged by an
/// integer factor until their larger side reaches `min_side` pixels.
///
/// # Errors
/// When the file cannot be written; the message names it.
pub fn write_montage(
    path: &Path,
    img: &[f32],
    dims: [usize; 3],
    spacing: [f64; 3],
    masks: &[&[u8]],
    gt: Option<&[u8]>,
    min_side: usize,
) -> Result<()> {
    let [d, h, w] = dims;
    let c = gt
        .and_then(|g| centroid(g, dims))
        .or_else(|| masks.last().and_then(|m| centroid(m, dims)))
        .unwrap_or([d / 2, h / 2, w / 2]);
    let (lo, hi) = window(img);
    let grey = |v: f32| (((v - lo) / (hi - lo)).clamp(0.0, 1.0) * 255.0) as u8;
    let gt_at = |z: usize, y: usize, x: usize| gt.is_some_and(|g| g[(z * h + y) * w + x] != 0);
    // Pixel value: grey, in mask, on the GT outline (in-plane 4-neighbourhood).
    let planes_for = |mask: &[u8]| -> Vec<Plane> {
        let at = |z: usize, y: usize, x: usize, plane: usize| {
            let i = (z * h + y) * w + x;
            let edge = gt_at(z, y, x) && {
                let n: [(isize, isize, isize); 4] = match plane {
                    0 => [(0, -1, 0), (0, 1, 0), (0, 0, -1), (0, 0, 1)],
                    1 => [(-1, 0, 0), (1, 0, 0), (0, 0, -1), (0, 0, 1)],
                    _ => [(-1, 0, 0), (1, 0, 0), (0, -1, 0), (0, 1, 0)],
                };
                n.iter().any(|&(dz, dy, dx)| {
                    let (zz, yy, xx) = (z as isize + dz, y as isize + dy, x as isize + dx);
                    zz < 0
                        || yy < 0
                        || xx < 0
                        || zz as usize >= d
                        || yy as usize >= h
                        || xx as usize >= w
                        || !gt_at(zz as usize, yy as usize, xx as usize)
                })
            };
            (grey(img[i]), mask[i] != 0, edge)
        };
        let axial = Plane {
            rows: h,
            cols: w,
            px: (0..h)
                .flat_map(|y| (0..w).map(move |x| (y, x)))
                .map(|(y, x)| at(c[0], y, x, 0))
                .collect(),
        };
        let coronal = Plane {
            rows: d,
            cols: w,
            px: (0..d)
                .rev()
                .flat_map(|z| (0..w).map(move |x| (z, x)))
                .map(|(z, x)| at(z, c[1], x, 1))
                .collect(),
        };
        let sagittal = Plane {
            rows: d,
            cols: h,
            px: (0..d)
                .rev()
                .flat_map(|z| (0..h).map(move |y| (z, y)))
                .map(|(z, y)| at(z, y, c[2], 2))
                .collect(),
        };
        [
            square(axial, spacing[1], spacing[2]),
            square(coronal, spacing[0], spacing[2]),
            square(sagittal, spacing[0], spacing[1]),
        ]
        .into_iter()
        .map(|p| {
            let f = min_side.div_ceil(p.rows.max(p.cols).max(1)).max(1);
            enlarge(p, f)
        })
        .collect()
    };
    let rows: Vec<Vec<Plane>> = masks.iter().map(|m| planes_for(m)).collect();
    let gap = 4;
    let row_h = rows
        .first()
        .map_or(1, |r| r.iter().map(|p| p.rows).max().unwrap_or(1));
    let width = rows.first().map_or(1, |r| {
        r.iter().map(|p| p.cols).sum::<usize>() + gap * (r.len().saturating_sub(1))
    });
    let height = rows.len() * row_h + gap * rows.len().saturating_sub(1);
    let mut rgb = vec![0u8; width * height * 3];
    for (ri, row) in rows.iter().enumerate() {
        let y0 = ri * (row_h + gap);
        let mut x0 = 0;
        for p in row {
            for r in 0..p.rows {
                for c in 0..p.cols {
                    let (g, m, e) = p.px[r * p.cols + c];
                    let o = ((y0 + r) * width + x0 + c) * 3;
                    let px = if e {
                        [0, 220, 0]
                    } else if m {
                        // 50 % red over the grey value.
                        [(u16::from(g) / 2 + 128) as u8, g / 2, g / 2]
                    } else {
                        [g, g, g]
                    };
                    rgb[o..o + 3].copy_from_slice(&px);
                }
            }
            x0 += p.cols + gap;
        }
    }
    write_png(path, &rgb, width, height)
}

/// Writes `rgb` (`width` × `height`, 8-bit RGB) as a PNG, atomically.
fn write_png(path: &Path, rgb: &[u8], width: usize, height: usize) -> Result<()> {
    let bytes = encode_png(rgb, width as u32, height as u32)
        .map_err(|e| HarnessError::file(path, format!("cannot write the preview: {e}")))?;
    write_file(path, &bytes)
}

/// What one row of the demo's montage shows: a step's mask and the clicks made so far.
pub struct DemoRow<'a> {
    /// The step's mask (non-zero = object).
    pub mask: &'a [u8],
    /// Clicks so far, `(z, y, x)` and foreground or not; the last is this step's.
    pub clicks: Vec<([usize; 3], bool)>,
}

/// The demo's montage: one row per step (box, then each click), three panels per row —
/// axial | coronal | sagittal through the ground truth's centroid, cut to the box grown by
/// 40 % (at least 8 voxels) per side. Every panel is the same height with its width from the
/// physical extent it shows (so it keeps its proportions and the rows have no empty space).
/// Mask red, ground-truth outline green, the box yellow, clicks as dots — foreground cyan,
/// background magenta, this step's click ringed in white; a click away from a panel's plane
/// is drawn where it projects.
///
/// # Errors
/// When the file cannot be written; the message names it.
#[allow(clippy::too_many_arguments)]
pub fn write_demo_montage(
    path: &Path,
    img: &[f32],
    dims: [usize; 3],
    spacing: [f64; 3],
    rows: &[DemoRow<'_>],
    gt: &[u8],
    bbox: ([usize; 3], [usize; 3]),
    panel_h: usize,
) -> Result<()> {
    let [_, h, w] = dims;
    let (blo, bhi) = bbox;
    let c = centroid(gt, dims).unwrap_or([
        (blo[0] + bhi[0]) / 2,
        (blo[1] + bhi[1]) / 2,
        (blo[2] + bhi[2]) / 2,
    ]);
    // The region shown, per axis: the box grown by 40 % of its extent (≥ 8 voxels).
    let region: [(usize, usize); 3] = [0, 1, 2].map(|a| {
        let ext = bhi[a].saturating_sub(blo[a]) + 1;
        let grow = (ext * 2 / 5).max(8);
        (
            blo[a].saturating_sub(grow),
            (bhi[a] + grow).min(dims[a] - 1),
        )
    });
    let (lo, hi) = window(img);
    let grey = |v: f32| (((v - lo) / (hi - lo)).clamp(0.0, 1.0) * 255.0) as u8;
    let gt_at = |z: usize, y: usize, x: usize| gt[(z * h + y) * w + x] != 0;
    // Panels: (fixed axis, row axis, column axis); rows of coronal/sagittal run from high z
    // down.
    let panels: [(usize, usize, usize); 3] = [(0, 1, 2), (1, 0, 2), (2, 0, 1)];
    let sizes: Vec<(usize, usize)> = panels
        .iter()
        .map(|&(_, ra, ca)| {
            let mm = |a: usize| (region[a].1 - region[a].0 + 1) as f64 * spacing[a];
            let cols = ((panel_h as f64 * mm(ca) / mm(ra).max(1e-6)).round() as usize)
                .clamp(8, 8 * panel_h);
            (panel_h, cols)
        })
        .collect();
    let gap = 4;
    let width = sizes.iter().map(|s| s.1).sum::<usize>() + gap * (sizes.len() - 1);
    let height = rows.len() * panel_h + gap * rows.len().saturating_sub(1);
    let mut rgb = vec![40u8; width * height * 3];
    let n_in = |a: usize| region[a].1 - region[a].0 + 1;
    for (ri, row) in rows.iter().enumerate() {
        let y0 = ri * (panel_h + gap);
        let mut x0 = 0;
        for (&(fa, ra, ca), &(ph, pw)) in panels.iter().zip(&sizes) {
            // Output pixel → voxel index along the row and column axes.
            let src_r = |r: usize| -> usize {
                let k = (r * n_in(ra) / ph).min(n_in(ra) - 1);
                if ra == 0 {
                    region[0].1 - k
                } else {
                    region[ra].0 + k
                }
            };
            let src_c = |col: usize| region[ca].0 + (col * n_in(ca) / pw).min(n_in(ca) - 1);
            for r in 0..ph {
                for col in 0..pw {
                    let mut v = [0usize; 3];
                    v[fa] = c[fa];
                    v[ra] = src_r(r);
                    v[ca] = src_c(col);
                    let i = (v[0] * h + v[1]) * w + v[2];
                    let g = grey(img[i]);
                    let edge = gt_at(v[0], v[1], v[2])
                        && [(ra, -1isize), (ra, 1), (ca, -1), (ca, 1)]
                            .iter()
                            .any(|&(a, s)| {
                                let mut u = v;
                                let q = u[a] as isize + s;
                                if q < 0 || q as usize >= dims[a] {
                                    return true;
                                }
                                u[a] = q as usize;
                                !gt_at(u[0], u[1], u[2])
                            });
                    let in_box = |a: usize| v[a] >= blo[a] && v[a] <= bhi[a];
                    let on_box = in_box(ra)
                        && in_box(ca)
                        && (v[ra] == blo[ra]
                            || v[ra] == bhi[ra]
                            || v[ca] == blo[ca]
                            || v[ca] == bhi[ca]);
                    let px = if edge {
                        [0, 220, 0]
                    } else if on_box {
                        [255, 215, 0]
                    } else if row.mask[i] != 0 {
                        [(u16::from(g) / 2 + 128) as u8, g / 2, g / 2]
                    } else {
                        [g, g, g]
                    };
                    let o = ((y0 + r) * width + x0 + col) * 3;
                    rgb[o..o + 3].copy_from_slice(&px);
                }
            }
            // Clicks: projected onto the panel.
            let to_px = |p: [usize; 3]| -> Option<(isize, isize)> {
                let inside = |a: usize| p[a] >= region[a].0 && p[a] <= region[a].1;
                if !inside(ra) || !inside(ca) {
                    return None;
                }
                let kr = if ra == 0 {
                    region[0].1 - p[0]
                } else {
                    p[ra] - region[ra].0
                };
                let kc = p[ca] - region[ca].0;
                Some((
                    ((kr as f64 + 0.5) * ph as f64 / n_in(ra) as f64) as isize,
                    ((kc as f64 + 0.5) * pw as f64 / n_in(ca) as f64) as isize,
                ))
            };
            let rad = (ph / 48).max(3) as isize;
            for (k, &(p, fg)) in row.clicks.iter().enumerate() {
                let Some((pr, pc)) = to_px(p) else { continue };
                let last = k + 1 == row.clicks.len();
                let colour = if fg { [0, 200, 255] } else { [255, 0, 255] };
                let ring = if last { rad + 2 } else { rad };
                for dr in -ring..=ring {
                    for dc in -ring..=ring {
                        let d2 = dr * dr + dc * dc;
                        if d2 > ring * ring {
                            continue;
                        }
                        let (rr, cc) = (pr + dr, pc + dc);
                        if rr < 0 || cc < 0 || rr as usize >= ph || cc as usize >= pw {
                            continue;
                        }
                        let o = ((y0 + rr as usize) * width + x0 + cc as usize) * 3;
                        let px = if d2 > rad * rad {
                            [255, 255, 255]
                        } else {
                            colour
                        };
                        rgb[o..o + 3].copy_from_slice(&px);
                    }
                }
            }
            x0 += pw + gap;
        }
    }
    write_png(path, &rgb, width, height)
}
