//! Element-wise kernels the ViT spends time in, vectorisable on the CPU: exact-GELU through a
//! rational `erf` approximation, and a last-axis softmax through a polynomial `exp`.
//!
//! candle 0.11's CPU `gelu_erf` calls scalar `libm::erff` per element and its softmax scalar
//! `exp`; on DINOv2-S at 224 px they took about a quarter of a block's time (see the
//! `bench_features` example). On other devices, or for other dtypes, candle's own ops are used.
//! Accuracy (checked in the tests against f64): `erf` within 5e-7 absolute, `exp` within 1e-7
//! relative.

use crate::Result;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Elements per parallel work item.
const CHUNK: usize = 16 * 1024;

/// Plain multiply-adds, not `f32::mul_add`: without the FMA target feature (the x86-64
/// baseline this workspace builds for) `mul_add` is a call to a software `fmaf`, some 30×
/// slower and not vectorised.
///
/// `erf(x)`: the rational approximation `x·P(x²)/Q(x²)` on `[-4, 4]` (clamped outside) used by
/// Eigen's `generic_fast_erf_float`.
#[inline(always)]
fn erf(x: f32) -> f32 {
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

/// `0.5·x·(1 + erf(x/√2))`.
#[inline(always)]
pub(super) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `exp(x)` for `x ≤ 0` (the softmax's shifted logits): Cephes `expf` range reduction and
/// degree-5 polynomial, with the power of two built from the exponent bits.
#[inline(always)]
pub(super) fn exp_nonpositive(x: f32) -> f32 {
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

/// Borrows the contiguous f32 values of a CPU storage.
fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        _ => candle_core::bail!("{op}: expects a contiguous f32 tensor"),
    }
}

struct FastGelu;

impl CustomOp1 for FastGelu {
    fn name(&self) -> &'static str {
        "llb-fast-gelu-erf"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout, self.name())?;
        let mut out = vec![0.0_f32; src.len()];
        out.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(o, i)| super::kernels::gelu_slice(i, o));
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

struct FastSoftmax;

impl CustomOp1 for FastSoftmax {
    fn name(&self) -> &'static str {
        "llb-fast-softmax-last-dim"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout, self.name())?;
        let n = layout.shape().dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0.0_f32; src.len()];
        let rows_per_item = (CHUNK / n).max(1);
        out.par_chunks_mut(rows_per_item * n)
            .zip(src.par_chunks(rows_per_item * n))
            .for_each(|(o, i)| super::kernels::softmax_rows(i, o, n));
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Exact (erf) GELU, `0.5·x·(1 + erf(x/√2))`, element-wise; any shape.
///
/// On the CPU for f32 a vectorisable rational `erf` (absolute error below 5e-7) run in
/// parallel; elsewhere candle's `gelu_erf`.
///
/// # Errors
/// A tensor-backend failure.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        Ok(x.contiguous()?.apply_op1_no_bwd(&FastGelu)?)
    } else {
        Ok(x.gelu_erf()?)
    }
}

/// Softmax over the last axis; any shape and layout.
///
/// On the CPU for f32 a vectorisable polynomial `exp` (relative error below 2e-7) run in
/// parallel over rows; elsewhere `candle_nn::ops::softmax_last_dim`.
///
/// # Errors
/// A tensor-backend failure.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        Ok(x.contiguous()?.apply_op1_no_bwd(&FastSoftmax)?)
    } else {
        Ok(candle_nn::ops::softmax_last_dim(x)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn erf_f64(x: f64) -> f64 {
        // The reference: candle's f64 `erf` (libm).
        Tensor::new(&[x], &Device::Cpu).unwrap().erf().unwrap().to_vec1::<f64>().unwrap()[0]
    }

    #[test]
    fn erf_and_gelu_match_f64() {
        let mut worst: f64 = 0.0;
        for k in -6000..=6000 {
            let x = k as f32 / 1000.0;
            worst = worst.max((f64::from(erf(x)) - erf_f64(f64::from(x))).abs());
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

    #[test]
    fn ops_match_candle_on_tensors() {
        let x = Tensor::randn(0f32, 3.0, (5, 7, 33), &Device::Cpu).unwrap();
        let check = |a: Tensor, b: Tensor, tol: f32, what: &str| {
            let d: f32 = (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(d < tol, "{what}: {d}");
        };
        check(gelu_erf(&x).unwrap(), x.gelu_erf().unwrap(), 2e-6, "gelu");
        check(
            softmax_last_dim(&x).unwrap(),
            candle_nn::ops::softmax_last_dim(&x).unwrap(),
            1e-6,
            "softmax",
        );
        let t = x.transpose(1, 2).unwrap();
        check(
            softmax_last_dim(&t).unwrap(),
            candle_nn::ops::softmax_last_dim(&t.contiguous().unwrap()).unwrap(),
            1e-6,
            "strided",
        );
    }
}
