use segvol_kernels::{MatMut, MatRef, matmul, softmax_rows_in_place};
use std::time::Instant;
fn main() {
    let (rows, nk, d) = (256usize, 2048usize, 64usize);
    let q = vec![0.01f32; rows * d];
    let kt = vec![0.02f32; d * nk];
    let v = vec![0.03f32; nk * d];
    let mut s = vec![0.0f32; rows * nk];
    let mut o = vec![0.0f32; rows * d];
    let it = 20;
    let t = Instant::now();
    for _ in 0..it {
        matmul(
            MatMut::row_major(&mut s, rows, nk).unwrap(),
            false,
            MatRef::row_major(&q, rows, d).unwrap(),
            MatRef::row_major(&kt, d, nk).unwrap(),
            0.1,
            1,
        )
        .unwrap();
    }
    println!(
        "scores {:.3} ms",
        t.elapsed().as_secs_f64() * 1e3 / it as f64
    );
    let t = Instant::now();
    for _ in 0..it {
        softmax_rows_in_place(&mut s, nk);
    }
    println!(
        "softmax {:.3} ms",
        t.elapsed().as_secs_f64() * 1e3 / it as f64
    );
    let t = Instant::now();
    for _ in 0..it {
        matmul(
            MatMut::row_major(&mut o, rows, d).unwrap(),
            false,
            MatRef::row_major(&s, rows, nk).unwrap(),
            MatRef::row_major(&v, nk, d).unwrap(),
            1.0,
            1,
        )
        .unwrap();
    }
    println!("pv {:.3} ms", t.elapsed().as_secs_f64() * 1e3 / it as f64);
    let mut x: Vec<f32> = (0..rows * nk).map(|i| i as f32 * 1e-6).collect();
    let t = Instant::now();
    for _ in 0..it {
        for v in x.iter_mut() {
            *v = segvol_kernels::math::exp(*v);
        }
    }
    println!(
        "plain exp loop {:.3} ms",
        t.elapsed().as_secs_f64() * 1e3 / it as f64
    );
}
