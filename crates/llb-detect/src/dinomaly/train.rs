//! Training Dinomaly on cached encoder features, with resumable checkpoints.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Tensor, Var};
use llb_types::SampleId;

use super::config::DinomalyConfig;
use super::file;
use super::loss::hard_mined_loss;
use super::model::{DinomalyModel, FeatureShape, group_tokens};
use super::network;
use super::optim::{self, OptimState};
use crate::order::{Purpose as OrderPurpose, in_id_order, keyed_order};
use crate::{Error, Fit, Result};

/// A Dinomaly training run in progress.
///
/// Every random draw (weight init, epoch order, dropout masks) is a pure function of the seed
/// and the iteration, so [`DinomalyTrainer::save_checkpoint`] + [`DinomalyTrainer::resume`]
/// continue a run bit-identically to an uninterrupted one.
pub struct DinomalyTrainer {
    config: DinomalyConfig,
    /// Training ids, ascending; row `i` of every target belongs to `ids[i]`.
    ids: Vec<SampleId>,
    targets: Vec<Tensor>,
    shape: FeatureShape,
    fingerprint: f64,
    vars: BTreeMap<String, Var>,
    state: OptimState,
    iteration: usize,
}

impl std::fmt::Debug for DinomalyTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DinomalyTrainer")
            .field("shape", &self.shape)
            .field("n_images", &self.n_images())
            .field("iteration", &self.iteration)
            .finish_non_exhaustive()
    }
}

