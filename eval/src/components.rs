//! 3-D connected components.

/// Which neighbours touch: faces (6), faces + edges (18), or faces + edges + corners (26).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Connectivity {
    /// `scipy.ndimage.generate_binary_structure(3, 1)`.
    Six,
    /// `generate_binary_structure(3, 2)`.
    Eighteen,
    /// `generate_binary_structure(3, 3)`; the challenge's click simulator uses this.
    TwentySix,
}

impl Connectivity {
    fn offsets(self) -> Vec<[isize; 3]> {
        let mut v = Vec::new();
        for dz in -1isize..=1 {
            for dy in -1isize..=1 {
                for dx in -1isize..=1 {
                    let n = dz.abs() + dy.abs() + dx.abs();
                    let keep = match self {
                        Connectivity::Six => n == 1,
                        Connectivity::Eighteen => n == 1 || n == 2,
                        Connectivity::TwentySix => n >= 1,
                    };
                    if keep {
                        v.push([dz, dy, dx]);
                    }
                }
            }
        }
        v
    }
}

/// Labels the `true` voxels of `mask`: 0 is background, components are numbered 1, 2, … in the
/// raster order of their first voxel (as `cc3d.connected_components` numbers them). Returns the
/// labels and the number of components.
///
/// # Panics
/// When `mask.len()` is not the product of `dims`.
///
/// # Examples
/// ```
/// use segvol_eval::components::{label, Connectivity};
/// // 1×2×3: two diagonal voxels touch with 26- (and 18-) connectivity, not with 6.
/// let m = [true, false, false, false, true, false];
/// assert_eq!(label(&m, [1, 2, 3], Connectivity::TwentySix).1, 1);
/// assert_eq!(label(&m, [1, 2, 3], Connectivity::Six).1, 2);
/// ```
pub fn label(mask: &[bool], dims: [usize; 3], conn: Connectivity) -> (Vec<u32>, usize) {
    assert_eq!(
        mask.len(),
        dims.iter().product::<usize>(),
        "mask/dims mismatch"
    );
    let offsets = conn.offsets();
    let mut labels = vec![0u32; mask.len()];
    let mut next = 0u32;
    let mut stack: Vec<usize> = Vec::new();
    let [d, h, w] = dims;
    // The neighbours' index offsets, for voxels off the volume's faces (no bounds to check).
    let linear: Vec<isize> = offsets
        .iter()
        .map(|o| (o[0] * h as isize + o[1]) * w as isize + o[2])
        .collect();
    for start in 0..mask.len() {
        if !mask[start] || labels[start] != 0 {
            continue;
        }
        next += 1;
        labels[start] = next;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (z, y, x) = (i / (h * w), (i / w) % h, i % w);
            if z > 0 && y > 0 && x > 0 && z + 1 < d && y + 1 < h && x + 1 < w {
                for &o in &linear {
                    let j = i.wrapping_add_signed(o);
                    if mask[j] && labels[j] == 0 {
                        labels[j] = next;
                        stack.push(j);
                    }
                }
                continue;
            }
            for o in &offsets {
                let (nz, ny, nx) = (z as isize + o[0], y as isize + o[1], x as isize + o[2]);
                if nz < 0
                    || ny < 0
                    || nx < 0
                    || nz >= d as isize
                    || ny >= h as isize
                    || nx >= w as isize
                {
                    continue;
                }
                let j = (nz as usize * h + ny as usize) * w + nx as usize;
                if mask[j] && labels[j] == 0 {
                    labels[j] = next;
                    stack.push(j);
                }
            }
        }
    }
    (labels, next as usize)
}

/// The inclusive bounding box `(lo, hi)` (`[z, y, x]`) of the voxels `0..n` of a raster of
/// shape `dims` for which `on` holds; `None` when there are none.
pub(crate) fn voxel_box(
    n: usize,
    dims: [usize; 3],
    on: impl Fn(usize) -> bool,
) -> Option<([usize; 3], [usize; 3])> {
    let [_, h, w] = dims;
    let mut found: Option<([usize; 3], [usize; 3])> = None;
    for i in (0..n).filter(|&i| on(i)) {
        let p = [i / (h * w), (i / w) % h, i % w];
        let (lo, hi) = found.get_or_insert((p, p));
        for ax in 0..3 {
            lo[ax] = lo[ax].min(p[ax]);
            hi[ax] = hi[ax].max(p[ax]);
        }
    }
    found
}

