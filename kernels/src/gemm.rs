//! A safe, bounds-checked face for the `gemm` crate's raw-pointer matrix product.
//!
//! `gemm::gemm` takes pointers and strides; these views check, once per call, that every
//! element a stride can reach lies inside its slice and that the destination's elements do not
//! overlap (the product may write them from several threads). With [`matmul_uninit`],
//! [`product`] and [`filled_pieces`] it writes a new buffer without zeroing it first. This file
//! holds the crate's `unsafe` code (besides two `mallopt` calls in `lib.rs`).

use std::mem::MaybeUninit;

use rayon::prelude::*;

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
    let dst_ptr = dst.data[dst.offset..].as_mut_ptr();
    // SAFETY: `MatMut::new` checked that every element the strides reach (indices below rows
    // and cols) lies inside its slice and that they are distinct; the shapes agree (checked
    // above); `dst` is a unique borrow, so it aliases neither operand.
    #[allow(unsafe_code)]
    unsafe {
        gemm_call(
            dst_ptr,
            [dst.row_stride, dst.col_stride],
            accumulate,
            a,
            b,
            scale,
            threads,
        )
    }
}

/// The one call into `gemm::gemm`: `dst ← (read_dst ? dst : 0) + scale·a·b`, `dst` at
/// `dst_ptr` with strides `[row, col]`, the operands' shapes agreeing and `k > 0`.
///
/// # Safety
/// `dst_ptr` with those strides must address `a.rows × b.cols` distinct elements, valid for
/// writes (and initialised, when `read_dst`), aliasing neither operand, for the whole call.
/// The operands are `MatRef`s, whose elements lie inside their slices. With `read_dst =
/// false` gemm writes every element without reading any (its contract: the old contents and
/// `alpha` are ignored).
#[allow(unsafe_code)]
unsafe fn gemm_call(
    dst_ptr: *mut f32,
    [drs, dcs]: [usize; 2],
    read_dst: bool,
    a: MatRef<'_>,
    b: MatRef<'_>,
    scale: f32,
    threads: usize,
) -> Result<(), KernelError> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let parallelism = match threads {
        1 => gemm::Parallelism::None,
        t => gemm::Parallelism::Rayon(t),
    };
    let stride = |s: usize| isize::try_from(s).map_err(|_| KernelError::Shape("stride too large"));
    let (drs, dcs) = (stride(drs)?, stride(dcs)?);
    let (ars, acs) = (stride(a.row_stride)?, stride(a.col_stride)?);
    let (brs, bcs) = (stride(b.row_stride)?, stride(b.col_stride)?);
    let a_ptr = a.data[a.offset..].as_ptr();
    let b_ptr = b.data[b.offset..].as_ptr();
    // SAFETY: the caller's promises for `dst`; the operands' elements lie inside their slices
    // (`MatRef::new`), and the pointers stay valid for the call, which does not keep them.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst_ptr,
            dcs,
            drs,
            read_dst,
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

/// `dst ← scale · a·b` where `dst` is *uninitialised* memory for the dense row-major
/// `[a.rows, b.cols]` result (exactly that many elements): the product writes every element and
/// reads none, so nothing has to be zeroed first. Returns the same memory, initialised.
///
/// Zeroing a fresh buffer that a product then overwrites is a whole extra pass over it: `perf`
/// put 6 % of a training step's CPU in `memset` (glibc's `calloc` must clear reused heap
/// memory), most of it for buffers that a product filled right after.
pub fn matmul_uninit<'d>(
    dst: &'d mut [MaybeUninit<f32>],
    a: MatRef<'_>,
    b: MatRef<'_>,
    scale: f32,
    threads: usize,
) -> Result<&'d mut [f32], KernelError> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k || m.checked_mul(n) != Some(dst.len()) {
        return Err(KernelError::Shape("matmul_uninit: dimensions do not agree"));
    }
    if k == 0 || dst.is_empty() {
        // The product of empty operands is zero (and gemm would read their pointers).
        for v in dst.iter_mut() {
            v.write(0.0);
        }
    } else {
        // SAFETY: `dst` holds exactly m·n elements, dense row-major (strides n and 1), unique
        // (a `&mut` borrow, so it aliases neither operand); `MaybeUninit<f32>` has the layout
        // of `f32`; with `read_dst = false` nothing is read before it is written.
        #[allow(unsafe_code)]
        unsafe {
            gemm_call(
                dst.as_mut_ptr().cast::<f32>(),
                [n, 1],
                false,
                a,
                b,
                scale,
                threads,
            )?;
        }
    }
    // SAFETY: every element of `dst` was written above (by gemm, or by the loop for k = 0).
    #[allow(unsafe_code)]
    Ok(unsafe { assume_init(dst) })
}

