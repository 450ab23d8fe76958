//! The fitted Dinomaly model: scoring into anomaly maps, save and load.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::Tensor;

use super::config::DinomalyConfig;
use super::file;
use super::loss::token_distance;
use super::network::{self, Weights};
use crate::map::MapSpec;
use crate::{Detector, Error, Result};

/// The shape of the encoder features a model is fitted on: `n_layers` maps of `[·, C, h, w]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureShape {
    /// Number of encoder layers.
    pub n_layers: usize,
    /// Channels `C`.
    pub channels: usize,
    /// Token grid height `h`.
    pub height: usize,
    /// Token grid width `w`.
    pub width: usize,
}

/// Checks encoder features and returns, per loose-reconstruction group, the mean of its layers
/// as tokens `[N, h·w, C]`, plus the feature shape.
///
/// # Errors
/// No layers or images, layers of different shapes, a layer count that is not a multiple of
/// `n_groups`, channels not a multiple of `head_dim`, or non-finite values.
pub(crate) fn group_tokens(
    config: &DinomalyConfig,
    layers: &[Tensor],
) -> Result<(Vec<Tensor>, FeatureShape)> {
    let first = layers.first().ok_or_else(|| Error::Empty { what: "encoder layers".into() })?;
    let (n, c, h, w) = first.dims4().map_err(|_| Error::Shape {
        what: "encoder layer 0".into(),
        expected: "[N, C, h, w]".into(),
        got: first.dims().to_vec(),
    })?;
    if n == 0 || c == 0 || h == 0 || w == 0 {
        return Err(Error::Empty { what: format!("encoder features of shape {:?}", first.dims()) });
    }
    for (i, layer) in layers.iter().enumerate() {
        if layer.dims() != [n, c, h, w] {
            return Err(Error::Shape {
                what: format!("encoder layer {i}"),
                expected: format!("[{n}, {c}, {h}, {w}] like layer 0"),
                got: layer.dims().to_vec(),
            });
        }
        // `0 · x` is NaN exactly where `x` is NaN or infinite.
        let zeroed = (layer.to_dtype(candle_core::DType::F32)? * 0.0)?;
        if zeroed.sum_all()?.to_scalar::<f32>()?.is_nan() {
            return Err(Error::NonFinite { what: format!("encoder layer {i}") });
        }
    }
    if !layers.len().is_multiple_of(config.n_groups) {
        return Err(Error::Shape {
            what: "encoder layers".into(),
            expected: format!("a multiple of n_groups = {}", config.n_groups),
            got: vec![layers.len()],
        });
    }
    if c % config.head_dim != 0 {
        return Err(Error::Shape {
            what: "feature channels".into(),
            expected: format!("a multiple of head_dim = {}", config.head_dim),
            got: vec![c],
        });
    }
    let per_group = layers.len() / config.n_groups;
    let groups = layers
        .chunks(per_group)
        .map(|chunk| {
            let mean = network::mean_of(chunk)?.to_dtype(candle_core::DType::F32)?;
            Ok(mean.reshape((n, c, h * w))?.transpose(1, 2)?.contiguous()?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((groups, FeatureShape { n_layers: layers.len(), channels: c, height: h, width: w }))
}

/// A fitted Dinomaly model (bottleneck + decoder weights and the configuration).
///
/// Scores are deterministic: the same model and features give bit-identical maps, also after
/// saving and loading ([`DinomalyModel::save`], [`DinomalyModel::load`]: the crate's
/// [`SavedModel`](crate::SavedModel) format).
#[derive(Debug)]
pub struct DinomalyModel {
    pub(crate) config: DinomalyConfig,
    pub(crate) shape: FeatureShape,
    pub(crate) weights: Weights,
    pub(crate) iterations_trained: usize,
}

impl DinomalyModel {
    /// The configuration the model was fitted with.
    pub fn config(&self) -> &DinomalyConfig {
        &self.config
    }

    /// The feature shape the model expects.
    pub fn feature_shape(&self) -> FeatureShape {
        self.shape
    }

    /// Optimiser steps the model was trained for.
    pub fn iterations_trained(&self) -> usize {
        self.iterations_trained
    }

    /// Token-level anomaly grids `[N, h, w]`: per group `1 − cos(E, D)` per token, summed over
    /// groups, before upsampling and blur.
    ///
    /// # Errors
    /// Features that do not match [`Self::feature_shape`], or a backend failure.
    pub fn token_maps(&self, layers: &[Tensor]) -> Result<Tensor> {
        let (groups, shape) = group_tokens(&self.config, layers)?;
        if (shape.n_layers, shape.channels, shape.height, shape.width)
            != (self.shape.n_layers, self.shape.channels, self.shape.height, self.shape.width)
        {
            return Err(Error::Shape {
                what: "scoring features".into(),
                expected: format!("{:?}", self.shape),
                got: vec![shape.n_layers, shape.channels, shape.height, shape.width],
            });
        }
        let n = groups[0].dim(0)?;
        let mut grids = Vec::new();
        let mut start = 0;
        while start < n {
            let len = self.config.inference_batch_size.min(n - start);
            let targets: Vec<Tensor> =
                groups.iter().map(|g| g.narrow(0, start, len)).collect::<Result<_, _>>()?;
            let input = network::mean_of(&targets)?;
            let outputs = network::forward(&self.config, &self.weights, &input, None)?;
            let mut sum: Option<Tensor> = None;
            for (e, d) in targets.iter().zip(&outputs) {
                let dist = token_distance(e, d)?;
                sum = Some(match sum {
                    Some(s) => (s + dist)?,
                    None => dist,
                });
            }
            if let Some(sum) = sum {
                grids.push(sum.reshape((len, shape.height, shape.width))?);
            }
            start += len;
        }
        Ok(Tensor::cat(&grids, 0)?)
    }

    /// The weights by official state-dict name.
    pub(crate) fn weights(&self) -> &Weights {
        &self.weights
    }

    /// Checkpoint metadata: format, kind, configuration, feature shape and iteration.
    pub(crate) fn metadata(&self, kind: &str) -> HashMap<String, String> {
        HashMap::from([
            ("format".to_string(), file::FORMAT.to_string()),
            ("kind".to_string(), kind.to_string()),
            ("config".to_string(), file::json(&self.config)),
            ("feature_shape".to_string(), file::json(&self.shape)),
            ("iteration".to_string(), file::json(&self.iterations_trained)),
        ])
    }

    /// A model from its parts; `tensors` may hold more than the weights (a checkpoint's
    /// optimiser moments), which are ignored.
    ///
    /// # Errors
    /// An invalid configuration, or missing or misshapen weights.
    pub(crate) fn from_weights(
        config: DinomalyConfig,
        shape: FeatureShape,
        iterations_trained: usize,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<Self> {
        config.validate()?;
        let weights: BTreeMap<String, Tensor> = network::weight_shapes(&config, shape.channels)
            .into_iter()
            .filter_map(|(name, _)| tensors.get(&name).map(|t| (name, t.clone())))
            .collect();
        network::check_weights(&config, shape.channels, &weights)?;
        Ok(Self { config, shape, weights, iterations_trained })
    }

    /// A model from a training checkpoint's tensors and metadata.
    pub(crate) fn from_parts(
        path: &Path,
        tensors: &HashMap<String, Tensor>,
        metadata: &HashMap<String, String>,
    ) -> Result<Self> {
        let config: DinomalyConfig = file::field(path, metadata, "config")?;
        let shape: FeatureShape = file::field(path, metadata, "feature_shape")?;
        let iterations_trained: usize = file::field(path, metadata, "iteration")?;
        Self::from_weights(config, shape, iterations_trained, tensors)
    }
}

impl Detector for DinomalyModel {
    fn name(&self) -> String {
        let hm = &self.config.hard_mining;
        format!(
            "dinomaly(iters={}, dropout={}, p={}, factor={})",
            self.iterations_trained, self.config.dropout, hm.easy_fraction, hm.easy_grad_factor
        )
    }

    fn anomaly_maps(&self, layers: &[Tensor], image_size_px: (usize, usize)) -> Result<Tensor> {
        let grids = self.token_maps(layers)?;
        MapSpec::from(&self.config.map).apply(&grids, image_size_px)
    }
}
