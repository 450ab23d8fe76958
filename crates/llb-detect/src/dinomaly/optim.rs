//! StableAdamW (AdamW with optional AMSGrad and per-tensor update clipping) and global
//! gradient-norm clipping, on candle tensors of any device.

use std::collections::BTreeMap;

use candle_core::{Tensor, Var};

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
}
