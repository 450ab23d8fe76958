//! Element-wise kernels the ViT spends time in, vectorisable on the CPU: exact-GELU through a
//! rational `erf` approximation, and a last-axis softmax through a polynomial `exp`.
//!
//! candle 0.11's CPU `gelu_erf` calls scalar `libm::erff` per element and its softmax scalar
//! `exp`; on DINOv2-S at 224 px they took about a quarter of a block's time (see the
//! `bench_features` example). On other devices, or for other dtypes, candle's own ops are used.
//! The scalar kernels are `llb_types::fastmath`'s (shared with Dinomaly's CPU training pass).

use crate::Result;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Elements per parallel work item.
const CHUNK: usize = 16 * 1024;

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
