//! `product`, `matmul_uninit` and `filled_pieces`: products written into memory that was not
//! zeroed first. Against a naive f64 product, and bit for bit against `matmul` into a zeroed
//! buffer (what the kernels did before, so their results do not move).
#![allow(clippy::unwrap_used)]

mod common;

use std::mem::MaybeUninit;

use common::{assert_close, rand_vec};
use proptest::prelude::*;
use segvol_kernels::{MatMut, MatRef, filled_pieces, matmul, matmul_uninit, product};

fn naive(a: MatRef<'_>, b: MatRef<'_>, scale: f64) -> Vec<f64> {
    let ([m, k], [_, n]) = (a.dims(), b.dims());
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = scale
                * (0..k)
                    .map(|p| a.at(i, p) as f64 * b.at(p, j) as f64)
                    .sum::<f64>();
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn product_matches_naive_and_zeroed_matmul(m in 0usize..70, k in 0usize..40, n in 0usize..70,
                                               ta in any::<bool>(), tb in any::<bool>(),
                                               threads in 0usize..3) {
        let a_data = rand_vec(m * k + 2, 11);
        let b_data = rand_vec(k * n + 1, 12);
        let a = if ta {
            MatRef::new(&a_data, 2, [k, m], [m, 1]).unwrap().t()
        } else {
            MatRef::new(&a_data, 2, [m, k], [k, 1]).unwrap()
        };
        let b = if tb {
            MatRef::new(&b_data, 1, [n, k], [k, 1]).unwrap().t()
        } else {
            MatRef::new(&b_data, 1, [k, n], [n, 1]).unwrap()
        };
        let got = product(a, b, 0.75, threads).unwrap();
        prop_assert_eq!(got.len(), m * n);
        assert_close(&got, &naive(a, b, 0.75), 1e-5, "product");
        let mut zeroed = vec![0.0f32; m * n];
        matmul(MatMut::row_major(&mut zeroed, m, n).unwrap(), false, a, b, 0.75, threads).unwrap();
        prop_assert!(got.iter().zip(&zeroed).all(|(x, y)| x.to_bits() == y.to_bits()),
            "product differs from matmul into zeros");
    }
}

/// Memory that held other values first (a buffer of NaN freed and reused is likely, not sure):
/// `matmul_uninit` must overwrite all of it, whatever was there.
#[test]
fn matmul_uninit_overwrites_every_element() {
    let (m, k, n) = (37, 19, 53);
    let a_data = rand_vec(m * k, 13);
    let b_data = rand_vec(k * n, 14);
    let (a, b) = (
        MatRef::row_major(&a_data, m, k).unwrap(),
        MatRef::row_major(&b_data, k, n).unwrap(),
    );
    let mut buf: Vec<MaybeUninit<f32>> = (0..m * n).map(|_| MaybeUninit::new(f32::NAN)).collect();
    let got = matmul_uninit(&mut buf, a, b, 1.0, 1).unwrap();
    assert!(got.iter().all(|v| v.is_finite()));
    assert_close(got, &naive(a, b, 1.0), 1e-5, "matmul_uninit");
    // k = 0: zeros, not what was there.
    let mut buf: Vec<MaybeUninit<f32>> = (0..6).map(|_| MaybeUninit::new(f32::NAN)).collect();
    let empty: [f32; 0] = [];
    let got = matmul_uninit(
        &mut buf,
        MatRef::row_major(&empty, 2, 0).unwrap(),
        MatRef::row_major(&empty, 0, 3).unwrap(),
        1.0,
        1,
    )
    .unwrap();
    assert_eq!(got, &[0.0; 6]);
    // A destination of the wrong size is an error, not a write past it.
    let mut small: Vec<MaybeUninit<f32>> = (0..m * n - 1).map(|_| MaybeUninit::uninit()).collect();
    assert!(matmul_uninit(&mut small, a, b, 1.0, 1).is_err());
}

/// Pieces of different lengths (one empty), each a product of its own, in place and in order;
/// the values come back in piece order.
#[test]
fn filled_pieces_puts_each_piece_at_its_place() {
    let k = 7;
    let rows = [5usize, 0, 12, 1, 9];
    let n = 11;
    let b_data = rand_vec(k * n, 15);
    let b = MatRef::row_major(&b_data, k, n).unwrap();
    let a_data: Vec<Vec<f32>> = rows
        .iter()
        .enumerate()
        .map(|(i, &r)| rand_vec(r * k, 20 + i as u64))
        .collect();
    let lens: Vec<usize> = rows.iter().map(|r| r * n).collect();
    let (buf, values) = filled_pieces(&lens, |i, dst| {
        let a = MatRef::row_major(&a_data[i], rows[i], k)?;
        Ok((matmul_uninit(dst, a, b, 2.0, 1)?, i * 10))
    })
    .unwrap();
    assert_eq!(values, vec![0, 10, 20, 30, 40]);
    let mut want = Vec::new();
    for (i, &r) in rows.iter().enumerate() {
        want.extend(naive(MatRef::row_major(&a_data[i], r, k).unwrap(), b, 2.0));
    }
    assert_close(&buf, &want, 1e-5, "filled_pieces");
}

/// A `fill` that hands back other memory than its piece (a shorter part of it, or a buffer of
/// its own) is an error: the buffer is not assumed written.
#[test]
fn filled_pieces_refuses_other_memory() {
    let a_data = rand_vec(8, 16);
    let a = MatRef::row_major(&a_data, 4, 2).unwrap();
    let b = MatRef::row_major(&a_data, 2, 4).unwrap();
    let shorter = filled_pieces(&[16, 16], |i, dst| {
        let s = matmul_uninit(dst, a, b, 1.0, 1)?;
        Ok(if i == 1 { (&mut s[1..], ()) } else { (s, ()) })
    });
    assert!(shorter.is_err());
    let elsewhere = filled_pieces(&[16], |_, _dst| {
        let own: &'static mut [f32] = vec![0.0f32; 16].leak();
        Ok((own, ()))
    });
    assert!(elsewhere.is_err());
    // A fill's own error comes back as it is.
    let failing = filled_pieces(&[4], |_, dst| {
        matmul_uninit(dst, a, b, 1.0, 1).map(|s| (s, ()))
    });
    assert!(failing.is_err(), "4 elements cannot hold a 4×4 product");
}
