//! Dinomaly's training step on plain f32 buffers, for the CPU: the forward pass keeps what the
//! backward pass needs, and the backward pass is written out by hand as GEMM calls plus fused
//! element-wise passes, without candle's autograd graph. [`super::network::forward`] with
//! [`super::loss::hard_mined_loss`] is the reference it is tested against (values and every
//! weight's gradient) and stays the path on other devices.

mod attention;
mod math;
mod ops;

use std::collections::BTreeMap;

use candle_core::Tensor;

use super::config::DinomalyConfig;
use super::fused;
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

/// What one decoder block keeps for its backward pass.
struct BlockSaved {
    input: Vec<f32>,
    norm1: Vec<f32>,
    qkv: Vec<f32>,
    attention: attention::Saved,
    mixed: Vec<f32>,
    after_attention: Vec<f32>,
    norm2: Vec<f32>,
    hidden_pre: Vec<f32>,
    hidden_cdf: Vec<f32>,
    hidden: Vec<f32>,
}

/// Gradients by weight name.
pub(crate) type Grads = BTreeMap<String, Vec<f32>>;

/// The loss of one training batch and the gradient of every weight, as row-major values.
///
/// # Errors
/// Missing weights or a backend failure reading the targets.
pub(crate) fn loss_and_grads(
    config: &DinomalyConfig,
    weights: &BTreeMap<String, Vec<f32>>,
    batch: &Batch<'_>,
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
    let mut input = targets[0].clone();
    for t in &targets[1..] {
        ops::add_in_place(&mut input, t);
    }
    let groups = targets.len() as f32;
    input.iter_mut().for_each(|v| *v /= groups);
    if let Some(m) = masks {
        ops::mul_in_place(&mut input, &m.input);
    }
    let bottleneck_pre = ops::linear(
        &input,
        params.get("bottleneck.0.fc1.weight")?,
        params.get("bottleneck.0.fc1.bias")?,
        rows,
    );
    let (mut bottleneck_hidden, bottleneck_cdf) = ops::gelu(&bottleneck_pre);
    if let Some(m) = masks {
        ops::mul_in_place(&mut bottleneck_hidden, &m.hidden);
    }
    let mut x = ops::linear(
        &bottleneck_hidden,
        params.get("bottleneck.0.fc2.weight")?,
        params.get("bottleneck.0.fc2.bias")?,
        rows,
    );
    if let Some(m) = masks {
        ops::mul_in_place(&mut x, &m.output);
    }

    let depth = config.decoder_depth;
    let mut saved = Vec::with_capacity(depth);
    let mut outputs = Vec::with_capacity(depth);
    for i in 0..depth {
        let (next, block) = block_forward(&params, &format!("decoder.{i}"), x, dims, eps)?;
        outputs.push(next.clone());
        saved.push(block);
        x = next;
    }

    // Groups average their blocks' outputs, last blocks first (see `network::forward`).
    let per_group = depth / config.n_groups;
    let group_of = |block: usize| (depth - 1 - block) / per_group;
    let mut reconstructions = vec![vec![0f32; rows * c]; config.n_groups];
    for (block, out) in outputs.iter().enumerate() {
        ops::add_in_place(&mut reconstructions[group_of(block)], out);
    }
    for r in &mut reconstructions {
        r.iter_mut().for_each(|v| *v /= per_group as f32);
    }
    drop(outputs);

    let (loss, d_recon) = loss_and_output_grads(&targets, &reconstructions, (b, n, c), batch);

    // Backward through the blocks, last first; each block's output also feeds its group.
    let mut grads = Grads::new();
    let mut dx = vec![0f32; rows * c];
    for i in (0..depth).rev() {
        let share = &d_recon[group_of(i)];
        dx.iter_mut().zip(share).for_each(|(g, s)| *g += s / per_group as f32);
        let block = saved.pop().ok_or_else(|| Error::Empty { what: "saved blocks".into() })?;
        dx = block_backward(&params, &format!("decoder.{i}"), &block, dx, dims, eps, &mut grads)?;
    }

    // Backward through the bottleneck (its input needs no gradient).
    if let Some(m) = masks {
        ops::mul_in_place(&mut dx, &m.output);
    }
    let fc2 = params.get("bottleneck.0.fc2.weight")?;
    let (d_hidden, dw, db) = ops::linear_backward(&bottleneck_hidden, fc2, &dx, rows, true);
    grads.insert("bottleneck.0.fc2.weight".into(), dw);
    grads.insert("bottleneck.0.fc2.bias".into(), db);
    let mut d_hidden = d_hidden.unwrap_or_default();
    if let Some(m) = masks {
        ops::mul_in_place(&mut d_hidden, &m.hidden);
    }
    ops::gelu_backward_in_place(&mut d_hidden, &bottleneck_pre, &bottleneck_cdf);
    let fc1 = params.get("bottleneck.0.fc1.weight")?;
    let (_, dw, db) = ops::linear_backward(&input, fc1, &d_hidden, rows, false);
    grads.insert("bottleneck.0.fc1.weight".into(), dw);
    grads.insert("bottleneck.0.fc1.bias".into(), db);

    Ok((loss, grads))
}

