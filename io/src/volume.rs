//! The in-memory volume type shared by every segvol-rs crate.

/// A 3-D volume: data in (z, y, x) C order, its voxel spacing and its place in the world.
///
/// - `data[(z * dims[1] + y) * dims[2] + x]` is voxel `(z, y, x)`; NIfTI's voxel `(i, j, k)` is
///   `(x, y, z)` here, so the NIfTI payload (i fastest) *is* this order and no transpose happens.
/// - `spacing` is in millimetres in the same (z, y, x) order as the axes.
/// - `affine` maps the NIfTI voxel column `(i, j, k, 1) = (x, y, z, 1)` to world millimetres
///   (NIfTI's sform, else its qform, else the spacing on the diagonal), exactly as
///   `nibabel.load(f).affine` does.
/// - `header` keeps the NIfTI header the volume was read from, so a mask written back overlays
///   the image exactly (qform and sform codes, quaternions, units, description).
///
/// # Examples
/// ```
/// use segvol_io::Volume;
/// let v = Volume::new(vec![0u8; 2 * 3 * 4], [2, 3, 4], [3.0, 1.5, 1.5])?;
/// assert_eq!(v.index(1, 2, 3), 23);
/// assert_eq!(v.affine[0][0], 1.5); // x spacing on the diagonal
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Volume<T> {
    /// Voxels in (z, y, x) C order.
    pub data: Vec<T>,
    /// Shape `[z, y, x]`.
    pub dims: [usize; 3],
    /// Voxel size in mm, `[z, y, x]`.
    pub spacing: [f64; 3],
    /// Voxel `(x, y, z, 1)` → world mm (row-major 4×4).
    pub affine: [[f64; 4]; 4],
    /// The NIfTI header this volume came from, if any.
    pub header: Option<Box<nifti::NiftiHeader>>,
}

/// A `dims`/`data` length disagreement, from [`Volume::new`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("volume of shape {dims:?} needs {expected} voxels, got {got}")]
pub struct ShapeError {
    /// The shape asked for.
    pub dims: [usize; 3],
    /// `dims` multiplied out.
    pub expected: usize,
    /// The data length given.
    pub got: usize,
}

/// The affine of an axis-aligned grid with this (z, y, x) spacing and no offset.
pub fn diagonal_affine(spacing: [f64; 3]) -> [[f64; 4]; 4] {
    [
        [spacing[2], 0.0, 0.0, 0.0],
        [0.0, spacing[1], 0.0, 0.0],
        [0.0, 0.0, spacing[0], 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

impl<T> Volume<T> {
    /// A volume with an axis-aligned affine (spacing on the diagonal) and no header.
    ///
    /// # Errors
    /// [`ShapeError`] when `data.len()` is not `dims[0] * dims[1] * dims[2]`.
    pub fn new(data: Vec<T>, dims: [usize; 3], spacing: [f64; 3]) -> Result<Self, ShapeError> {
        let expected = dims.iter().product::<usize>();
        if data.len() != expected {
            return Err(ShapeError {
                dims,
                expected,
                got: data.len(),
            });
        }
        Ok(Volume {
            data,
            dims,
            spacing,
            affine: diagonal_affine(spacing),
            header: None,
        })
    }

    /// Number of voxels.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the volume has no voxels.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Raster index of voxel (z, y, x).
    #[inline]
    pub fn index(&self, z: usize, y: usize, x: usize) -> usize {
        (z * self.dims[1] + y) * self.dims[2] + x
    }

    /// Voxel (z, y, x), or `None` outside the volume.
    pub fn get(&self, z: usize, y: usize, x: usize) -> Option<&T> {
        if z < self.dims[0] && y < self.dims[1] && x < self.dims[2] {
            self.data.get(self.index(z, y, x))
        } else {
            None
        }
    }

    /// The same geometry (dims, spacing, affine, header) with other voxels.
    ///
    /// # Errors
    /// [`ShapeError`] when `data` has another length.
    pub fn with_data<U>(&self, data: Vec<U>) -> Result<Volume<U>, ShapeError> {
        if data.len() != self.data.len() {
            return Err(ShapeError {
                dims: self.dims,
                expected: self.data.len(),
                got: data.len(),
            });
        }
        Ok(Volume {
            data,
            dims: self.dims,
            spacing: self.spacing,
            affine: self.affine,
            header: self.header.clone(),
        })
    }

    /// Applies `f` to every voxel, keeping the geometry.
    pub fn map<U>(&self, f: impl FnMut(&T) -> U) -> Volume<U> {
        Volume {
            data: self.data.iter().map(f).collect(),
            dims: self.dims,
            spacing: self.spacing,
            affine: self.affine,
            header: self.header.clone(),
        }
    }

    /// Whether `other` lies on the same voxel grid (dims, spacing and affine, to 1e-6 mm).
    pub fn same_grid<U>(&self, other: &Volume<U>) -> bool {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()));
        self.dims == other.dims
            && self
                .spacing
                .iter()
                .zip(&other.spacing)
                .all(|(a, b)| close(*a, *b))
            && self
                .affine
                .iter()
                .flatten()
                .zip(other.affine.iter().flatten())
                .all(|(a, b)| close(*a, *b))
    }
}

impl<T: Copy + PartialOrd> Volume<T> {
    /// Smallest and largest voxel value (NaN values are skipped); `None` when empty.
    pub fn min_max(&self) -> Option<(T, T)> {
        let mut it = self
            .data
            .iter()
            .copied()
            .filter(|v| v.partial_cmp(v).is_some());
        let first = it.next()?;
        Some(it.fold((first, first), |(lo, hi), v| {
            (if v < lo { v } else { lo }, if v > hi { v } else { hi })
        }))
    }
}

impl Volume<u8> {
    /// Voxel count per label value (index = label), trimmed after the largest label present.
    pub fn label_counts(&self) -> Vec<u64> {
        let mut counts = vec![0u64; 256];
        for &v in &self.data {
            counts[v as usize] += 1;
        }
        let last = counts.iter().rposition(|&c| c > 0).map_or(0, |i| i + 1);
        counts.truncate(last);
        counts
    }

    /// The label values present, with their voxel counts, in increasing order (0 included when
    /// present).
    pub fn labels_present(&self) -> Vec<(u8, u64)> {
        self.label_counts()
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(l, c)| (l as u8, *c))
            .collect()
    }
}
