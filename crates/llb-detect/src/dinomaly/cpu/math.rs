//! Branch-free f32 `exp` and `erf` that the compiler vectorises inside element-wise loops
//! (libm's are scalar calls; in the training step they cost more than the attention GEMMs).

use std::f32::consts::{FRAC_1_SQRT_2, LN_2, LOG2_E};

/// `eˣ` with a relative error below 5e-7 (about 4 ulp) for `x` in `[-87, 88]`; 0 below, `f32::MAX`-ish
/// above (inputs are clamped).
#[inline]
pub(super) fn exp(x: f32) -> f32 {
    // 1.5·2²³: adding and subtracting it rounds to the nearest integer in f32 arithmetic.
    const ROUND: f32 = 12_582_912.0;
    // ln 2 split so that k·LN2_HI is exact for the k that occur.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = LN_2 - LN2_HI;
    let x = x.clamp(-87.0, 88.0);
    let k = (x * LOG2_E + ROUND) - ROUND;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // Taylor to degree 6 on |r| ≤ ln 2 / 2: truncation below 2e-8 relative.
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2ᵏ from the exponent bits; k ∈ [-126, 127] after the clamp.
    p * f32::from_bits(((k as i32 + 127) as u32) << 23)
}

/// `erf(x)` with an absolute error below 1e-6 (Abramowitz & Stegun 7.1.26 with [`exp`]).
#[inline]
pub(super) fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_7, -1.453_152_1, 1.061_405_4];
    let ax = x.abs();
    let t = 1.0 / (1.0 + P * ax);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let y = 1.0 - poly * exp(-ax * ax);
    y.copysign(x)
}

/// `Φ(x) = 0.5·(1 + erf(x/√2))`, the standard normal CDF.
#[inline]
pub(super) fn normal_cdf(x: f32) -> f32 {
    0.5 * (1.0 + erf(x * FRAC_1_SQRT_2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_over_the_range_that_occurs() {
        let mut worst = 0f64;
        for i in -80_000..=80_000 {
            let x = i as f32 * 1e-3;
            let want = f64::from(x).exp();
            worst = worst.max(((f64::from(exp(x)) - want) / want).abs());
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(exp(-200.0), exp(-87.0));
        assert!(exp(-87.0) > 0.0 && exp(0.0) == 1.0);
    }

    #[test]
    fn erf_is_accurate_and_odd() {
        let mut worst = 0f64;
        for i in -60_000..=60_000 {
            let x = i as f32 * 1e-4;
            worst = worst.max((f64::from(erf(x)) - libm::erf(f64::from(x))).abs());
            assert_eq!(erf(x), -erf(-x));
        }
        assert!(worst < 1e-6, "worst absolute error {worst}");
    }
}
