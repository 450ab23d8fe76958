//! The hand-written CPU pass against candle's autograd through `network::forward`.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor, Var};

use super::{Batch, loss_and_grads};
use crate::Result;
use crate::dinomaly::config::{DinomalyConfig, WeightInit};
use crate::dinomaly::network::{self, dropout_values};
use crate::dinomaly::rng::{self, Purpose};
use crate::dinomaly::train::graph_loss_and_grads;

/// Two groups of targets `[b, n, c]` with values of varied sign and size.
fn targets(seed: u64, (b, n, c): (usize, usize, usize), groups: usize) -> Result<Vec<Tensor>> {
    let mut rng = rng::stream(seed, Purpose::Init, 7);
    (0..groups)
        .map(|_| {
            let v: Vec<f32> =
                (0..b * n * c).map(|_| (1.5 * rng::normal(&mut rng)) as f32).collect();
            Ok(Tensor::from_vec(v, (b, n, c), &Device::Cpu)?)
        })
        .collect()
}

/// Loss and every gradient of both paths for `config` at iteration `it`.
fn compare(
    config: &DinomalyConfig,
    dims: (usize, usize, usize),
    it: usize,
    easy: f64,
) -> Result<()> {
    let targets = targets(config.seed + 1, dims, config.n_groups)?;
    let weights = network::init_weights(config, dims.2, &Device::Cpu)?;
    let masks = dropout_values(config, it, dims);
    let batch = Batch {
        targets: &targets,
        masks: masks.as_ref(),
        easy_fraction: easy,
        easy_grad_factor: config.hard_mining.easy_grad_factor,
    };
    let plain: BTreeMap<String, Vec<f32>> = weights
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.flatten_all()?.to_vec1::<f32>()?)))
        .collect::<Result<_>>()?;
    let (loss, grads) = loss_and_grads(config, &plain, &batch, &mut super::Buffers::default())?;
    let vars: BTreeMap<String, Var> = weights
        .iter()
        .map(|(k, t)| Ok((k.clone(), Var::from_tensor(t)?)))
        .collect::<Result<_>>()?;
    let (want_loss, want) = graph_loss_and_grads(config, &vars, &batch)?;
    assert!(
        (loss - want_loss).abs() <= 1e-5 * want_loss.abs().max(1.0),
        "loss {loss} vs {want_loss}"
    );
    assert_eq!(grads.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (name, g) in &grads {
        let w = want[name].flatten_all()?.to_vec1::<f32>()?;
        let scale = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = g.iter().zip(&w).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            scale > 0.0,
            "{name}: the reference gradient is zero, the test would prove nothing"
        );
        assert!(err <= 2e-4 * scale, "{name}: max error {err}, reference scale {scale}");
    }
    Ok(())
}

fn small() -> DinomalyConfig {
    let mut config = DinomalyConfig::llb_cpu();
    config.head_dim = 4;
    config.decoder_depth = 4;
    config.n_groups = 2;
    config.init = WeightInit::TorchDefault;
    config
}

#[test]
fn gradients_match_autograd_with_dropout_and_hard_mining() -> Result<()> {
    let mut config = small();
    config.dropout = 0.2;
    config.hard_mining.easy_grad_factor = 0.1;
    compare(&config, (3, 5, 8), 4, 0.6)
}

#[test]
fn gradients_match_autograd_without_dropout_or_mining() -> Result<()> {
    let mut config = small();
    config.dropout = 0.0;
    config.n_groups = 1;
    compare(&config, (2, 7, 12), 0, 0.0)
}
