//! The trainable part of Dinomaly: the noisy bottleneck MLP and the linear-attention decoder.
//!
//! Weights live in a name → tensor map whose keys mirror the official PyTorch state dict
//! (`bottleneck.0.fc1.weight`, `decoder.3.attn.qkv.bias`, ...). Every operation is built from
//! differentiable candle primitives, so the same code serves training (weights are `Var`s) and
//! scoring (plain tensors), on any device.

use std::collections::BTreeMap;

use candle_core::{D, Device, Tensor};

use super::config::{DinomalyConfig, WeightInit};
pub(crate) use super::cpu::MaskValues;
use super::rng::{self, Purpose};
use crate::{Error, Result};

/// Named weights, sorted by name.
pub(crate) type Weights = BTreeMap<String, Tensor>;

/// Multiplicative dropout masks of one iteration, already scaled by `1 / (1 − p)`.
pub(crate) struct DropoutMasks {
    /// On the bottleneck input, `[B, N, C]`.
    pub(crate) input: Tensor,
    /// On the hidden layer, `[B, N, ratio·C]`.
    pub(crate) hidden: Tensor,
    /// On the output, `[B, N, C]`.
    pub(crate) output: Tensor,
}

/// Names and shapes of every weight for `dim` channels, in a fixed order.
pub(crate) fn weight_shapes(config: &DinomalyConfig, dim: usize) -> Vec<(String, Vec<usize>)> {
    let hidden = config.mlp_ratio * dim;
    let mut shapes = vec![
        ("bottleneck.0.fc1.weight".to_string(), vec![hidden, dim]),
        ("bottleneck.0.fc1.bias".to_string(), vec![hidden]),
        ("bottleneck.0.fc2.weight".to_string(), vec![dim, hidden]),
        ("bottleneck.0.fc2.bias".to_string(), vec![dim]),
    ];
    for i in 0..config.decoder_depth {
        let p = format!("decoder.{i}");
        shapes.extend([
            (format!("{p}.norm1.weight"), vec![dim]),
            (format!("{p}.norm1.bias"), vec![dim]),
            (format!("{p}.attn.qkv.weight"), vec![3 * dim, dim]),
            (format!("{p}.attn.qkv.bias"), vec![3 * dim]),
            (format!("{p}.attn.proj.weight"), vec![dim, dim]),
            (format!("{p}.attn.proj.bias"), vec![dim]),
            (format!("{p}.norm2.weight"), vec![dim]),
            (format!("{p}.norm2.bias"), vec![dim]),
            (format!("{p}.mlp.fc1.weight"), vec![hidden, dim]),
            (format!("{p}.mlp.fc1.bias"), vec![hidden]),
            (format!("{p}.mlp.fc2.weight"), vec![dim, hidden]),
            (format!("{p}.mlp.fc2.bias"), vec![dim]),
        ]);
    }
    shapes
}

/// Fresh weights for `dim` channels, drawn from the configuration's seed.
pub(crate) fn init_weights(
    config: &DinomalyConfig,
    dim: usize,
    device: &Device,
) -> Result<Weights> {
    let mut rng = rng::stream(config.seed, Purpose::Init, 0);
    let shapes = weight_shapes(config, dim);
    let mut weights = Weights::new();
    for (name, shape) in &shapes {
        let len: usize = shape.iter().product();
        let is_norm = name.contains(".norm");
        let values: Vec<f32> = if is_norm {
            let one = if name.ends_with(".weight") { 1.0 } else { 0.0 };
            vec![one; len]
        } else {
            // A linear layer's fan-in is its weight's second dimension.
            let weight_name = name.replace(".bias", ".weight");
            let fan_in = shapes.iter().find(|(n, _)| *n == weight_name).map_or(1, |(_, s)| s[1]);
            match (&config.init, name.ends_with(".weight")) {
                (WeightInit::TruncNormal { std, bound }, true) => (0..len)
                    .map(|_| {
                        loop {
                            let x = rng::normal(&mut rng) * std;
                            if x.abs() <= *bound {
                                break x as f32;
                            }
                        }
                    })
                    .collect(),
                (WeightInit::TruncNormal { .. }, false) => vec![0.0; len],
                (WeightInit::TorchDefault, _) => {
                    let a = 1.0 / (fan_in as f64).sqrt();
                    (0..len)
                        .map(|_| ((2.0 * rand::Rng::random::<f64>(&mut rng) - 1.0) * a) as f32)
                        .collect()
                }
            }
        };
        weights.insert(name.clone(), Tensor::from_vec(values, shape.as_slice(), device)?);
    }
    Ok(weights)
}