/// The largest component (`true` voxels), ties to the lowest label, i.e. the component whose
/// first voxel comes first in raster order (`np.argmax` of the bincount, as the evaluator
/// does). `None` when `mask` is empty.
pub fn largest_component(mask: &[bool], dims: [usize; 3], conn: Connectivity) -> Option<Vec<bool>> {
    let (labels, n) = label(mask, dims, conn);
    if n == 0 {
        return None;
    }
    let mut sizes = vec![0usize; n + 1];
    for &l in &labels {
        sizes[l as usize] += 1;
    }
    sizes[0] = 0;
    let mut best = 1;
    for l in 2..=n {
        if sizes[l] > sizes[best] {
            best = l;
        }
    }
    Some(labels.iter().map(|&l| l as usize == best).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Union-find over all neighbour pairs: the reference partition.
    fn naive_partition(mask: &[bool], dims: [usize; 3], conn: Connectivity) -> Vec<usize> {
        let n = mask.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(p: &mut [usize], i: usize) -> usize {
            let mut r = i;
            while p[r] != r {
                r = p[r];
            }
            p[i] = r;
            r
        }
        let idx = |i: usize| {
            [
                i / (dims[1] * dims[2]),
                (i / dims[2]) % dims[1],
                i % dims[2],
            ]
        };
        for i in 0..n {
            for j in 0..n {
                if !(mask[i] && mask[j]) {
                    continue;
                }
                let (a, b) = (idx(i), idx(j));
                let dd: Vec<usize> = (0..3).map(|k| a[k].abs_diff(b[k])).collect();
                if dd.iter().any(|&x| x > 1) {
                    continue;
                }
                let s: usize = dd.iter().sum();
                let touch = match conn {
                    Connectivity::Six => s == 1,
                    Connectivity::Eighteen => s == 1 || s == 2,
                    Connectivity::TwentySix => s >= 1,
                };
                if touch {
                    let (ri, rj) = (find(&mut parent, i), find(&mut parent, j));
                    parent[ri.max(rj)] = ri.min(rj);
                }
            }
        }
        (0..n)
            .map(|i| if mask[i] { find(&mut parent, i) + 1 } else { 0 })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn same_partition_and_raster_numbering(
            (dims, mask) in (1usize..5, 1usize..6, 1usize..6).prop_flat_map(|(d, h, w)| {
                (Just([d, h, w]), prop::collection::vec(prop::bool::weighted(0.35), d * h * w))
            }),
            conn in prop_oneof![Just(Connectivity::Six), Just(Connectivity::Eighteen), Just(Connectivity::TwentySix)],
        ) {
            let (labels, n) = label(&mask, dims, conn);
            let roots = naive_partition(&mask, dims, conn);
            // Same partition: equal labels ⇔ equal roots.
            for i in 0..mask.len() {
                for j in 0..mask.len() {
                    if mask[i] && mask[j] {
                        prop_assert_eq!(labels[i] == labels[j], roots[i] == roots[j]);
                    }
                }
            }
            // Raster numbering: first voxels of labels 1..n appear in increasing order.
            let mut seen = 0u32;
            for &l in &labels {
                if l > seen {
                    prop_assert_eq!(l, seen + 1);
                    seen = l;
                }
            }
            prop_assert_eq!(seen as usize, n);
        }
    }

    #[test]
    fn largest_ties_go_to_the_first_in_raster_order() {
        // Two 1-voxel components: the first wins; then a 2-voxel one later wins.
        let m = [true, false, true, false];
        let l = largest_component(&m, [1, 1, 4], Connectivity::Six).unwrap();
        assert_eq!(l, vec![true, false, false, false]);
        let m = [true, false, true, true];
        let l = largest_component(&m, [1, 1, 4], Connectivity::Six).unwrap();
        assert_eq!(l, vec![false, false, true, true]);
        assert!(largest_component(&[false; 4], [1, 1, 4], Connectivity::Six).is_none());
    }
}
