//! Bounding boxes of masks: the preprocessing's foreground crop (`pipeline.rs`) and the zoom-in's
//! ROI (`zoom.rs`) both use them, so they live in a module below both.

/// Bounding box `[lo, hi]` (inclusive) of the set voxels of a mask, `None` when empty.
pub fn mask_box(mask: &[bool], dims: [usize; 3]) -> Option<([usize; 3], [usize; 3])> {
    box_where(mask, dims, |m| m)
}

/// Bounding box `[lo, hi]` (inclusive) of the voxels where `keep` holds, `None` when none
/// does. Row by row: only a row's first and last such voxel are looked for.
pub fn box_where<T: Copy>(
    data: &[T],
    dims: [usize; 3],
    keep: impl Fn(T) -> bool,
) -> Option<([usize; 3], [usize; 3])> {
    if dims[2] == 0 {
        return None;
    }
    let nx = dims[2];
    box_of_rows(data.len() / nx, dims, |r| {
        let row = &data[r * nx..(r + 1) * nx];
        let first = row.iter().position(|&v| keep(v))?;
        Some((first, row.iter().rposition(|&v| keep(v)).unwrap_or(first)))
    })
}

/// Bounding box `[lo, hi]` (inclusive) from each of `n_rows` x-rows' extent: `extent(r)` is
/// the first and last x of row `r` (`r = z·H + y`) that belongs, or `None` for a row with none.
/// The walk over rows every box of the workspace shares ([`box_where`], the interactive
/// session's `diff_box`).
pub fn box_of_rows(
    n_rows: usize,
    dims: [usize; 3],
    mut extent: impl FnMut(usize) -> Option<(usize, usize)>,
) -> Option<([usize; 3], [usize; 3])> {
    let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
    let mut any = false;
    if dims[1] == 0 {
        return None;
    }
    for r in 0..n_rows {
        let Some((first, last)) = extent(r) else {
            continue;
        };
        let (z, y) = (r / dims[1], r % dims[1]);
        lo = [lo[0].min(z), lo[1].min(y), lo[2].min(first)];
        hi = [hi[0].max(z), hi[1].max(y), hi[2].max(last)];
        any = true;
    }
    any.then_some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_box_is_inclusive() {
        let mut m = vec![false; 2 * 3 * 4];
        m[(3) + 4] = true; // (0,1,3)
        m[(12 + 8) + 1] = true; // (1,2,1)
        assert_eq!(mask_box(&m, [2, 3, 4]), Some(([0, 1, 1], [1, 2, 3])));
        assert_eq!(mask_box(&[false; 4], [1, 2, 2]), None);
    }

    #[test]
    fn box_where_takes_the_predicate_and_empty_rows_are_nothing() {
        // 1×2×3: values 0 1 0 / 0 0 5; `> 0` keeps (0,0,1) and (0,1,2).
        let v = [0u8, 1, 0, 0, 0, 5];
        assert_eq!(
            box_where(&v, [1, 2, 3], |x| x > 0),
            Some(([0, 0, 1], [0, 1, 2]))
        );
        assert_eq!(box_where(&v, [1, 2, 3], |x| x > 5), None);
        assert_eq!(box_where::<u8>(&[], [0, 0, 0], |x| x > 0), None);
    }
}