/// Checks that `weights` holds exactly the expected names and shapes for `dim` channels.
pub(crate) fn check_weights(config: &DinomalyConfig, dim: usize, weights: &Weights) -> Result<()> {
    let shapes = weight_shapes(config, dim);
    for (name, shape) in &shapes {
        let tensor = weights.get(name).ok_or_else(|| Error::Shape {
            what: format!("weight {name}"),
            expected: format!("{shape:?}"),
            got: vec![],
        })?;
        if tensor.dims() != shape.as_slice() {
            return Err(Error::Shape {
                what: format!("weight {name}"),
                expected: format!("{shape:?}"),
                got: tensor.dims().to_vec(),
            });
        }
    }
    if weights.len() != shapes.len() {
        let extra = weights.keys().find(|k| !shapes.iter().any(|(n, _)| n == *k));
        return Err(Error::Shape {
            what: format!("unexpected weight {}", extra.map_or("?", |s| s.as_str())),
            expected: "no such weight".into(),
            got: vec![],
        });
    }
    Ok(())
}

fn get<'a>(weights: &'a Weights, name: &str) -> Result<&'a Tensor> {
    weights.get(name).ok_or_else(|| Error::Shape {
        what: format!("weight {name}"),
        expected: "present".into(),
        got: vec![],
    })
}

/// `x · Wᵀ + b` on `[B, N, in]`.
fn linear(weights: &Weights, prefix: &str, x: &Tensor) -> Result<Tensor> {
    let w = get(weights, &format!("{prefix}.weight"))?;
    let b = get(weights, &format!("{prefix}.bias"))?;
    // One 2-D product over all tokens: the transposed weight is a strided view, no copy.
    let (batch, n, inp) = x.dims3()?;
    let y = x.reshape((batch * n, inp))?.matmul(&w.t()?)?.broadcast_add(b)?;
    Ok(y.reshape((batch, n, w.dim(0)?))?)
}

/// Layer norm over the last dimension (fused on the CPU, see [`super::fused`]).
fn layer_norm(weights: &Weights, prefix: &str, x: &Tensor, eps: f64) -> Result<Tensor> {
    let w = get(weights, &format!("{prefix}.weight"))?;
    let b = get(weights, &format!("{prefix}.bias"))?;
    super::fused::layer_norm(x, w, b, eps)
}

/// Linear attention with `φ(x) = elu(x) + 1`:
/// `out = φ(q)(φ(k)ᵀ v) / (φ(q) · Σ φ(k))`, per head, then the output projection.
fn linear_attention(weights: &Weights, prefix: &str, x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, n, c) = x.dims3()?;
    let qkv = linear(weights, &format!("{prefix}.qkv"), x)?;
    // [B, N, 3, H, d] -> [3, B, H, N, d]
    let qkv = qkv.reshape((b, n, 3, heads, c / heads))?.permute((2, 0, 3, 1, 4))?;
    let phi = |t: Tensor| -> Result<Tensor> { Ok((t.elu(1.0)? + 1.0)?.contiguous()?) };
    let q = phi(qkv.get(0)?)?;
    let k = phi(qkv.get(1)?)?;
    let v = qkv.get(2)?.contiguous()?;
    let kv = k.t()?.matmul(&v)?; // [B, H, d, d]
    let k_sum = k.sum_keepdim(2)?; // [B, H, 1, d]
    let z = q.matmul(&k_sum.t()?)?; // [B, H, N, 1]
    let out = q.matmul(&kv)?.broadcast_div(&z)?; // [B, H, N, d]
    let out = out.transpose(1, 2)?.reshape((b, n, c))?;
    linear(weights, &format!("{prefix}.proj"), &out)
}

