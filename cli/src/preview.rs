//! `--preview P.png`: a three-plane montage (axial | coronal | sagittal through the mask's
//! centre) of the image with the mask over it in red, each plane resampled (nearest) to square
//! millimetres so anatomy keeps its proportions; higher z is drawn at the top of the coronal and
//! sagittal planes. Written atomically (temporary file, then rename).

use std::io::BufWriter;
use std::path::Path;

use anyhow::{Context, Result};

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
    // tempfile: a fresh name beside the target, removed if anything fails before `persist`.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let write = || -> Result<()> {
        let tmp = tempfile::Builder::new()
            .prefix(".segvol-tmp-")
            .tempfile_in(dir)?;
        let mut enc = png::Encoder::new(BufWriter::new(tmp.as_file()), width as u32, height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header()?;
        wr.write_image_data(&rgb)?;
        wr.finish()?;
        tmp.persist(path)?;
        Ok(())
    };
    write().with_context(|| format!("{}: cannot write the preview", path.display()))
}