impl DinomalyTrainer {
    /// Starts a run on training features: one tensor `[N, C, h, w]` per encoder layer, row `i`
    /// belonging to `ids[i]`. Rows are put in id order, so the run does not depend on the order
    /// of the input rows.
    ///
    /// # Errors
    /// An invalid configuration or features (see [`Fit::fit`]).
    pub fn new(config: &DinomalyConfig, ids: &[SampleId], layers: &[Tensor]) -> Result<Self> {
        config.validate()?;
        let rows = in_id_order(ids, layers)?;
        let (targets, shape) = group_tokens(config, &rows.layers)?;
        let device = targets[0].device().clone();
        let weights = network::init_weights(config, shape.channels, &device)?;
        let vars = weights
            .into_iter()
            .map(|(name, t)| Ok((name, Var::from_tensor(&t)?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        let state = OptimState::zeros(&vars, config.optimizer.amsgrad)?;
        let fingerprint = fingerprint(&targets)?;
        Ok(Self {
            config: config.clone(),
            ids: rows.ids,
            targets,
            shape,
            fingerprint,
            vars,
            state,
            iteration: 0,
        })
    }

    /// Iterations done so far.
    pub fn iteration(&self) -> usize {
        self.iteration
    }

    /// Iterations of the whole run: the configured length resolved for this training set.
    pub fn total_iterations(&self) -> usize {
        self.config.length.iterations(self.n_images(), self.config.batch_size)
    }

    fn n_images(&self) -> usize {
        self.targets.first().map_or(0, |t| t.dim(0).unwrap_or(0))
    }

    /// The image rows of the batch of iteration `it`: each epoch orders the images by a key of
    /// (seed, epoch, id), cut into full batches (the remainder of an epoch is dropped, as the
    /// official `drop_last`).
    fn batch_indices(&self, it: usize) -> Vec<u32> {
        let n = self.n_images();
        let batch = self.config.batch_size.min(n);
        let per_epoch = n / batch;
        let (epoch, pos) = (it / per_epoch, it % per_epoch);
        let order =
            keyed_order(&self.ids, self.config.seed, OrderPurpose::EpochOrder, epoch as u64);
        order[pos * batch..(pos + 1) * batch].to_vec()
    }

    /// Runs one iteration and returns its loss.
    ///
    /// # Errors
    /// A non-finite loss, or a backend failure.
    pub fn step(&mut self) -> Result<f32> {
        let it = self.iteration;
        let device = self.targets[0].device();
        let ids = self.batch_indices(it);
        let ids = Tensor::from_vec(ids.clone(), ids.len(), device)?;
        let targets: Vec<Tensor> =
            self.targets.iter().map(|t| t.index_select(&ids, 0)).collect::<Result<_, _>>()?;
        let input = network::mean_of(&targets)?;
        let masks = network::dropout_masks(&self.config, it, input.dims3()?, device)?;
        let weights: network::Weights =
            self.vars.iter().map(|(name, var)| (name.clone(), var.as_tensor().clone())).collect();
        let outputs = network::forward(&self.config, &weights, &input, masks.as_ref())?;
        let hm = &self.config.hard_mining;
        let loss = hard_mined_loss(
            &targets,
            &outputs,
            self.config.easy_fraction_at(it),
            hm.easy_grad_factor,
        )?;
        let loss_value = loss.to_scalar::<f32>()?;
        if !loss_value.is_finite() {
            return Err(Error::NonFinite {
                what: format!("dinomaly training loss at iteration {it}"),
            });
        }
        let grad_store = loss.backward()?;
        let mut grads = BTreeMap::new();
        for (name, var) in &self.vars {
            if let Some(g) = grad_store.get(var.as_tensor()) {
                grads.insert(name.clone(), g.clone());
            }
        }
        if let Some(max_norm) = self.config.optimizer.grad_clip_norm {
            optim::clip_grad_norm(&mut grads, max_norm)?;
        }
        let lr = self.config.lr_at(it, self.total_iterations());
        optim::step(&self.config.optimizer, lr, &self.vars, &grads, &mut self.state)?;
        self.iteration += 1;
        tracing::debug!(iteration = it, loss = loss_value, lr, "dinomaly step");
        Ok(loss_value)
    }

    /// Runs iterations until `until` are done (the configuration's total at most) and returns
    /// their losses.
    ///
    /// # Errors
    /// As [`Self::step`].
    pub fn train_until(&mut self, until: usize) -> Result<Vec<f32>> {
        let until = until.min(self.total_iterations());
        let mut losses = Vec::with_capacity(until.saturating_sub(self.iteration));
        while self.iteration < until {
            losses.push(self.step()?);
        }
        Ok(losses)
    }

    /// As [`Self::train_until`], writing a checkpoint to `path` every `every_iters` iterations
    /// and at the end, so that an interrupted run can [`Self::resume`] from it.
    ///
    /// # Errors
    /// As [`Self::step`] and [`Self::save_checkpoint`]; `every_iters = 0` is a config error.
    pub fn train_until_with_checkpoints(
        &mut self,
        until: usize,
        path: &Path,
        every_iters: usize,
    ) -> Result<Vec<f32>> {
        if every_iters == 0 {
            return Err(Error::Config {
                field: "every_iters",
                value: "0".into(),
                reason: "must be positive",
            });
        }
        let until = until.min(self.total_iterations());
        let mut losses = Vec::with_capacity(until.saturating_sub(self.iteration));
        while self.iteration < until {
            losses.push(self.step()?);
            if self.iteration.is_multiple_of(every_iters) || self.iteration == until {
                self.save_checkpoint(path)?;
            }
        }
        Ok(losses)
    }

    /// The model as trained so far.
    pub fn model(&self) -> DinomalyModel {
        DinomalyModel {
            config: self.config.clone(),
            shape: self.shape,
            weights: self.vars.iter().map(|(n, v)| (n.clone(), v.as_detached_tensor())).collect(),
            iterations_trained: self.iteration,
        }
    }

    /// Writes weights, optimiser moments, iteration and RNG position (the seed in the stored
    /// configuration plus the iteration) to one safetensors file, atomically.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let model = self.model();
        let mut tensors = model.weights.clone();
        let moments = [
            ("exp_avg", &self.state.exp_avg),
            ("exp_avg_sq", &self.state.exp_avg_sq),
            ("max_exp_avg_sq", &self.state.max_exp_avg_sq),
        ];
        for (kind, map) in moments {
            for (name, t) in map {
                tensors.insert(format!("optim.{kind}.{name}"), t.clone());
            }
        }
        let mut metadata: HashMap<String, String> = model.metadata("checkpoint");
        metadata.insert("optim_step".into(), file::json(&self.state.step));
        // Stored as bits: JSON float parsing is not guaranteed to round-trip.
        metadata.insert("data_fingerprint".into(), file::json(&self.fingerprint.to_bits()));
        file::write(path, &tensors, metadata)
    }

    /// Continues a run from a checkpoint written by [`Self::save_checkpoint`] with the same
    /// configuration and training features.
    ///
    /// # Errors
    /// A missing or malformed checkpoint, or one written for another configuration or other
    /// features.
    pub fn resume(
        config: &DinomalyConfig,
        ids: &[SampleId],
        layers: &[Tensor],
        path: &Path,
    ) -> Result<Self> {
        let mut trainer = Self::new(config, ids, layers)?;
        let device = trainer.targets[0].device().clone();
        let (tensors, metadata) = file::read(path, &device)?;
        let bad = |reason: String| Error::BadModel { path: path.to_path_buf(), reason };
        let model = DinomalyModel::from_parts(path, &tensors, &metadata)?;
        if model.config != *config {
            return Err(bad("checkpoint was written with another configuration".into()));
        }
        if model.shape != trainer.shape {
            return Err(bad(format!(
                "checkpoint features {:?}, given {:?}",
                model.shape, trainer.shape
            )));
        }
        let fingerprint: u64 = file::field(path, &metadata, "data_fingerprint")?;
        if fingerprint != trainer.fingerprint.to_bits() {
            return Err(bad("checkpoint was trained on other features".into()));
        }
        for (name, var) in &trainer.vars {
            var.set(&model.weights[name])?;
        }
        let mut state =
            OptimState { step: file::field(path, &metadata, "optim_step")?, ..Default::default() };
        for name in trainer.vars.keys() {
            let take = |kind: &str| -> Result<Tensor> {
                tensors.get(&format!("optim.{kind}.{name}")).cloned().ok_or_else(|| {
                    Error::BadModel {
                        path: path.to_path_buf(),
                        reason: format!("optim.{kind}.{name} missing"),
                    }
                })
            };
            state.exp_avg.insert(name.clone(), take("exp_avg")?);
            state.exp_avg_sq.insert(name.clone(), take("exp_avg_sq")?);
            if config.optimizer.amsgrad {
                state.max_exp_avg_sq.insert(name.clone(), take("max_exp_avg_sq")?);
            }
        }
        trainer.state = state;
        trainer.iteration = model.iterations_trained;
        Ok(trainer)
    }
}

/// A checksum of the training features, to refuse resuming on other data.
fn fingerprint(targets: &[Tensor]) -> Result<f64> {
    let mut sum = 0f64;
    for (g, t) in targets.iter().enumerate() {
        let weights = Tensor::arange(0u32, t.dim(0)? as u32, t.device())?
            .to_dtype(candle_core::DType::F32)?;
        let per_image = t.sum((1, 2))?;
        sum += (g + 1) as f64
            * f64::from((per_image * (weights + 1.0)?)?.sum_all()?.to_scalar::<f32>()?);
    }
    Ok(sum)
}

impl Fit for DinomalyConfig {
    type Model = DinomalyModel;

    /// Trains bottleneck and decoder for [`DinomalyConfig::length`] on features
    /// `[N, C, h, w]` per encoder layer (DINOv2 blocks 2..9, patch tokens only).
    fn fit(&self, ids: &[SampleId], layers: &[Tensor]) -> Result<DinomalyModel> {
        let mut trainer = DinomalyTrainer::new(self, ids, layers)?;
        let span = tracing::info_span!(
            "dinomaly_fit",
            n_images = trainer.n_images(),
            iterations = trainer.total_iterations(),
            channels = trainer.shape.channels
        );
        let _enter = span.enter();
        let losses = trainer.train_until(trainer.total_iterations())?;
        tracing::info!(final_loss = losses.last().copied(), "dinomaly trained");
        Ok(trainer.model())
    }
}