/// The bottleneck and decoder forward pass.
///
/// Input: bottleneck input tokens `[B, N, C]`. Output: per loose-reconstruction group `g`, the
/// mean of its decoder block outputs, `[B, N, C]`; decoder outputs are listed last to first
/// (the official `de_list[::-1]`), so group 0 averages the last blocks and pairs with the
/// shallowest encoder layers.
pub(crate) fn forward(
    config: &DinomalyConfig,
    weights: &Weights,
    x: &Tensor,
    masks: Option<&DropoutMasks>,
) -> Result<Vec<Tensor>> {
    let c = x.dim(D::Minus1)?;
    let heads = c / config.head_dim;
    let drop = |t: Tensor, mask: Option<&Tensor>| -> Result<Tensor> {
        Ok(match mask {
            Some(m) => t.mul(m)?,
            None => t,
        })
    };
    let mut x = drop(x.clone(), masks.map(|m| &m.input))?;
    x = linear(weights, "bottleneck.0.fc1", &x)?.gelu_erf()?;
    x = drop(x, masks.map(|m| &m.hidden))?;
    x = linear(weights, "bottleneck.0.fc2", &x)?;
    x = drop(x, masks.map(|m| &m.output))?;

    let eps = config.layer_norm_eps;
    let mut outputs = Vec::with_capacity(config.decoder_depth);
    for i in 0..config.decoder_depth {
        let p = format!("decoder.{i}");
        let y = layer_norm(weights, &format!("{p}.norm1"), &x, eps)?;
        x = (&x + linear_attention(weights, &format!("{p}.attn"), &y, heads)?)?;
        let y = layer_norm(weights, &format!("{p}.norm2"), &x, eps)?;
        let y = linear(weights, &format!("{p}.mlp.fc1"), &y)?.gelu_erf()?;
        x = (&x + linear(weights, &format!("{p}.mlp.fc2"), &y)?)?;
        outputs.push(x.clone());
    }
    outputs.reverse();
    let per_group = config.decoder_depth / config.n_groups;
    outputs.chunks(per_group).map(mean_of).collect()
}

/// The element-wise mean of equally shaped tensors.
pub(crate) fn mean_of(tensors: &[Tensor]) -> Result<Tensor> {
    let mut sum = tensors[0].clone();
    for t in &tensors[1..] {
        sum = (sum + t)?;
    }
    Ok((sum / tensors.len() as f64)?)
}

/// Draws the dropout masks of iteration `it` for a batch of `b` images of `n` tokens, as
/// values (`0` or `1 / (1 − p)`), row-major like the tokens; `None` without dropout.
pub(crate) fn dropout_values(
    config: &DinomalyConfig,
    it: usize,
    (b, n, c): (usize, usize, usize),
) -> Option<MaskValues> {
    let p = config.dropout;
    if p == 0.0 {
        return None;
    }
    let mut rng = rng::stream(config.seed, Purpose::Dropout, it as u64);
    let scale = (1.0 / (1.0 - p)) as f32;
    let mut mask = |width: usize| -> Vec<f32> {
        rng::keep_mask(&mut rng, b * n * width, p)
            .into_iter()
            .map(|k| f32::from(k) * scale)
            .collect()
    };
    Some(MaskValues { input: mask(c), hidden: mask(config.mlp_ratio * c), output: mask(c) })
}

