//! Dinomaly's training step on plain f32 buffers, for the CPU: the forward pass keeps what the
//! backward pass needs, and the backward pass is written out by hand as GEMM calls plus fused
//! element-wise passes, without candle's autograd graph. [`super::network::forward`] with
//! [`super::loss::hard_mined_loss`] is the reference it is tested against (values and every
//! weight's gradient) and stays the path on other devices.

mod attention;
mod block;
mod buffers;
mod ops;

pub(crate) use buffers::Buffers;

use std::collections::BTreeMap;

use candle_core::Tensor;

use super::config::DinomalyConfig;
use super::loss::easy_weights;
use crate::{Error, Result};

/// Multiplicative dropout masks (already scaled by `1 / (1 − p)`), row-major like the tokens.
pub(crate) struct MaskValues {
    pub(crate) input: Vec<f32>,
    pub(crate) hidden: Vec<f32>,
    pub(crate) output: Vec<f32>,
}

/// One batch: per loose-reconstruction group, the encoder targets `[B, N, C]`.
pub(crate) struct Batch<'a> {
    pub(crate) targets: &'a [Tensor],
    pub(crate) masks: Option<&'a MaskValues>,
    pub(crate) easy_fraction: f64,
    pub(crate) easy_grad_factor: f64,
}

/// Read access to the weights as f32 slices.
struct Params<'a>(&'a BTreeMap<String, Vec<f32>>);

impl Params<'_> {
    fn get(&self, name: &str) -> Result<&[f32]> {
        self.0.get(name).map(Vec::as_slice).ok_or_else(|| Error::Shape {
            what: format!("weight {name}"),
            expected: "present".into(),
            got: vec![],
        })
    }
}

/// Gradients by weight name.
pub(crate) type Grads = BTreeMap<String, Vec<f32>>;

/// The loss of one training batch and the gradient of every weight, as row-major values; every
/// buffer comes from and (except the gradients) goes back to `buffers`.
///
/// # Errors
/// Missing weights or a backend failure reading the targets.
pub(crate) fn loss_and_grads(
    config: &DinomalyConfig,
    weights: &BTreeMap<String, Vec<f32>>,
    batch: &Batch<'_>,
    buffers: &mut Buffers,
) -> Result<(f32, Grads)> {
    let (b, n, c) = batch.targets[0].dims3()?;
    let rows = b * n;
    let dims = attention::Dims { batch: b, tokens: n, channels: c, head_dim: config.head_dim };
    let params = Params(weights);
    let targets: Vec<Vec<f32>> = batch
        .targets
        .iter()
        .map(|t| Ok(t.flatten_all()?.to_vec1::<f32>()?))
        .collect::<Result<_>>()?;
    let eps = config.layer_norm_eps;
    let masks = batch.masks;

    // Bottleneck: the mean of the group targets, dropout, fc1, GELU, dropout, fc2, dropout.
    let mut input = buffers.take(rows * c);
    input.copy_from_slice(&targets[0]);
    for t in &targets[1..] {
        ops::add_in_place(&mut input, t);
    }
    let groups = targets.len() as f32;
    input.iter_mut().for_each(|v| *v /= groups);
    if let Some(m) = masks {
        ops::mul_in_place(&mut input, &m.input);
    }
    let (fc1, fc1_bias) =
        (params.get("bottleneck.0.fc1.weight")?, params.get("bottleneck.0.fc1.bias")?);
    let (fc2, fc2_bias) =
        (params.get("bottleneck.0.fc2.weight")?, params.get("bottleneck.0.fc2.bias")?);
    let bottleneck_pre = ops::linear(&input, fc1, fc1_bias, rows, buffers);
    let (mut bottleneck_hidden, bottleneck_cdf) = ops::gelu(&bottleneck_pre, buffers);
    if let Some(m) = masks {
        ops::mul_in_place(&mut bottleneck_hidden, &m.hidden);
    }
    let mut x = ops::linear(&bottleneck_hidden, fc2, fc2_bias, rows, buffers);
    if let Some(m) = masks {
        ops::mul_in_place(&mut x, &m.output);
    }

    // The blocks; each block's output also joins its group's reconstruction, the mean of the
    // group's blocks, last blocks first (see `network::forward`).
    let depth = config.decoder_depth;
    let per_group = depth / config.n_groups;
    let group_of = |block: usize| (depth - 1 - block) / per_group;
    let blocks: Vec<block::Block<'_>> = (0..depth)
        .map(|i| block::Block { params: &params, prefix: format!("decoder.{i}"), dims, eps })
        .collect();
    let mut reconstructions: Vec<Vec<f32>> =
        (0..config.n_groups).map(|_| buffers.zeroed(rows * c)).collect();
    let mut saved = Vec::with_capacity(depth);
    for (i, block) in blocks.iter().enumerate() {
        let (next, kept) = block.forward(x, buffers)?;
        ops::add_in_place(&mut reconstructions[group_of(i)], &next);
        saved.push(kept);
        x = next;
    }
    buffers.give(x);
    for r in &mut reconstructions {
        r.iter_mut().for_each(|v| *v /= per_group as f32);
    }

    let (loss, d_recon) = loss_and_output_grads(&targets, &reconstructions, (b, n, c), batch);
    for r in reconstructions {
        buffers.give(r);
    }

    // Backward through the blocks, last first.
    let mut grads = Grads::new();
    let mut dx = buffers.zeroed(rows * c);
    for (i, block) in blocks.iter().enumerate().rev() {
        let share = &d_recon[group_of(i)];
        dx.iter_mut().zip(share).for_each(|(g, s)| *g += s / per_group as f32);
        let kept = saved.pop().ok_or_else(|| Error::Empty { what: "saved blocks".into() })?;
        dx = block.backward(kept, dx, &mut grads, buffers)?;
    }

    // Backward through the bottleneck (its input needs no gradient).
    if let Some(m) = masks {
        ops::mul_in_place(&mut dx, &m.output);
    }
    let (d_hidden, dw, db) =
        ops::linear_backward(&bottleneck_hidden, fc2, &dx, rows, true, buffers);
    grads.insert("bottleneck.0.fc2.weight".into(), dw);
    grads.insert("bottleneck.0.fc2.bias".into(), db);
    let mut d_hidden = d_hidden.unwrap_or_default();
    if let Some(m) = masks {
        ops::mul_in_place(&mut d_hidden, &m.hidden);
    }
    ops::gelu_backward_in_place(&mut d_hidden, &bottleneck_pre, &bottleneck_cdf);
    let (_, dw, db) = ops::linear_backward(&input, fc1, &d_hidden, rows, false, buffers);
    grads.insert("bottleneck.0.fc1.weight".into(), dw);
    grads.insert("bottleneck.0.fc1.bias".into(), db);
    for buffer in [dx, d_hidden, input, bottleneck_pre, bottleneck_cdf, bottleneck_hidden] {
        buffers.give(buffer);
    }
    Ok((loss, grads))
}

