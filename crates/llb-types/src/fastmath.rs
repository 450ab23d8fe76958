//! Branch-free f32 `erf`, the normal CDF, exact GELU and `exp` on `x ≤ 0` that the compiler
//! vectorises inside element-wise loops (libm's are scalar calls): the ViT's CPU kernels
//! (`llb-features`) and Dinomaly's CPU training pass (`llb-detect`) use them. Accuracy (checked
//! in the tests against f64): `erf` within 5e-7 absolute, `exp_nonpositive` within 2e-7
//! relative.

/// Plain multiply-adds, not `f32::mul_add`: without the FMA target feature (the x86-64
/// baseline this workspace builds for) `mul_add` is a call to a software `fmaf`, some 30×
/// slower and not vectorised.
///
/// `erf(x)`: the rational approximation `x·P(x²)/Q(x²)` on `[-4, 4]` (clamped outside) used by
/// Eigen's `generic_fast_erf_float`.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    // Comparisons rather than `clamp`/`max`, whose NaN rules keep LLVM from vectorising.
    #[allow(clippy::manual_clamp, reason = "f32::clamp's NaN handling blocks vectorisation")]
    let x = if x < -4.0 {
        -4.0
    } else if x > 4.0 {
        4.0
    } else {
        x
    };
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_600_1e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_474e-2;
    x * p / q
}

/// `Φ(x) = 0.5·(1 + erf(x/√2))`, the standard normal CDF (GELU's gate, which Dinomaly's
/// backward pass keeps).
#[inline(always)]
pub fn normal_cdf(x: f32) -> f32 {
    0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `x·Φ(x)`: the exact GELU.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    x * normal_cdf(x)
}

/// `exp(x)` for `x ≤ 0` (the softmax's shifted logits): Cephes `expf` range reduction and
/// degree-5 polynomial, with the power of two built from the exponent bits.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding and subtracting it rounds to an integer.
    let x = if x < -87.0 { -87.0 } else { x };
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    // The integer n sits in the low mantissa bits of `shifted` (integer ops vectorise; a
    // saturating float-to-int cast may not).
    let n_int = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let r = n * -0.693_359_4 + x;
    let r = n * 2.121_944_4e-4 + r;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((n_int + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_and_gelu_match_f64() {
        let mut worst: f64 = 0.0;
        for k in -6000..=6000 {
            let x = k as f32 / 1000.0;
            worst = worst.max((f64::from(erf(x)) - libm::erf(f64::from(x))).abs());
        }
        assert!(worst < 5e-7, "erf max abs error {worst}");
    }

    #[test]
    fn exp_matches_f64() {
        let mut worst: f64 = 0.0;
        for k in 0..=87_000 {
            let x = -(k as f32) / 1000.0;
            let want = f64::from(x).exp();
            worst = worst.max((f64::from(exp_nonpositive(x)) - want).abs() / want);
        }
        assert!(worst < 2e-7, "exp max relative error {worst}");
        assert_eq!(exp_nonpositive(-1000.0).min(1e-37), exp_nonpositive(-1000.0));
    }
}