/// One decoder block: `x + attn(norm1(x))`, then `+ mlp(norm2(·))`.
fn block_forward(
    params: &Params<'_>,
    p: &str,
    x: Vec<f32>,
    dims: attention::Dims,
    eps: f64,
) -> Result<(Vec<f32>, BlockSaved)> {
    let rows = dims.batch * dims.tokens;
    let layer_norm = |x: &[f32], which: &str| -> Result<Vec<f32>> {
        let mut y = vec![0f32; x.len()];
        let (w, b) = (
            params.get(&format!("{p}.{which}.weight"))?,
            params.get(&format!("{p}.{which}.bias"))?,
        );
        fused::forward_rows(x, w, b, eps, &mut y);
        Ok(y)
    };
    let linear = |x: &[f32], which: &str| -> Result<Vec<f32>> {
        let w = params.get(&format!("{p}.{which}.weight"))?;
        Ok(ops::linear(x, w, params.get(&format!("{p}.{which}.bias"))?, rows))
    };
    let norm1 = layer_norm(&x, "norm1")?;
    let qkv = linear(&norm1, "attn.qkv")?;
    let (mixed, attention) = attention::forward(&qkv, dims);
    let mut after_attention = linear(&mixed, "attn.proj")?;
    ops::add_in_place(&mut after_attention, &x);
    let norm2 = layer_norm(&after_attention, "norm2")?;
    let hidden_pre = linear(&norm2, "mlp.fc1")?;
    let (hidden, hidden_cdf) = ops::gelu(&hidden_pre);
    let mut out = linear(&hidden, "mlp.fc2")?;
    ops::add_in_place(&mut out, &after_attention);
    let saved = BlockSaved {
        input: x,
        norm1,
        qkv,
        attention,
        mixed,
        after_attention,
        norm2,
        hidden_pre,
        hidden_cdf,
        hidden,
    };
    Ok((out, saved))
}

/// The gradient with respect to a block's input from the gradient `d_out` of its output; the
/// block's weight gradients go to `grads`.
fn block_backward(
    params: &Params<'_>,
    p: &str,
    s: &BlockSaved,
    d_out: Vec<f32>,
    dims: attention::Dims,
    eps: f64,
    grads: &mut Grads,
) -> Result<Vec<f32>> {
    let rows = dims.batch * dims.tokens;
    let mut linear_back = |x: &[f32], dy: &[f32], which: &str| -> Result<Vec<f32>> {
        let w = params.get(&format!("{p}.{which}.weight"))?;
        let (dx, dw, db) = ops::linear_backward(x, w, dy, rows, true);
        grads.insert(format!("{p}.{which}.weight"), dw);
        grads.insert(format!("{p}.{which}.bias"), db);
        Ok(dx.unwrap_or_default())
    };
    // MLP branch.
    let mut d_hidden = linear_back(&s.hidden, &d_out, "mlp.fc2")?;
    ops::gelu_backward_in_place(&mut d_hidden, &s.hidden_pre, &s.hidden_cdf);
    let d_norm2 = linear_back(&s.norm2, &d_hidden, "mlp.fc1")?;
    // Attention branch.
    let mut d_after = d_out;
    let (dw2, db2) =
        layer_norm_back(params, p, "norm2", &s.after_attention, &d_norm2, eps, &mut d_after)?;
    let d_mixed = linear_back(&s.mixed, &d_after, "attn.proj")?;
    let d_qkv = attention::backward(&s.qkv, &s.mixed, &d_mixed, &s.attention, dims);
    let d_norm1 = linear_back(&s.norm1, &d_qkv, "attn.qkv")?;
    let mut d_input = d_after;
    let (dw1, db1) = layer_norm_back(params, p, "norm1", &s.input, &d_norm1, eps, &mut d_input)?;
    grads.insert(format!("{p}.norm2.weight"), dw2);
    grads.insert(format!("{p}.norm2.bias"), db2);
    grads.insert(format!("{p}.norm1.weight"), dw1);
    grads.insert(format!("{p}.norm1.bias"), db1);
    Ok(d_input)
}

/// Adds the layer norm `which`'s input gradient (for input `x` and output gradient `g`) to
/// `dx_acc` and returns its weight and bias gradients.
fn layer_norm_back(
    params: &Params<'_>,
    p: &str,
    which: &str,
    x: &[f32],
    g: &[f32],
    eps: f64,
    dx_acc: &mut [f32],
) -> Result<(Vec<f32>, Vec<f32>)> {
    let w = params.get(&format!("{p}.{which}.weight"))?;
    let mut dx = vec![0f32; x.len()];
    let grads = fused::backward_rows(x, w, g, eps, &mut dx);
    ops::add_in_place(dx_acc, &dx);
    Ok(grads)
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
