//! A fused CPU layer norm with a hand-written backward, for Dinomaly's training step.
//!
//! Written from candle primitives, one layer norm records nine autograd nodes, each with its
//! own temporaries (and, in the backward pass, a zeroed gradient buffer per node); on two cores
//! that element-wise traffic cost more than the matrix products of the decoder. This op is one
//! node: the forward writes `y = (x − μ)·rstd·w + b` row by row, the backward computes
//! `dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))` with `ĝ = g·w`, and `dw = Σ g·x̂`, `db = Σ g` over
//! rows, in parallel over blocks of rows. Non-CPU tensors and other dtypes take the primitive
//! path, so results agree across devices up to rounding.

use candle_core::{CpuStorage, CustomOp3, D, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::Result;

/// Rows per parallel work item.
const ROWS_PER_TASK: usize = 64;

/// Layer norm over the last dimension of `x` with scale `w` and shift `b`.
pub(crate) fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        let x = x.contiguous()?;
        return Ok(x.apply_op3(&w.contiguous()?, &b.contiguous()?, LayerNorm { eps })?);
    }
    layer_norm_primitive(x, w, b, eps)
}

/// The same layer norm from differentiable candle primitives (any device, any float dtype).
pub(crate) fn layer_norm_primitive(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(normed.broadcast_mul(w)?.broadcast_add(b)?)
}

struct LayerNorm {
    eps: f64,
}

/// Borrows the contiguous f32 values of a CPU storage.
fn values<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((start, end))) => Ok(&v[start..end]),
        _ => Err(candle_core::Error::Msg("fused layer norm needs contiguous f32".into())),
    }
}

/// The contiguous f32 values of a CPU tensor, copied.
fn tensor_values(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// Mean and `1/sqrt(var + eps)` of one row.
#[inline]
fn moments(row: &[f32], eps: f64) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps as f32).sqrt())
}

/// `y = (x − μ)·rstd·w + b` for every row of `x` (row length `w.len()`), in parallel.
pub(crate) fn forward_rows(x: &[f32], w: &[f32], b: &[f32], eps: f64, y: &mut [f32]) {
    let dim = w.len();
    y.par_chunks_mut(dim * ROWS_PER_TASK).zip(x.par_chunks(dim * ROWS_PER_TASK)).for_each(
        |(y, x)| {
            for (y, x) in y.chunks_mut(dim).zip(x.chunks(dim)) {
                let (mean, rstd) = moments(x, eps);
                for (((y, x), w), b) in y.iter_mut().zip(x).zip(w).zip(b) {
                    *y = (x - mean) * rstd * w + b;
                }
            }
        },
    );
}

/// The layer norm's backward for every row: writes `dx` for the output gradient `g` and
/// returns `(dw, db)`. Per-block partial sums are collected in block order and added
/// sequentially, so the result does not depend on how rayon schedules the blocks
/// (bit-identical reruns).
pub(crate) fn backward_rows(
    x: &[f32],
    w: &[f32],
    g: &[f32],
    eps: f64,
    dx: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let dim = w.len();
    let step = dim * ROWS_PER_TASK;
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(step)
        .zip(x.par_chunks(step).zip(g.par_chunks(step)))
        .map(|(dx, (x, g))| {
            let (mut dw, mut db) = (vec![0f32; dim], vec![0f32; dim]);
            for ((dx, x), g) in dx.chunks_mut(dim).zip(x.chunks(dim)).zip(g.chunks(dim)) {
                let (mean, rstd) = moments(x, eps);
                let (mut sum_g, mut sum_gx) = (0f32, 0f32);
                for i in 0..dim {
                    let xhat = (x[i] - mean) * rstd;
                    let gw = g[i] * w[i];
                    sum_g += gw;
                    sum_gx += gw * xhat;
                    dw[i] += g[i] * xhat;
                    db[i] += g[i];
                }
                let (mean_g, mean_gx) = (sum_g / dim as f32, sum_gx / dim as f32);
                for i in 0..dim {
                    let xhat = (x[i] - mean) * rstd;
                    dx[i] = rstd * (g[i] * w[i] - mean_g - xhat * mean_gx);
                }
            }
            (dw, db)
        })
        .collect();
    let (mut dw, mut db) = (vec![0f32; dim], vec![0f32; dim]);
    for (pw, pb) in &partials {
        dw.iter_mut().zip(pw).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
    }
    (dw, db)
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "llb-dinomaly-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, w, b) = (values(s1, l1)?, values(s2, l2)?, values(s3, l3)?);
        let dim = w.len();
        if dim == 0 || b.len() != dim || l1.dims().last() != Some(&dim) {
            return Err(candle_core::Error::Msg(format!(
                "layer norm over {:?} with weight {} and bias {}",
                l1.dims(),
                w.len(),
                b.len()
            )));
        }
        let mut y = vec![0f32; x.len()];
        forward_rows(x, w, b, self.eps, &mut y);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dim = w.dim(0)?;
        let (xs, ws, gs) = (tensor_values(x)?, tensor_values(w)?, tensor_values(grad)?);
        let mut dx = vec![0f32; xs.len()];
        let (dw, db) = backward_rows(&xs, &ws, &gs, self.eps, &mut dx);
        let device = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), device)?),
            Some(Tensor::from_vec(dw, dim, device)?),
            Some(Tensor::from_vec(db, dim, device)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Values and all three gradients of the fused op match the primitive composition.
    #[test]
    fn fused_layer_norm_matches_the_primitive_one_with_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let seq = |n: usize, a: f64, c: f64| -> Result<Tensor> {
            let t = Tensor::arange(0u32, n as u32, &dev)?.to_dtype(DType::F32)?;
            Ok(((t * a)?.sin()? * c)?)
        };
        let x = Var::from_tensor(&seq(3 * 5 * 24, 0.37, 2.0)?.reshape((3, 5, 24))?)?;
        let w = Var::from_tensor(&(seq(24, 0.9, 0.5)? + 1.0)?)?;
        let b = Var::from_tensor(&seq(24, 1.3, 0.2)?)?;
        // A loss that weights every output differently, so every gradient term matters.
        let weights = seq(3 * 5 * 24, 0.11, 1.0)?.reshape((3, 5, 24))?;
        let run =
            |f: fn(&Tensor, &Tensor, &Tensor, f64) -> Result<Tensor>| -> Result<Vec<Vec<f32>>> {
                let y = f(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-6)?;
                let grads = (&y * &weights)?.sum_all()?.backward()?;
                let mut out = vec![y.flatten_all()?.to_vec1::<f32>()?];
                for v in [&x, &w, &b] {
                    let g = grads.get(v.as_tensor()).expect("gradient recorded");
                    out.push(g.flatten_all()?.to_vec1::<f32>()?);
                }
                Ok(out)
            };
        let fused = run(layer_norm)?;
        let primitive = run(layer_norm_primitive)?;
        for (what, (a, b)) in ["y", "dx", "dw", "db"].iter().zip(fused.iter().zip(&primitive)) {
            let err = a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            let scale = b.iter().map(|v| v.abs()).fold(0f32, f32::max);
            assert!(err <= 1e-5 * scale.max(1.0), "{what}: max error {err} (scale {scale})");
        }
        Ok(())
    }
}