/// Squared-norm floor, as [`super::loss`]'s.
const NORM_EPS_SQ: f64 = 1e-16;

/// The hard-mined loss (see [`super::loss::hard_mined_loss`]) and its gradient with respect to
/// every group's reconstruction.
fn loss_and_output_grads(
    targets: &[Vec<f32>],
    outputs: &[Vec<f32>],
    (b, n, c): (usize, usize, usize),
    batch: &Batch<'_>,
) -> (f32, Vec<Vec<f32>>) {
    let groups = targets.len();
    let mut total = 0f64;
    let mut grads = Vec::with_capacity(groups);
    for (e, d) in targets.iter().zip(outputs) {
        let distances: Vec<f32> = e
            .chunks(c)
            .zip(d.chunks(c))
            .map(|(e, d)| {
                let (dot, ne, nd) = dot_and_norms(e, d);
                (1.0 - dot / (ne * nd)) as f32
            })
            .collect();
        let weights = easy_weights(&distances, batch.easy_fraction, batch.easy_grad_factor);
        let mut grad = vec![0f32; e.len()];
        let scale = 1.0 / (groups * b) as f64;
        for img in 0..b {
            let span = img * n * c..(img + 1) * n * c;
            let (dot, ne, nd) = dot_and_norms(&e[span.clone()], &d[span.clone()]);
            let cos = dot / (ne * nd);
            total += (1.0 - cos) * scale;
            // d(1 − cos)/dd = −(e / (‖e‖‖d‖) − cos · d / ‖d‖²).
            let (a, bb) = (1.0 / (ne * nd), cos / (nd * nd));
            for t in 0..n {
                let w = weights.as_ref().map_or(1.0, |w| f64::from(w[img * n + t]));
                for j in 0..c {
                    let i = (img * n + t) * c + j;
                    grad[i] = (-scale * w * (a * f64::from(e[i]) - bb * f64::from(d[i]))) as f32;
                }
            }
        }
        grads.push(grad);
    }
    (total as f32, grads)
}

/// `(a·b, ‖a‖, ‖b‖)` with the norms floored as the loss floors them, in f64.
fn dot_and_norms(a: &[f32], b: &[f32]) -> (f64, f64, f64) {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    (dot, (na + NORM_EPS_SQ).sqrt(), (nb + NORM_EPS_SQ).sqrt())
}

#[cfg(test)]
mod tests;
