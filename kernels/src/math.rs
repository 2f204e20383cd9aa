//! `exp` and `erf` written so the compiler can vectorise them (no table, no branch, no libm
//! call): `f32::exp` and `libm::erff` are scalar calls, and softmax over 2048 keys × 2048
//! queries × 12 heads, or GELU over 2048 × 3072 per block, spend most of their time in them.
//! No maintained crate offers a vectorisable f32 `exp`/`erf` on stable Rust (`sleef` needs
//! nightly), hence these ~30 lines. Accuracy is tested against `f64` in `tests`.

/// `e^x` for f32, relative error below 2·10⁻⁷ over the whole range (Cephes' `expf`
/// polynomial after reduction by `n·ln 2`); `0` below −87.3, `+∞` above 88.7 (as `f32::exp`
/// within a few ulps of the edges), NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest without `round()` (a libm call before SSE4.1): add and subtract 1.5·2²³.
    const MAGIC: f32 = 12_582_912.0;
    let xc = x.clamp(-87.336_55, 88.722_83);
    // Products and sums as fused multiply-adds (`mul_add`): one instruction each in the
    // callers' AVX2/AVX-512 versions, where `a * b + c` is two (Rust does not contract them).
    let rounded = xc.mul_add(LOG2E, MAGIC);
    let n = rounded - MAGIC;
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, xc));
    let r2 = r * r;
    let p = 1.987_569_1e-4f32
        .mul_add(r, 1.398_199_9e-3)
        .mul_add(r, 8.333_452e-3)
        .mul_add(r, 4.166_579_6e-2)
        .mul_add(r, 1.666_666_5e-1)
        .mul_add(r, 0.5);
    let y = p.mul_add(r2, r) + 1.0;
    // 2ⁿ from the bits of the rounded sum (its low mantissa bits are n): integer operations
    // only, since a float → int `as` conversion (saturating) would not vectorise. Applied as
    // 2^⌊n/2⌋ · 2^(n−⌊n/2⌋) so that both factors stay normal at the ends of the range.
    let ni = rounded.to_bits() as i32 - MAGIC.to_bits() as i32;
    let n1 = ni >> 1;
    let n2 = ni - n1;
    let s1 = f32::from_bits(((n1 + 127) as u32) << 23);
    let s2 = f32::from_bits(((n2 + 127) as u32) << 23);
    let v = y * s1 * s2;
    let v = if x > 88.722_83 { f32::INFINITY } else { v };
    if x < -87.336_55 { 0.0 } else { v }
}

/// The error function for f32, absolute error below 5·10⁻⁷ (Abramowitz & Stegun 7.1.26, the
/// formula burn-flex used before it switched to libm: 1.5·10⁻⁷ in exact arithmetic, the rest
/// is f32 rounding). In GELU that is a few ulps, below the GEMMs' summation-order noise.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_72,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    let ax = x.abs();
    let t = 1.0 / P.mul_add(ax, 1.0);
    let poly = A[4]
        .mul_add(t, A[3])
        .mul_add(t, A[2])
        .mul_add(t, A[1])
        .mul_add(t, A[0])
        * t;
    let y = (-poly).mul_add(exp(-ax * ax), 1.0);
    y.copysign(x)
}

/// Exact (erf) GELU: `x · ½(1 + erf(x/√2))`, as PyTorch's `gelu(approximate='none')`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_f64_to_two_ulps() {
        let mut x = -87.0f32;
        let mut worst = 0.0f64;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.000_731;
        }
        assert!(worst < 2.5e-7, "worst relative error {worst}");
    }

    #[test]
    fn exp_edges() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(1000.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn erf_matches_f64_reference() {
        // erf(x) in f64 by its Taylor series (converges fast for |x| ≤ 3; beyond, erf = ±1
        // to f32 precision).
        fn erf64(x: f64) -> f64 {
            if x.abs() > 4.0 {
                return x.signum();
            }
            let (mut term, mut sum, mut n) = (x, x, 0.0);
            while term.abs() > 1e-17 * sum.abs().max(1e-300) {
                n += 1.0;
                term *= -x * x / n;
                sum += term / (2.0 * n + 1.0);
                if n > 200.0 {
                    break;
                }
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        }
        let mut worst = 0.0f64;
        let mut x = -6.0f32;
        while x < 6.0 {
            worst = worst.max((erf(x) as f64 - erf64(x as f64)).abs());
            x += 0.001_3;
        }
        assert!(worst < 5e-7, "worst absolute error {worst}");
        assert_eq!(erf(0.0), 0.0);
    }
}
