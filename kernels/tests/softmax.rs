//! `softmax_rows_in_place` against softmax written out in f64, for short rows (fewer than 16
//! scores: the block path) and long ones (the per-row path); a trailing part row is left as
//! it is on both.
#![allow(clippy::unwrap_used)]

mod common;

use common::{assert_close, rand_vec};
use segvol_kernels::softmax_rows_in_place;

#[test]
fn rows_match_f64_and_a_part_row_is_untouched() {
    for cols in [1usize, 3, 9, 15, 16, 40] {
        let rows = 150; // more than one 64-row block of short rows
        // A part row of cols − 1 scores after the whole ones (none when a row is one score).
        let mut s: Vec<f32> = rand_vec(rows * cols + cols - 1, cols as u64)
            .iter()
            .map(|v| 8.0 * v)
            .collect();
        let original = s.clone();
        softmax_rows_in_place(&mut s, cols);
        let mut want = Vec::with_capacity(rows * cols);
        for row in original[..rows * cols].chunks_exact(cols) {
            let m = row.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
            let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
            let z: f64 = e.iter().sum();
            want.extend(e.iter().map(|v| v / z));
        }
        assert_close(
            &s[..rows * cols],
            &want,
            1e-6,
            &format!("softmax, {cols} columns"),
        );
        assert_eq!(
            s[rows * cols..],
            original[rows * cols..],
            "{cols} columns: the part row after the last whole row"
        );
    }
}
