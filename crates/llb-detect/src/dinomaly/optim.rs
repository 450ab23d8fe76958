//! StableAdamW (AdamW with optional AMSGrad and per-tensor update clipping) and global
//! gradient-norm clipping, on candle tensors of any device.

use std::collections::BTreeMap;

use candle_core::{Tensor, Var};
use rayon::prelude::*;

use super::config::OptimizerConfig;
use crate::Result;

/// The optimiser's moments, keyed by weight name.
#[derive(Default)]
pub(crate) struct OptimState {
    /// Optimiser steps taken so far.
    pub(crate) step: usize,
    /// First moments.
    pub(crate) exp_avg: BTreeMap<String, Tensor>,
    /// Second moments.
    pub(crate) exp_avg_sq: BTreeMap<String, Tensor>,
    /// Running maximum of the second moments (AMSGrad only).
    pub(crate) max_exp_avg_sq: BTreeMap<String, Tensor>,
}

impl OptimState {
    /// Zero moments for the given weights.
    pub(crate) fn zeros(vars: &BTreeMap<String, Var>, amsgrad: bool) -> Result<Self> {
        let mut state = Self::default();
        for (name, var) in vars {
            let z = var.as_tensor().zeros_like()?;
            state.exp_avg.insert(name.clone(), z.clone());
            state.exp_avg_sq.insert(name.clone(), z.clone());
            if amsgrad {
                state.max_exp_avg_sq.insert(name.clone(), z);
            }
        }
        Ok(state)
    }
}

/// Scales all gradients so that their global L2 norm is at most `max_norm` (PyTorch
/// `clip_grad_norm_`: factor `max_norm / (norm + 1e-6)` when below 1). Returns the norm
/// before clipping.
pub(crate) fn clip_grad_norm(grads: &mut BTreeMap<String, Tensor>, max_norm: f64) -> Result<f64> {
    let squares: Vec<Tensor> =
        grads.values().map(|g| g.sqr()?.sum_all()).collect::<Result<_, _>>()?;
    if squares.is_empty() {
        return Ok(0.0);
    }
    let norm = f64::from(Tensor::stack(&squares, 0)?.sum_all()?.sqrt()?.to_scalar::<f32>()?);
    let factor = max_norm / (norm + 1e-6);
    if factor < 1.0 {
        for g in grads.values_mut() {
            *g = (&*g * factor)?;
        }
    }
    Ok(norm)
}

