//! Exact Euclidean distance transform (Felzenszwalb & Huttenlocher 2012), separable and linear
//! time, with anisotropic sampling.

/// Squared distance of every voxel to the nearest *background* (`false`) voxel, with voxel
/// size `spacing` (z, y, x); background voxels get 0, and with no background at all every
/// voxel gets `+∞`.
///
/// The square root of this is `scipy.ndimage.distance_transform_edt(mask, sampling=spacing)`.
/// Squared values are exact for integer-valued spacings (sums of integers in `f64`), so ties are
/// exact too.
///
/// # Panics
/// When `mask.len()` is not the product of `dims`.
///
/// # Examples
/// ```
/// use segvol_eval::edt::edt_squared;
/// // 1×1×5 line, background only at x = 0: squared distances 0, 1, 4, 9, 16.
/// let d = edt_squared(&[false, true, true, true, true], [1, 1, 5], [1.0; 3]);
/// assert_eq!(d, vec![0.0, 1.0, 4.0, 9.0, 16.0]);
/// ```
pub fn edt_squared(mask: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Vec<f64> {
    assert_eq!(
        mask.len(),
        dims.iter().product::<usize>(),
        "mask/dims mismatch"
    );
    let mut f: Vec<f64> = mask
        .iter()
        .map(|&m| if m { f64::INFINITY } else { 0.0 })
        .collect();
    let [d, h, w] = dims;
    let strides = [h * w, w, 1];
    let n = dims.iter().copied().max().unwrap_or(0);
    let mut line = vec![0.0; n];
    let mut out = vec![0.0; n];
    let mut v = vec![0usize; n];
    let mut z = vec![0.0; n + 1];
    for axis in [2, 1, 0] {
        let len = dims[axis];
        if len == 0 {
            return f;
        }
        let stride = strides[axis];
        let s2 = spacing[axis] * spacing[axis];
        // Every line along `axis`: iterate over the other two coordinates.
        let (oa, ob) = match axis {
            0 => (1, 2),
            1 => (0, 2),
            _ => (0, 1),
        };
        for a in 0..dims[oa] {
            for b in 0..dims[ob] {
                let start = a * strides[oa] + b * strides[ob];
                let mut any = false;
                for (i, slot) in line[..len].iter_mut().enumerate() {
                    *slot = f[start + i * stride];
                    any |= *slot != 0.0;
                }
                if !any {
                    // All background: the line stays 0.
                    continue;
                }
                if axis == 2 {
                    // The first pass sees only 0 and ∞: the distance to the nearest 0 in the
                    // line, by two sweeps (the value the lower envelope gives, bit for bit).
                    nearest_zero(&line[..len], s2, &mut out[..len]);
                } else {
                    lower_envelope(&line[..len], s2, &mut out[..len], &mut v, &mut z);
                }
                for (i, &val) in out[..len].iter().enumerate() {
                    f[start + i * stride] = val;
                }
            }
        }
        let _ = (d, h, w);
    }
    f
}

/// 1-D squared distance transform of a line of 0 and ∞ samples: `out[q] = s2·(q − p)²` for the
/// nearest `p` with `f[p] = 0`, ∞ when there is none (as [`lower_envelope`] computes it, without
/// its parabola intersections).
fn nearest_zero(f: &[f64], s2: f64, out: &mut [f64]) {
    // Left to right: the distance to the last zero at or before q; then right to left.
    let mut last: Option<usize> = None;
    for (q, o) in out.iter_mut().enumerate() {
        if f[q] == 0.0 {
            last = Some(q);
        }
        *o = last.map_or(f64::INFINITY, |p| {
            let dq = q as f64 - p as f64;
            s2 * dq * dq
        });
    }
    let mut next: Option<usize> = None;
    for q in (0..f.len()).rev() {
        if f[q] == 0.0 {
            next = Some(q);
        }
        if let Some(p) = next {
            let dq = q as f64 - p as f64;
            let d = s2 * dq * dq;
            if d < out[q] {
                out[q] = d;
            }
        }
    }
}

/// 1-D squared distance transform of sampled function `f` with parabolas of weight `s2`
/// (the squared spacing): `out[q] = min_p f[p] + s2·(q − p)²`. Infinite samples are skipped.
fn lower_envelope(f: &[f64], s2: f64, out: &mut [f64], v: &mut [usize], z: &mut [f64]) {
    let n = f.len();
    let mut k: isize = -1;
    for q in 0..n {
        if f[q].is_infinite() {
            continue;
        }
        loop {
            if k < 0 {
                k = 0;
                v[0] = q;
                z[0] = f64::NEG_INFINITY;
                z[1] = f64::INFINITY;
                break;
            }
            let p = v[k as usize];
            // Intersection of the parabolas rooted at p and q.
            let s = ((f[q] + s2 * (q * q) as f64) - (f[p] + s2 * (p * p) as f64))
                / (2.0 * s2 * (q as f64 - p as f64));
            if s <= z[k as usize] {
                k -= 1;
                continue;
            }
            k += 1;
            v[k as usize] = q;
            z[k as usize] = s;
            z[k as usize + 1] = f64::INFINITY;
            break;
        }
    }
    if k < 0 {
        out.iter_mut().for_each(|o| *o = f64::INFINITY);
        return;
    }
    let mut j = 0usize;
    for (q, o) in out.iter_mut().enumerate() {
        while z[j + 1] < q as f64 {
            j += 1;
        }
        let p = v[j];
        let dq = q as f64 - p as f64;
        *o = s2 * dq * dq + f[p];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Brute force: min over all background voxels of the weighted squared distance.
    fn naive(mask: &[bool], dims: [usize; 3], s: [f64; 3]) -> Vec<f64> {
        let idx = |i: usize| {
            [
                i / (dims[1] * dims[2]),
                (i / dims[2]) % dims[1],
                i % dims[2],
            ]
        };
        (0..mask.len())
            .map(|i| {
                if !mask[i] {
                    return 0.0;
                }
                let a = idx(i);
                (0..mask.len())
                    .filter(|&j| !mask[j])
                    .map(|j| {
                        let b = idx(j);
                        (0..3)
                            .map(|ax| {
                                let d = (a[ax] as f64 - b[ax] as f64) * s[ax];
                                d * d
                            })
                            .sum::<f64>()
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn matches_brute_force(
            (dims, mask) in (1usize..6, 1usize..7, 1usize..7).prop_flat_map(|(d, h, w)| {
                (Just([d, h, w]), prop::collection::vec(prop::bool::weighted(0.8), d * h * w))
            }),
            spacing in prop_oneof![Just([1.0, 1.0, 1.0]), Just([3.0, 1.5, 1.5]), Just([2.0, 1.0, 0.5])],
        ) {
            let got = edt_squared(&mask, dims, spacing);
            let want = naive(&mask, dims, spacing);
            for (g, w) in got.iter().zip(&want) {
                prop_assert!((g == w) || (g - w).abs() <= 1e-9 * w.max(1.0), "{g} vs {w}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        /// The first pass's two sweeps give what the lower envelope gives on a line of 0 and
        /// ∞, bit for bit (the click rule's ties depend on exact values).
        #[test]
        fn two_sweeps_equal_the_envelope_bit_for_bit(
            line in prop::collection::vec(prop::bool::weighted(0.7), 1..40),
            s2 in prop_oneof![Just(1.0), Just(2.25), Just(9.0), Just(0.25), Just(0.1)],
        ) {
            let f: Vec<f64> = line.iter().map(|&m| if m { f64::INFINITY } else { 0.0 }).collect();
            let n = f.len();
            let (mut want, mut got) = (vec![0.0; n], vec![0.0; n]);
            let (mut v, mut z) = (vec![0usize; n], vec![0.0; n + 1]);
            lower_envelope(&f, s2, &mut want, &mut v, &mut z);
            nearest_zero(&f, s2, &mut got);
            prop_assert_eq!(
                got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn no_background_is_infinite() {
        let d = edt_squared(&[true; 8], [2, 2, 2], [1.0; 3]);
        assert!(d.iter().all(|x| x.is_infinite()));
    }
}