/// `dst` viewed as the `[f32]` it now holds.
///
/// # Safety
/// Every element of `dst` must be initialised. (`[MaybeUninit<f32>]` has the layout of `[f32]`.)
#[allow(unsafe_code)]
unsafe fn assume_init(dst: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: the caller's promise, and the two slice types have the same layout.
    unsafe { &mut *(std::ptr::from_mut::<[MaybeUninit<f32>]>(dst) as *mut [f32]) }
}

/// `scale · a·b` as a new dense row-major `[a.rows, b.cols]` buffer, not zeroed first
/// ([`matmul_uninit`]).
pub fn product(
    a: MatRef<'_>,
    b: MatRef<'_>,
    scale: f32,
    threads: usize,
) -> Result<Vec<f32>, KernelError> {
    let len = a
        .rows
        .checked_mul(b.cols)
        .ok_or(KernelError::Shape("product: size overflows usize"))?;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let written = matmul_uninit(&mut out.spare_capacity_mut()[..len], a, b, scale, threads)?.len();
    // SAFETY: `matmul_uninit` initialised the first `len` (= `written`) elements of the spare
    // capacity.
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(written)
    };
    Ok(out)
}

/// A new buffer made of consecutive pieces of the given lengths, each filled in parallel by
/// `fill(i, piece)` from uninitialised memory (e.g. with [`matmul_uninit`]), which returns the
/// same piece initialised along with a value of its own; returns the buffer and those values
/// in piece order. Errors with `fill`'s first error, or if a `fill` returns other memory than
/// the piece it was given (then nothing is assumed written).
pub fn filled_pieces<T, F>(lens: &[usize], fill: F) -> Result<(Vec<f32>, Vec<T>), KernelError>
where
    T: Send,
    F: for<'p> Fn(usize, &'p mut [MaybeUninit<f32>]) -> Result<(&'p mut [f32], T), KernelError>
        + Sync,
{
    let total = lens
        .iter()
        .try_fold(0usize, |s, &l| s.checked_add(l))
        .ok_or(KernelError::Shape("filled_pieces: size overflows usize"))?;
    let mut buf: Box<[MaybeUninit<f32>]> = Box::new_uninit_slice(total);
    let mut pieces: Vec<&mut [MaybeUninit<f32>]> = Vec::with_capacity(lens.len());
    let mut rest: &mut [MaybeUninit<f32>] = &mut buf;
    for &l in lens {
        let (piece, tail) = rest.split_at_mut(l);
        pieces.push(piece);
        rest = tail;
    }
    let values = pieces
        .into_par_iter()
        .enumerate()
        .map(|(i, piece)| {
            let (ptr, len) = (piece.as_ptr().cast::<f32>(), piece.len());
            let (done, value) = fill(i, piece)?;
            if !std::ptr::eq(done.as_ptr(), ptr) || done.len() != len {
                return Err(KernelError::Shape(
                    "filled_pieces: a piece came back as other memory",
                ));
            }
            Ok(value)
        })
        .collect::<Result<Vec<T>, KernelError>>()?;
    // SAFETY: the pieces partition `buf`, and each `fill` returned a `&mut [f32]` over exactly
    // its piece (same start, same length; checked above). Safe code can only make such a
    // reference from initialised memory, so every element is initialised.
    #[allow(unsafe_code)]
    let out = unsafe { buf.assume_init() };
    Ok((out.into_vec(), values))
}

/// `src` copied into the uninitialised `dst` (same length), returned initialised: what
/// `<[MaybeUninit<f32>]>::write_copy_of_slice` does since Rust 1.93, for this workspace's
/// MSRV 1.92.
///
/// # Panics
/// If the lengths differ (a caller's bug, as with `copy_from_slice`).
pub(crate) fn write_copy<'d>(dst: &'d mut [MaybeUninit<f32>], src: &[f32]) -> &'d mut [f32] {
    assert_eq!(dst.len(), src.len(), "write_copy: lengths differ");
    // SAFETY: equal lengths (asserted); `dst` is a unique borrow, so the two do not overlap;
    // `MaybeUninit<f32>` has the layout of `f32`. After the copy every element of `dst` is
    // initialised. (A `copy`, i.e. glibc's `memcpy`, not an element loop, which compiles to
    // the baseline target's 16-byte moves.)
    #[allow(unsafe_code)]
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<f32>(), src.len());
        assume_init(dst)
    }
}
