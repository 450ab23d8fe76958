//! Training Dinomaly on cached encoder features, with resumable checkpoints.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Tensor, Var};
use llb_types::SampleId;

use super::config::DinomalyConfig;
use super::cpu;
use super::file;
use super::loss::hard_mined_loss;
use super::model::{DinomalyModel, FeatureShape, group_tokens};
use super::network;
use super::optim::{self, OptimState, PlainState};
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
    /// Whether [`Self::step`] goes through candle's autograd on the CPU too.
    autograd: bool,
    /// The CPU pass's weights and moments, once it has run; `vars` and `state` are stale while
    /// it exists (the model and checkpoints read it instead).
    plain: Option<PlainState>,
    /// The CPU pass's scratch buffers, reused from step to step.
    buffers: cpu::Buffers,
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
            autograd: false,
            plain: None,
            buffers: cpu::Buffers::default(),
        })
    }

    /// With `true`, [`Self::step`] computes gradients through candle's autograd graph on the
    /// CPU as on other devices, instead of the hand-written CPU pass; both give the same
    /// gradients up to rounding. For comparisons (`cargo xtask bench dinomaly`) and tests.
    pub fn use_autograd(&mut self, on: bool) {
        self.autograd = on;
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
        let (b, n, c) = targets[0].dims3()?;
        let masks = network::dropout_values(&self.config, it, (b, n, c));
        let batch = cpu::Batch {
            targets: &targets,
            masks: masks.as_ref(),
            easy_fraction: self.config.easy_fraction_at(it),
            easy_grad_factor: self.config.hard_mining.easy_grad_factor,
        };
        let lr = self.config.lr_at(it, self.total_iterations());
        let optimizer = &self.config.optimizer;
        let loss = if self.autograd || !device.is_cpu() {
            if let Some(plain) = self.plain.take() {
                plain.write_weights(&self.vars)?;
                self.state = plain.to_state(&self.vars)?;
            }
            let (loss, mut grads) = graph_loss_and_grads(&self.config, &self.vars, &batch)?;
            finite(loss, it)?;
            if let Some(max_norm) = optimizer.grad_clip_norm {
                optim::clip_grad_norm(&mut grads, max_norm)?;
            }
            optim::step(optimizer, lr, &self.vars, &grads, &mut self.state)?;
            loss
        } else {
            let plain = match &mut self.plain {
                Some(plain) => plain,
                None => self.plain.insert(PlainState::new(&self.vars, &self.state)?),
            };
            let (loss, mut grads) =
                cpu::loss_and_grads(&self.config, &plain.weights, &batch, &mut self.buffers)?;
            finite(loss, it)?;
            if let Some(max_norm) = optimizer.grad_clip_norm {
                optim::clip_grad_norm_values(&mut grads, max_norm);
            }
            optim::step_plain(optimizer, lr, plain, &grads);
            grads.into_values().for_each(|g| self.buffers.give(g));
            loss
        };
        self.iteration += 1;
        tracing::debug!(iteration = it, loss, lr, "dinomaly step");
        Ok(loss)
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
    ///
    /// # Errors
    /// A backend failure copying the CPU pass's weights into tensors.
    pub fn model(&self) -> Result<DinomalyModel> {
        let weights = match &self.plain {
            Some(plain) => plain.weight_tensors(&self.vars)?,
            None => self.vars.iter().map(|(n, v)| (n.clone(), v.as_detached_tensor())).collect(),
        };
        Ok(DinomalyModel {
            config: self.config.clone(),
            shape: self.shape,
            weights,
            iterations_trained: self.iteration,
        })
    }

    /// Writes weights, optimiser moments, iteration and RNG position (the seed in the stored
    /// configuration plus the iteration) to one safetensors file, atomically.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let model = self.model()?;
        let mut tensors = model.weights.clone();
        let current;
        let state = match &self.plain {
            Some(plain) => {
                current = plain.to_state(&self.vars)?;
                &current
            }
            None => &self.state,
        };
        let moments = [
            ("exp_avg", &state.exp_avg),
            ("exp_avg_sq", &state.exp_avg_sq),
            ("max_exp_avg_sq", &state.max_exp_avg_sq),
        ];
        for (kind, map) in moments {
            for (name, t) in map {
                tensors.insert(format!("optim.{kind}.{name}"), t.clone());
            }
        }
        let mut metadata: HashMap<String, String> = model.metadata("checkpoint");
        metadata.insert("optim_step".into(), file::json(&state.step));
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

/// An error unless the loss of iteration `it` is finite.
fn finite(loss: f32, it: usize) -> Result<()> {
    if loss.is_finite() {
        Ok(())
    } else {
        Err(Error::NonFinite { what: format!("dinomaly training loss at iteration {it}") })
    }
}

/// The loss of one batch and every weight's gradient through candle's autograd: the reference
/// for [`cpu::loss_and_grads`], and the path on other devices.
pub(crate) fn graph_loss_and_grads(
    config: &DinomalyConfig,
    vars: &BTreeMap<String, Var>,
    batch: &cpu::Batch<'_>,
) -> Result<(f32, BTreeMap<String, Tensor>)> {
    let targets = batch.targets;
    let input = network::mean_of(targets)?;
    let masks = network::dropout_masks(batch.masks, input.dims3()?, input.device())?;
    let weights: network::Weights =
        vars.iter().map(|(name, var)| (name.clone(), var.as_tensor().clone())).collect();
    let outputs = network::forward(config, &weights, &input, masks.as_ref())?;
    let loss = hard_mined_loss(targets, &outputs, batch.easy_fraction, batch.easy_grad_factor)?;
    let grad_store = loss.backward()?;
    let mut grads = BTreeMap::new();
    for (name, var) in vars {
        if let Some(g) = grad_store.get(var.as_tensor()) {
            grads.insert(name.clone(), g.clone());
        }
    }
    Ok((loss.to_scalar::<f32>()?, grads))
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
        trainer.model()
    }
}
