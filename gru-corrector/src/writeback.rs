//! Write-back of the corrections into a logit volume (GRU_CORRECTION.md D7, §4.1): in logit
//! space, `logit[c′] += δ` at the refined coordinate `c′ = c + shift`, rounded half away from
//! zero and clamped into the volume, never for padding rows; collisions accumulate. With a
//! splat radius `r > 0`, δ is spread to the neighbours `u` with `‖u‖ ≤ r` with weight
//! `exp(−‖u‖² / (2σ²))`, σ = r / 2, 1 at the centre, no normalisation; neighbours outside the
//! volume are skipped (only the centre is clamped).

/// Where and what one round writes: one entry per sampled row.
#[derive(Debug, Clone, Copy)]
pub struct Corrections<'a> {
    /// Raw voxel coordinates of the 2K rows (the sampler's `raw_coords`).
    pub coords: &'a [[usize; 3]],
    /// Whether each row is real (padding rows are never written).
    pub valid: &'a [bool],
    /// Logit correction per row.
    pub delta: &'a [f32],
    /// Shift per row in voxels, `(z, y, x)` triples, or `None`.
    pub shift: Option<&'a [f32]>,
}

/// The voxel a row lands on: `c + shift`, rounded half away from zero, clamped per axis.
pub fn target_voxel(c: [usize; 3], shift: [f32; 3], dims: [usize; 3]) -> [usize; 3] {
    let mut out = [0usize; 3];
    for a in 0..3 {
        // f32::round rounds half away from zero, as D7 asks.
        let v = (c[a] as f32 + shift[a]).round();
        let hi = dims[a].saturating_sub(1) as f32;
        out[a] = v.clamp(0.0, hi) as usize;
    }
    out
}

/// Neighbour offsets and weights of the splat (just `([0,0,0], 1.0)` for radius 0).
pub fn splat_kernel(radius: usize) -> Vec<([isize; 3], f32)> {
    if radius == 0 {
        return vec![([0, 0, 0], 1.0)];
    }
    let r = radius as isize;
    let sigma = radius as f32 / 2.0;
    let mut k = Vec::new();
    for dz in -r..=r {
        for dy in -r..=r {
            for dx in -r..=r {
                let d2 = (dz * dz + dy * dy + dx * dx) as f32;
                if d2 <= (radius * radius) as f32 {
                    k.push(([dz, dy, dx], (-d2 / (2.0 * sigma * sigma)).exp()));
                }
            }
        }
    }
    k
}

/// The voxel each real row lands on, as `(row, voxel)` in row order (padding rows skipped).
pub fn targets(c: &Corrections<'_>, dims: [usize; 3]) -> Vec<(usize, [usize; 3])> {
    let n = c.coords.len().min(c.valid.len()).min(c.delta.len());
    (0..n)
        .filter(|&i| c.valid[i])
        .map(|i| {
            let s = match c.shift {
                Some(s) if s.len() >= 3 * (i + 1) => [s[3 * i], s[3 * i + 1], s[3 * i + 2]],
                _ => [0.0; 3],
            };
            (i, target_voxel(c.coords[i], s, dims))
        })
        .collect()
}

/// Adds the corrections to `logits` (raster order, shape `dims`) and returns the voxels that
/// received a centre write (one entry per valid row, in row order; repeated on collisions).
/// Rows beyond the shortest of `coords`, `valid`, `delta` are ignored.
pub fn write_back(
    logits: &mut [f32],
    dims: [usize; 3],
    c: &Corrections<'_>,
    splat_radius: usize,
) -> Vec<[usize; 3]> {
    let kernel = splat_kernel(splat_radius);
    let rows = targets(c, dims);
    for &(i, t) in &rows {
        for &(u, w) in &kernel {
            let mut idx = 0usize;
            let mut inside = true;
            for a in 0..3 {
                let v = t[a] as isize + u[a];
                if v < 0 || v >= dims[a] as isize {
                    inside = false;
                    break;
                }
                idx = idx * dims[a] + v as usize;
            }
            if inside && let Some(l) = logits.get_mut(idx) {
                *l += w * c.delta[i];
            }
        }
    }
    rows.into_iter().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_away_from_zero_and_clamped() {
        let d = [4, 4, 4];
        assert_eq!(target_voxel([1, 1, 1], [0.5, -0.5, 0.49], d), [2, 1, 1]);
        // 1 − 0.5 = 0.5 → 1 (away from zero), 1 − 0.51 = 0.49 → 0.
        assert_eq!(target_voxel([1, 1, 1], [-0.5, -0.51, 0.0], d), [1, 0, 1]);
        assert_eq!(target_voxel([0, 3, 3], [-1.0, 1.0, 0.9], d), [0, 3, 3]);
    }

    #[test]
    fn kernel_is_one_at_centre_and_gaussian() {
        assert_eq!(splat_kernel(0), vec![([0, 0, 0], 1.0)]);
        let k = splat_kernel(1);
        // Centre + 6 face neighbours (‖u‖ = 1 ≤ 1); edges (√2) are outside.
        assert_eq!(k.len(), 7);
        let centre = k.iter().find(|(u, _)| *u == [0, 0, 0]).map(|p| p.1);
        assert_eq!(centre, Some(1.0));
        // σ = 0.5: exp(−1 / 0.5) = e^−2.
        for (u, w) in &k {
            if *u != [0, 0, 0] {
                assert!((w - (-2.0f32).exp()).abs() < 1e-7);
            }
        }
        assert_eq!(splat_kernel(2).len(), 33); // lattice points in a ball of radius 2
    }

    #[test]
    fn padding_is_skipped_collisions_add_and_splat_stays_inside() {
        let dims = [2, 2, 3];
        let mut l = vec![0.0f32; 12];
        let coords = [[0, 0, 0], [0, 0, 0], [1, 1, 2], [1, 1, 1]];
        let valid = [true, true, true, false];
        let delta = [1.0, 2.0, -4.0, 100.0];
        let w = write_back(
            &mut l,
            dims,
            &Corrections {
                coords: &coords,
                valid: &valid,
                delta: &delta,
                shift: None,
            },
            0,
        );
        assert_eq!(w, vec![[0, 0, 0], [0, 0, 0], [1, 1, 2]]);
        let mut want = vec![0.0f32; 12];
        want[0] = 3.0;
        want[11] = -4.0;
        assert_eq!(l, want);
        // Radius 1 at the corner: centre + 3 neighbours inside.
        let mut l = vec![0.0f32; 12];
        write_back(
            &mut l,
            dims,
            &Corrections {
                coords: &coords[..1],
                valid: &valid[..1],
                delta: &[1.0],
                shift: None,
            },
            1,
        );
        let e2 = (-2.0f32).exp();
        assert_eq!(l[0], 1.0);
        assert_eq!((l[1], l[3], l[6]), (e2, e2, e2));
        assert_eq!(l.iter().filter(|v| **v != 0.0).count(), 4);
    }
}
