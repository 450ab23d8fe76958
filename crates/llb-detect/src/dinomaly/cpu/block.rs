//! One decoder block, forward and backward: `x + attn(norm1(x))`, then `+ mlp(norm2(·))`.

use super::attention::{self, Dims};
use super::buffers::Buffers;
use super::{Grads, Params, ops};
use crate::Result;
use crate::dinomaly::fused;

/// What one decoder block keeps for its backward pass.
pub(super) struct Saved {
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

/// Decoder block `prefix` (e.g. `decoder.3`) of the weights `params`.
pub(super) struct Block<'a> {
    pub(super) params: &'a Params<'a>,
    pub(super) prefix: String,
    pub(super) dims: Dims,
    pub(super) eps: f64,
}

impl Block<'_> {
    fn weight(&self, which: &str, kind: &str) -> Result<&[f32]> {
        self.params.get(&format!("{}.{which}.{kind}", self.prefix))
    }

    fn rows(&self) -> usize {
        self.dims.batch * self.dims.tokens
    }

    /// The block on `x`: its output and what its backward pass needs.
    pub(super) fn forward(&self, x: Vec<f32>, buffers: &mut Buffers) -> Result<(Vec<f32>, Saved)> {
        let layer_norm = |x: &[f32], which: &str, buffers: &mut Buffers| -> Result<Vec<f32>> {
            let mut y = buffers.take(x.len());
            let (w, b) = (self.weight(which, "weight")?, self.weight(which, "bias")?);
            fused::forward_rows(x, w, b, self.eps, &mut y);
            Ok(y)
        };
        let linear = |x: &[f32], which: &str, buffers: &mut Buffers| -> Result<Vec<f32>> {
            let (w, b) = (self.weight(which, "weight")?, self.weight(which, "bias")?);
            Ok(ops::linear(x, w, b, self.rows(), buffers))
        };
        let norm1 = layer_norm(&x, "norm1", buffers)?;
        let qkv = linear(&norm1, "attn.qkv", buffers)?;
        let (mixed, attention) = attention::forward(&qkv, self.dims, buffers);
        let mut after_attention = linear(&mixed, "attn.proj", buffers)?;
        ops::add_in_place(&mut after_attention, &x);
        let norm2 = layer_norm(&after_attention, "norm2", buffers)?;
        let hidden_pre = linear(&norm2, "mlp.fc1", buffers)?;
        let (hidden, hidden_cdf) = ops::gelu(&hidden_pre, buffers);
        let mut out = linear(&hidden, "mlp.fc2", buffers)?;
        ops::add_in_place(&mut out, &after_attention);
        let saved = Saved {
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

    /// The gradient with respect to the block's input from the gradient `d_out` of its output;
    /// the weight gradients go to `grads`, the saved buffers back to `buffers`.
    pub(super) fn backward(
        &self,
        s: Saved,
        d_out: Vec<f32>,
        grads: &mut Grads,
        buffers: &mut Buffers,
    ) -> Result<Vec<f32>> {
        let mut linear_back =
            |x: &[f32], dy: &[f32], which: &str, buffers: &mut Buffers| -> Result<Vec<f32>> {
                let w = self.weight(which, "weight")?;
                let (dx, dw, db) = ops::linear_backward(x, w, dy, self.rows(), true, buffers);
                grads.insert(format!("{}.{which}.weight", self.prefix), dw);
                grads.insert(format!("{}.{which}.bias", self.prefix), db);
                Ok(dx.unwrap_or_default())
            };
        // MLP branch; the residual passes `d_out` on unchanged, and the layer norm's input
        // gradient is added to it.
        let mut d_hidden = linear_back(&s.hidden, &d_out, "mlp.fc2", buffers)?;
        ops::gelu_backward_in_place(&mut d_hidden, &s.hidden_pre, &s.hidden_cdf);
        let d_norm2 = linear_back(&s.norm2, &d_hidden, "mlp.fc1", buffers)?;
        buffers.give(d_hidden);
        let mut d_after = d_out;
        let norm2 =
            self.layer_norm_back("norm2", &s.after_attention, d_norm2, &mut d_after, buffers)?;
        // Attention branch, the same way.
        let d_mixed = linear_back(&s.mixed, &d_after, "attn.proj", buffers)?;
        let d_qkv =
            attention::backward(&s.qkv, &s.mixed, &d_mixed, &s.attention, self.dims, buffers);
        buffers.give(d_mixed);
        let d_norm1 = linear_back(&s.norm1, &d_qkv, "attn.qkv", buffers)?;
        buffers.give(d_qkv);
        let mut d_input = d_after;
        let norm1 = self.layer_norm_back("norm1", &s.input, d_norm1, &mut d_input, buffers)?;
        for (which, (dw, db)) in [("norm2", norm2), ("norm1", norm1)] {
            grads.insert(format!("{}.{which}.weight", self.prefix), dw);
            grads.insert(format!("{}.{which}.bias", self.prefix), db);
        }
        s.give_back(buffers);
        Ok(d_input)
    }

    /// Adds the layer norm `which`'s input gradient (for input `x` and output gradient `g`) to
    /// `dx_acc` and returns its weight and bias gradients.
    fn layer_norm_back(
        &self,
        which: &str,
        x: &[f32],
        g: Vec<f32>,
        dx_acc: &mut [f32],
        buffers: &mut Buffers,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let w = self.weight(which, "weight")?;
        let mut dx = buffers.take(x.len());
        let grads = fused::backward_rows(x, w, &g, self.eps, &mut dx);
        ops::add_in_place(dx_acc, &dx);
        buffers.give(dx);
        buffers.give(g);
        Ok(grads)
    }
}

impl Saved {
    fn give_back(self, buffers: &mut Buffers) {
        self.attention.give_back(buffers);
        let all = [
            self.input,
            self.norm1,
            self.qkv,
            self.mixed,
            self.after_attention,
            self.norm2,
            self.hidden_pre,
            self.hidden_cdf,
            self.hidden,
        ];
        for buffer in all {
            buffers.give(buffer);
        }
    }
}
