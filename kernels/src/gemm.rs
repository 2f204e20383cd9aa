//! A safe, bounds-checked face for the `gemm` crate's raw-pointer matrix product.
//!
//! `gemm::gemm` takes pointers and strides; these views check, once per call, that every
//! element a stride can reach lies inside its slice and that the destination's elements do not
//! overlap (the product may write them from several threads). This is the crate's only
//! `unsafe` code.

use crate::KernelError;

/// A read-only `rows × cols` matrix inside a slice: element `(i, j)` is
/// `data[offset + i·row_stride + j·col_stride]`. Transposing is swapping the strides; no copy.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    offset: usize,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// A writable `rows × cols` matrix inside a slice; its elements must not overlap.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    offset: usize,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// The largest index a view touches, or `None` for an empty view; errors on overflow.
fn last_index(
    offset: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
) -> Result<Option<usize>, KernelError> {
    if rows == 0 || cols == 0 {
        return Ok(None);
    }
    (rows - 1)
        .checked_mul(rs)
        .and_then(|a| (cols - 1).checked_mul(cs).and_then(|b| a.checked_add(b)))
        .and_then(|a| a.checked_add(offset))
        .map(Some)
        .ok_or(KernelError::Shape("matrix view overflows usize"))
}

/// Errors unless every element of the view lies below `len`.
fn check_inside(
    len: usize,
    offset: usize,
    [rows, cols]: [usize; 2],
    [rs, cs]: [usize; 2],
) -> Result<(), KernelError> {
    match last_index(offset, rows, cols, rs, cs)? {
        Some(last) if last >= len => Err(KernelError::Shape("matrix view reaches past its slice")),
        _ => Ok(()),
    }
}

impl<'a> MatRef<'a> {
    /// A strided view; errors if an element lies outside `data`.
    pub fn new(
        data: &'a [f32],
        offset: usize,
        [rows, cols]: [usize; 2],
        [row_stride, col_stride]: [usize; 2],
    ) -> Result<Self, KernelError> {
        check_inside(data.len(), offset, [rows, cols], [row_stride, col_stride])?;
        Ok(MatRef {
            data,
            offset,
            rows,
            cols,
            row_stride,
            col_stride,
        })
    }

    /// A dense row-major `rows × cols` matrix at the start of `data`.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Result<Self, KernelError> {
        Self::new(data, 0, [rows, cols], [cols, 1])
    }

    /// The transpose (a view with the strides swapped).
    pub fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// `[rows, cols]`.
    pub fn dims(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }

    /// The `rows × cols` block whose first element is `(r0, c0)` (a view; errors if it does
    /// not lie inside this matrix).
    pub fn sub(self, [r0, c0]: [usize; 2], [rows, cols]: [usize; 2]) -> Result<Self, KernelError> {
        if r0 + rows > self.rows || c0 + cols > self.cols {
            return Err(KernelError::Shape("sub-matrix outside its matrix"));
        }
        Self::new(
            self.data,
            self.offset + r0 * self.row_stride + c0 * self.col_stride,
            [rows, cols],
            [self.row_stride, self.col_stride],
        )
    }

    /// Row `i` as a slice when the row's elements are adjacent (`col_stride` 1 or one column);
    /// `None` otherwise or when `i` is out of range.
    pub fn row(&self, i: usize) -> Option<&'a [f32]> {
        if i >= self.rows || (self.col_stride != 1 && self.cols > 1) {
            return None;
        }
        self.data
            .get(self.offset + i * self.row_stride..)?
            .get(..self.cols)
    }

    /// Element `(i, j)` (tests and small reference code).
    pub fn at(&self, i: usize, j: usize) -> f32 {
        self.data[self.offset + i * self.row_stride + j * self.col_stride]
    }
}

impl<'a> MatMut<'a> {
    /// A strided writable view; errors if an element lies outside `data` or if two elements
    /// share a place (it must be row-major with `row_stride ≥ cols` or column-major with
    /// `col_stride ≥ rows`).
    pub fn new(
        data: &'a mut [f32],
        offset: usize,
        [rows, cols]: [usize; 2],
        [row_stride, col_stride]: [usize; 2],
    ) -> Result<Self, KernelError> {
        check_inside(data.len(), offset, [rows, cols], [row_stride, col_stride])?;
        let disjoint = rows <= 1 && (cols <= 1 || col_stride >= 1)
            || cols <= 1 && row_stride >= 1
            || col_stride == 1 && row_stride >= cols
            || row_stride == 1 && col_stride >= rows;
        if !disjoint {
            return Err(KernelError::Shape("destination elements overlap"));
        }
        Ok(MatMut {
            data,
            offset,
            rows,
            cols,
            row_stride,
            col_stride,
        })
    }

    /// A dense row-major `rows × cols` matrix at the start of `data`.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Result<Self, KernelError> {
        Self::new(data, 0, [rows, cols], [cols, 1])
    }
}

/// Threads for one product: all of rayon's above ~192³ multiply-adds (burn-flex's threshold),
/// one below, where splitting costs more than it saves.
pub fn auto_threads(m: usize, n: usize, k: usize) -> usize {
    if m.saturating_mul(n).saturating_mul(k) >= 192 * 192 * 192 {
        0
    } else {
        1
    }
}

/// `dst ← (accumulate ? dst : 0) + scale · a·b`, with `threads` threads (0 = rayon's pool, 1 =
/// this thread only).
pub fn matmul(
    dst: MatMut<'_>,
    accumulate: bool,
    a: MatRef<'_>,
    b: MatRef<'_>,
    scale: f32,
    threads: usize,
) -> Result<(), KernelError> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k || dst.rows != m || dst.cols != n {
        return Err(KernelError::Shape("matmul: dimensions do not agree"));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        // gemm would read the empty operands' pointers; the product is zero.
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst.data[dst.offset + i * dst.row_stride + j * dst.col_stride] = 0.0;
                }
            }
        }
        return Ok(());
    }
    let parallelism = match threads {
        1 => gemm::Parallelism::None,
        t => gemm::Parallelism::Rayon(t),
    };
    let stride = |s: usize| isize::try_from(s).map_err(|_| KernelError::Shape("stride too large"));
    let (drs, dcs) = (stride(dst.row_stride)?, stride(dst.col_stride)?);
    let (ars, acs) = (stride(a.row_stride)?, stride(a.col_stride)?);
    let (brs, bcs) = (stride(b.row_stride)?, stride(b.col_stride)?);
    let dst_ptr = dst.data[dst.offset..].as_mut_ptr();
    let a_ptr = a.data[a.offset..].as_ptr();
    let b_ptr = b.data[b.offset..].as_ptr();
    // SAFETY: `MatRef::new` / `MatMut::new` checked that every element the strides reach
    // (indices below rows and cols) lies inside its slice and that the destination's elements
    // are distinct; the shapes agree (checked above); `dst` is a unique borrow, so it aliases
    // neither operand; the pointers stay valid for the call, which does not keep them.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst_ptr,
            dcs,
            drs,
            accumulate,
            a_ptr,
            acs,
            ars,
            b_ptr,
            bcs,
            brs,
            1.0f32,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}