/// [`dropout_values`] as tensors on `device`.
pub(crate) fn dropout_masks(
    values: Option<&MaskValues>,
    (b, n, c): (usize, usize, usize),
    device: &Device,
) -> Result<Option<DropoutMasks>> {
    let Some(v) = values else { return Ok(None) };
    let hidden = v.hidden.len() / (b * n);
    Ok(Some(DropoutMasks {
        input: Tensor::from_slice(&v.input, (b, n, c), device)?,
        hidden: Tensor::from_slice(&v.hidden, (b, n, hidden), device)?,
        output: Tensor::from_slice(&v.output, (b, n, c), device)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive reference: per head, `A = φ(Q)φ(K)ᵀ`, rows normalised, times `V`, in f64.
    #[test]
    fn linear_attention_matches_the_quadratic_form() -> Result<()> {
        let mut config = DinomalyConfig::llbnad();
        config.head_dim = 4;
        let (b, n, dim, heads, d) = (2, 5, 8, 2, 4);
        let weights = init_weights(&config, dim, &Device::Cpu)?;
        let mut rng = rng::stream(5, Purpose::Init, 9);
        let x: Vec<f32> = (0..b * n * dim).map(|_| rng::normal(&mut rng) as f32).collect();
        let x = Tensor::from_vec(x, (b, n, dim), &Device::Cpu)?;
        let ours = linear_attention(&weights, "decoder.0.attn", &x, heads)?;

        let qkv = linear(&weights, "decoder.0.attn.qkv", &x)?.to_vec3::<f32>()?;
        let phi = |v: f32| if v > 0.0 { f64::from(v) + 1.0 } else { f64::from(v).exp() };
        let mut mixed = vec![0f32; b * n * dim];
        for bi in 0..b {
            for h in 0..heads {
                for i in 0..n {
                    let mut acc = vec![0f64; d];
                    let mut norm = 0f64;
                    for j in 0..n {
                        let a: f64 = (0..d)
                            .map(|c| phi(qkv[bi][i][h * d + c]) * phi(qkv[bi][j][dim + h * d + c]))
                            .sum();
                        norm += a;
                        for (c, slot) in acc.iter_mut().enumerate() {
                            *slot += a * f64::from(qkv[bi][j][2 * dim + h * d + c]);
                        }
                    }
                    for (c, v) in acc.iter().enumerate() {
                        mixed[(bi * n + i) * dim + h * d + c] = (v / norm) as f32;
                    }
                }
            }
        }
        let mixed = Tensor::from_vec(mixed, (b, n, dim), &Device::Cpu)?;
        let reference = linear(&weights, "decoder.0.attn.proj", &mixed)?;
        let diff = (ours - reference)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "max difference {diff}");
        Ok(())
    }

    #[test]
    fn trunc_normal_init_respects_bound_and_norms_start_at_identity() -> Result<()> {
        let config = DinomalyConfig::guo2025();
        let weights = init_weights(&config, 64, &Device::Cpu)?;
        check_weights(&config, 64, &weights)?;
        let fc1 = weights["bottleneck.0.fc1.weight"].flatten_all()?.to_vec1::<f32>()?;
        assert!(fc1.iter().all(|w| w.abs() <= 0.03));
        let std = (fc1.iter().map(|w| w * w).sum::<f32>() / fc1.len() as f32).sqrt();
        assert!((0.008..0.0100).contains(&std), "std {std}");
        assert!(weights["decoder.3.norm2.weight"].to_vec1::<f32>()?.iter().all(|&w| w == 1.0));
        assert!(weights["decoder.3.attn.qkv.bias"].to_vec1::<f32>()?.iter().all(|&w| w == 0.0));
        let again = init_weights(&config, 64, &Device::Cpu)?;
        assert_eq!(
            again["decoder.7.mlp.fc2.weight"].to_vec2::<f32>()?,
            weights["decoder.7.mlp.fc2.weight"].to_vec2::<f32>()?
        );
        Ok(())
    }
}
