//! 3-D resizing with PyTorch's `F.interpolate` semantics on plain (z, y, x) volumes
//! (SEGVOL.md §6.8, §8.3). burn 0.21 has no 5-D interpolate; these run on the host, where the
//! pipeline's zoom-out / paste-back already lives.

/// The interpolation rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeMode {
    /// PyTorch's legacy `nearest`: `src = min(⌊o·s⌋, n_in − 1)`.
    Nearest,
    /// `nearest-exact`: `src = min(⌊(o + 0.5)·s⌋, n_in − 1)`.
    NearestExact,
    /// `trilinear` with `align_corners = False`.
    Trilinear,
}

/// Source index per output index along one axis for the nearest modes (`s` in f32, as ATen).
fn nearest_index(n_in: usize, n_out: usize, exact: bool) -> Vec<usize> {
    let s = n_in as f32 / n_out as f32;
    (0..n_out)
        .map(|o| {
            let x = if exact {
                (o as f32 + 0.5) * s
            } else {
                o as f32 * s
            };
            (x.floor() as usize).min(n_in - 1)
        })
        .collect()
}

/// `(i0, i1, λ)` per output index for linear interpolation, align_corners = false.
fn linear_taps(n_in: usize, n_out: usize) -> Vec<(usize, usize, f32)> {
    let s = n_in as f32 / n_out as f32;
    (0..n_out)
        .map(|o| {
            let x = ((o as f32 + 0.5) * s - 0.5).max(0.0);
            let i0 = (x as usize).min(n_in - 1);
            let i1 = if i0 < n_in - 1 { i0 + 1 } else { i0 };
            (i0, i1, x - i0 as f32)
        })
        .collect()
}

/// Resizes a (z, y, x) volume to `out`, as `F.interpolate(x[None, None], size=out, mode=…)`.
///
/// # Panics
/// When `data.len()` is not the product of `dims`, or a size is zero.
///
/// # Examples
/// ```
/// use segvol_core::resize::{resize, ResizeMode};
/// // 1×1×2 → 1×1×4: nearest repeats, trilinear blends with half-pixel centres.
/// assert_eq!(resize(&[0.0, 1.0], [1, 1, 2], [1, 1, 4], ResizeMode::Nearest), vec![0.0, 0.0, 1.0, 1.0]);
/// assert_eq!(resize(&[0.0, 1.0], [1, 1, 2], [1, 1, 4], ResizeMode::Trilinear), vec![0.0, 0.25, 0.75, 1.0]);
/// ```
pub fn resize(data: &[f32], dims: [usize; 3], out: [usize; 3], mode: ResizeMode) -> Vec<f32> {
    assert_eq!(
        data.len(),
        dims.iter().product::<usize>(),
        "data/dims mismatch"
    );
    assert!(dims.iter().chain(&out).all(|&d| d > 0), "empty volume");
    let [d, h, w] = dims;
    let [od, oh, ow] = out;
    match mode {
        ResizeMode::Nearest | ResizeMode::NearestExact => {
            let exact = mode == ResizeMode::NearestExact;
            let (iz, iy, ix) = (
                nearest_index(d, od, exact),
                nearest_index(h, oh, exact),
                nearest_index(w, ow, exact),
            );
            let mut v = Vec::with_capacity(od * oh * ow);
            for &z in &iz {
                for &y in &iy {
                    let row = (z * h + y) * w;
                    v.extend(ix.iter().map(|&x| data[row + x]));
                }
            }
            v
        }
        ResizeMode::Trilinear => trilinear_with(dims, out, |z, y, x| data[(z * h + y) * w + x]),
    }
}

/// [`ResizeMode::Trilinear`] of the volume `at(z, y, x)` of shape `dims` to `out`, reading
/// voxels through `at` (so a caller can resize a mask of another type, or a block of a larger
/// volume, without copying it to `f32` first; the arithmetic is the same as [`resize`]'s).
///
/// # Panics
/// When a dimension is 0.
pub fn trilinear_with(
    dims: [usize; 3],
    out: [usize; 3],
    at: impl Fn(usize, usize, usize) -> f32,
) -> Vec<f32> {
    assert!(dims.iter().chain(&out).all(|&d| d > 0), "empty volume");
    let [d, h, w] = dims;
    let [od, oh, ow] = out;
    let (tz, ty, tx) = (linear_taps(d, od), linear_taps(h, oh), linear_taps(w, ow));
    // The same nesting as ATen's kernel: W innermost, then H, then D.
    let mut v = Vec::with_capacity(od * oh * ow);
    for &(z0, z1, lz) in &tz {
        for &(y0, y1, ly) in &ty {
            for &(x0, x1, lx) in &tx {
                let row = |z: usize, y: usize| (1.0 - lx) * at(z, y, x0) + lx * at(z, y, x1);
                let plane = |z: usize| (1.0 - ly) * row(z, y0) + ly * row(z, y1);
                v.push((1.0 - lz) * plane(z0) + lz * plane(z1));
            }
        }
    }
    v
}

/// The source index along each axis that [`ResizeMode::Nearest`] (`exact` = false) or
/// [`ResizeMode::NearestExact`] reads for each output index, resizing `dims` to `out`.
pub fn nearest_indices(dims: [usize; 3], out: [usize; 3], exact: bool) -> [Vec<usize>; 3] {
    [0, 1, 2].map(|a| nearest_index(dims[a], out[a], exact))
}