/// One optimiser step at learning rate `lr` on every weight that has a gradient.
///
/// Per weight: decoupled decay `p ← p·(1 − lr·wd)`; Adam moments; with AMSGrad the running
/// maximum of `v`; `denom = sqrt(v̂)/sqrt(1 − β₂ᵗ) + eps`; StableAdamW divides the step by
/// `max(1, RMS(g/denom) / update_clip)`; `p ← p − lr/(1 − β₁ᵗ) · m/denom`.
pub(crate) fn step(
    config: &OptimizerConfig,
    lr: f64,
    vars: &BTreeMap<String, Var>,
    grads: &BTreeMap<String, Tensor>,
    state: &mut OptimState,
) -> Result<()> {
    state.step += 1;
    let t = state.step as i32;
    let [beta1, beta2] = config.betas;
    let bias1 = 1.0 - beta1.powi(t);
    let bias2 = 1.0 - beta2.powi(t);
    for (name, var) in vars {
        let Some(g) = grads.get(name) else { continue };
        let (Some(m), Some(v)) = (state.exp_avg.get(name), state.exp_avg_sq.get(name)) else {
            continue;
        };
        let p = var.as_detached_tensor();
        let p = if config.weight_decay > 0.0 { (p * (1.0 - lr * config.weight_decay))? } else { p };
        let m = ((m * beta1)? + (g * (1.0 - beta1))?)?;
        let v = ((v * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
        let v_hat = if config.amsgrad {
            let vmax = match state.max_exp_avg_sq.get(name) {
                Some(old) => old.maximum(&v)?,
                None => v.clone(),
            };
            state.max_exp_avg_sq.insert(name.clone(), vmax.clone());
            vmax
        } else {
            v.clone()
        };
        let denom = ((v_hat.sqrt()? / bias2.sqrt())? + config.eps)?;
        let scale = match config.update_clip {
            Some(clip) => {
                let rms = f64::from(g.div(&denom)?.sqr()?.mean_all()?.sqrt()?.to_scalar::<f32>()?);
                (rms / clip).max(1.0)
            }
            None => 1.0,
        };
        let step_size = lr / bias1 / scale;
        let next = (p - (m.div(&denom)? * step_size)?)?;
        var.set(&next)?;
        state.exp_avg.insert(name.clone(), m);
        state.exp_avg_sq.insert(name.clone(), v);
    }
    Ok(())
}

/// [`clip_grad_norm`] on plain CPU buffers: the norm is summed in f64, tensor by tensor in
/// name order.
pub(crate) fn clip_grad_norm_values(grads: &mut BTreeMap<String, Vec<f32>>, max_norm: f64) -> f64 {
    let norm = grads
        .values()
        .map(|g| g.par_chunks(CHUNK).map(sum_sq).collect::<Vec<_>>().iter().sum::<f64>())
        .sum::<f64>()
        .sqrt();
    let factor = max_norm / (norm + 1e-6);
    if factor < 1.0 {
        let factor = factor as f32;
        for g in grads.values_mut() {
            g.par_chunks_mut(CHUNK).for_each(|g| g.iter_mut().for_each(|v| *v *= factor));
        }
    }
    norm
}

/// Elements per parallel work item.
const CHUNK: usize = 1 << 15;

fn sum_sq(values: &[f32]) -> f64 {
    values.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
}

/// The weights and optimiser moments as plain CPU buffers, kept across the steps of the CPU
/// pass (no tensor conversion per step); [`PlainState::to_state`] gives the tensor form that
/// checkpoints store.
pub(crate) struct PlainState {
    pub(crate) step: usize,
    pub(crate) weights: BTreeMap<String, Vec<f32>>,
    exp_avg: BTreeMap<String, Vec<f32>>,
    exp_avg_sq: BTreeMap<String, Vec<f32>>,
    max_exp_avg_sq: BTreeMap<String, Vec<f32>>,
}

/// The buffers of `map` that have a weight in `vars`, as tensors of that weight's shape.
fn shaped_like(
    map: &BTreeMap<String, Vec<f32>>,
    vars: &BTreeMap<String, Var>,
) -> Result<BTreeMap<String, Tensor>> {
    map.iter()
        .filter_map(|(k, v)| vars.get(k).map(|var| (k, v, var)))
        .map(|(k, v, var)| Ok((k.clone(), Tensor::from_slice(v, var.shape(), var.device())?)))
        .collect()
}

fn plain(map: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Vec<f32>>> {
    map.iter().map(|(k, t)| Ok((k.clone(), t.flatten_all()?.to_vec1::<f32>()?))).collect()
}

impl PlainState {
    /// Copies `vars` and `state`.
    pub(crate) fn new(vars: &BTreeMap<String, Var>, state: &OptimState) -> Result<Self> {
        let weights: BTreeMap<String, Tensor> =
            vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
        Ok(Self {
            step: state.step,
            weights: plain(&weights)?,
            exp_avg: plain(&state.exp_avg)?,
            exp_avg_sq: plain(&state.exp_avg_sq)?,
            max_exp_avg_sq: plain(&state.max_exp_avg_sq)?,
        })
    }

    /// The moments as tensors shaped like `vars`.
    pub(crate) fn to_state(&self, vars: &BTreeMap<String, Var>) -> Result<OptimState> {
        Ok(OptimState {
            step: self.step,
            exp_avg: shaped_like(&self.exp_avg, vars)?,
            exp_avg_sq: shaped_like(&self.exp_avg_sq, vars)?,
            max_exp_avg_sq: shaped_like(&self.max_exp_avg_sq, vars)?,
        })
    }

    /// The weights as tensors shaped like `vars`.
    pub(crate) fn weight_tensors(
        &self,
        vars: &BTreeMap<String, Var>,
    ) -> Result<BTreeMap<String, Tensor>> {
        shaped_like(&self.weights, vars)
    }

    /// Writes the weights into `vars`.
    pub(crate) fn write_weights(&self, vars: &BTreeMap<String, Var>) -> Result<()> {
        for (name, var) in vars {
            if let Some(w) = self.weights.get(name) {
                var.set(&Tensor::from_slice(w, var.shape(), var.device())?)?;
            }
        }
        Ok(())
    }
}

/// [`step`] on [`PlainState`], in parallel element-wise passes (the RMS of the update clip
/// summed in f64, chunk partials added in order). Same arithmetic as [`step`].
pub(crate) fn step_plain(
    config: &OptimizerConfig,
    lr: f64,
    state: &mut PlainState,
    grads: &BTreeMap<String, Vec<f32>>,
) {
    state.step += 1;
    let t = state.step as i32;
    let [beta1, beta2] = config.betas;
    let (bias1, bias2) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
    let (b1, b2) = (beta1 as f32, beta2 as f32);
    let (one_b1, one_b2) = ((1.0 - beta1) as f32, (1.0 - beta2) as f32);
    let inv_sqrt_bias2 = (1.0 / bias2.sqrt()) as f32;
    let eps = config.eps as f32;
    let decay = (1.0 - lr * config.weight_decay) as f32;
    let denom = |v_hat: f32| v_hat.sqrt() * inv_sqrt_bias2 + eps;
    for (name, p) in &mut state.weights {
        let Some(g) = grads.get(name) else { continue };
        let (Some(m), Some(v)) = (state.exp_avg.get_mut(name), state.exp_avg_sq.get_mut(name))
        else {
            continue;
        };
        // One pass for the moments, AMSGrad's running maximum and the sum of (g / denom)² for
        // the update clip (chunk partials added in order); a second moves the weight.
        let moments = |m: &mut [f32], v: &mut [f32], vmax: Option<&mut [f32]>, g: &[f32]| {
            let mut sum = 0f64;
            for j in 0..g.len() {
                m[j] = m[j] * b1 + g[j] * one_b1;
                v[j] = v[j] * b2 + g[j] * g[j] * one_b2;
            }
            let v_hat: &[f32] = match vmax {
                Some(vmax) => {
                    vmax.iter_mut().zip(v.iter()).for_each(|(a, &b)| *a = a.max(b));
                    vmax
                }
                None => v,
            };
            // Eight f32 lanes per run of 512 values (a loop the compiler vectorises), each
            // run's total added in f64.
            for (g, v) in g.chunks(512).zip(v_hat.chunks(512)) {
                let mut lanes = [0f32; 8];
                let (g8, v8) = (g.chunks_exact(8), v.chunks_exact(8));
                let tail = g8.remainder().iter().zip(v8.remainder());
                for (g, v) in g8.zip(v8) {
                    for k in 0..8 {
                        let r = g[k] / denom(v[k]);
                        lanes[k] += r * r;
                    }
                }
                for (k, (&g, &v)) in tail.enumerate() {
                    let r = g / denom(v);
                    lanes[k] += r * r;
                }
                sum += lanes.iter().map(|&l| f64::from(l)).sum::<f64>();
            }
            sum
        };
        let vmax = if config.amsgrad { state.max_exp_avg_sq.get_mut(name) } else { None };
        let chunks = m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)).zip(g.par_chunks(CHUNK));
        let partials: Vec<f64> = match vmax {
            Some(vmax) => chunks
                .zip(vmax.par_chunks_mut(CHUNK))
                .map(|(((m, v), g), vmax)| moments(m, v, Some(vmax), g))
                .collect(),
            None => chunks.map(|((m, v), g)| moments(m, v, None, g)).collect(),
        };
        let sum: f64 = partials.iter().sum();
        let v_hat: &[f32] = match state.max_exp_avg_sq.get(name) {
            Some(vmax) if config.amsgrad => vmax,
            _ => v,
        };
        let scale = match config.update_clip {
            Some(clip) => ((sum / g.len().max(1) as f64).sqrt() / clip).max(1.0),
            None => 1.0,
        };
        let step_size = (lr / bias1 / scale) as f32;
        p.par_chunks_mut(CHUNK).zip(m.par_chunks(CHUNK)).zip(v_hat.par_chunks(CHUNK)).for_each(
            |((p, m), v_hat)| {
                for j in 0..p.len() {
                    let decayed = if config.weight_decay > 0.0 { p[j] * decay } else { p[j] };
                    p[j] = decayed - step_size * (m[j] / denom(v_hat[j]));
                }
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn config(update_clip: Option<f64>, weight_decay: f64) -> OptimizerConfig {
        OptimizerConfig {
            lr: 0.1,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay,
            amsgrad: true,
            update_clip,
            grad_clip_norm: None,
        }
    }

    #[test]
    fn first_adam_step_moves_by_lr_times_sign() -> Result<()> {
        let var = Var::new(&[1f32, -2.0, 3.0], &Device::Cpu)?;
        let vars = BTreeMap::from([("w".to_string(), var.clone())]);
        let grads =
            BTreeMap::from([("w".to_string(), Tensor::new(&[0.5f32, -4.0, 0.0], &Device::Cpu)?)]);
        let mut state = OptimState::zeros(&vars, true)?;
        step(&config(None, 0.0), 0.1, &vars, &grads, &mut state)?;
        let p = var.as_tensor().to_vec1::<f32>()?;
        // Bias-corrected first Adam step is lr · g / (|g| + eps).
        assert!((p[0] - 0.9).abs() < 1e-5 && (p[1] + 1.9).abs() < 1e-5 && p[2] == 3.0, "{p:?}");
        Ok(())
    }

    #[test]
    fn update_clip_and_weight_decay_shrink_the_step() -> Result<()> {
        let run = |clip: Option<f64>, wd: f64| -> Result<Vec<f32>> {
            let var = Var::new(&[1f32, 1.0], &Device::Cpu)?;
            let vars = BTreeMap::from([("w".to_string(), var.clone())]);
            let grads =
                BTreeMap::from([("w".to_string(), Tensor::new(&[1f32, 1.0], &Device::Cpu)?)]);
            let mut state = OptimState::zeros(&vars, true)?;
            step(&config(clip, wd), 0.1, &vars, &grads, &mut state)?;
            Ok(var.as_tensor().to_vec1::<f32>()?)
        };
        // On the first step g / denom = 1 (bias-corrected), so RMS 1 over clip 0.25 divides the
        // step by 4; clip 1.0 leaves it alone.
        let clipped = run(Some(0.25), 0.0)?;
        assert!((clipped[0] - (1.0 - 0.025)).abs() < 1e-5, "{clipped:?}");
        let unclipped = run(Some(1.0), 0.0)?;
        assert!((unclipped[0] - 0.9).abs() < 1e-5, "{unclipped:?}");
        let decayed = run(None, 0.5)?;
        assert!((decayed[0] - (0.95 - 0.1)).abs() < 1e-5, "{decayed:?}");
        Ok(())
    }

    #[test]
    fn clip_grad_norm_caps_the_global_norm() -> Result<()> {
        let dev = Device::Cpu;
        let mut grads = BTreeMap::from([
            ("a".to_string(), Tensor::new(&[3f32], &dev)?),
            ("b".to_string(), Tensor::new(&[4f32], &dev)?),
        ]);
        let norm = clip_grad_norm(&mut grads, 1.0)?;
        assert!((norm - 5.0).abs() < 1e-6);
        let a = grads["a"].to_vec1::<f32>()?[0];
        let b = grads["b"].to_vec1::<f32>()?[0];
        assert!(((a * a + b * b).sqrt() - 1.0).abs() < 1e-5);
        let norm = clip_grad_norm(&mut grads, 10.0)?;
        assert!((norm - 1.0).abs() < 1e-5);
        Ok(())
    }

    #[test]
    fn plain_buffer_step_and_clip_match_the_tensor_ones() -> Result<()> {
        let dev = Device::Cpu;
        for (amsgrad, clip, wd) in [(true, Some(0.5), 1e-2), (false, None, 0.0)] {
            let mut cfg = config(clip, wd);
            cfg.amsgrad = amsgrad;
            let init: Vec<f32> = (0..70_000).map(|i| (i as f32 * 0.37).sin()).collect();
            let make = || -> Result<BTreeMap<String, Var>> {
                Ok(BTreeMap::from([("w".to_string(), Var::new(init.as_slice(), &dev)?)]))
            };
            let vars = make()?;
            let mut tensor_state = OptimState::zeros(&vars, amsgrad)?;
            let mut plain_state = PlainState::new(&vars, &tensor_state)?;
            for it in 0..4 {
                let g: Vec<f32> =
                    (0..init.len()).map(|i| ((i * (it + 3)) as f32 * 0.011).cos()).collect();
                let mut tensor_grads =
                    BTreeMap::from([("w".to_string(), Tensor::new(g.as_slice(), &dev)?)]);
                let mut plain_grads = BTreeMap::from([("w".to_string(), g)]);
                let n1 = clip_grad_norm(&mut tensor_grads, 50.0)?;
                let n2 = clip_grad_norm_values(&mut plain_grads, 50.0);
                assert!((n1 - n2).abs() <= 1e-4 * n2, "norms {n1} vs {n2}");
                step(&cfg, 0.01, &vars, &tensor_grads, &mut tensor_state)?;
                step_plain(&cfg, 0.01, &mut plain_state, &plain_grads);
            }
            let a = vars["w"].as_tensor().to_vec1::<f32>()?;
            let b = plain_state.weights["w"].clone();
            let moments = plain_state.to_state(&vars)?;
            assert_eq!(moments.step, tensor_state.step);
            let (m1, m2) = (
                moments.exp_avg["w"].to_vec1::<f32>()?,
                tensor_state.exp_avg["w"].to_vec1::<f32>()?,
            );
            assert!(m1.iter().zip(&m2).all(|(a, b)| (a - b).abs() <= 1e-6 * (1.0 + b.abs())));
            let err = a.iter().zip(&b).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            let moved = a.iter().zip(&init).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(moved > 1e-3 && err <= 1e-4 * moved, "moved {moved}, max difference {err}");
        }
        Ok(())
    }
}
