//! Stage 1, steps 2–3: fit one sub-model per block and score every training sample with every
//! sub-model into a [`ScoreTable`].

use crate::resume::ResumeStore;
use crate::{Error, MapObserver, Partition, PartitionConfig, Result};
use candle_core::{IndexOp, Tensor};
use llb_detect::{Detector, Fit, ImageScoreRule};
use llb_purify::{ScoreCell, ScoreTable};
use llb_types::{GroupId, SampleId};
use std::path::Path;

/// Stage-1 settings (the fields the paper's screening needs besides the detector itself).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage1Config {
    /// How the training set is cut into K blocks.
    pub partition: PartitionConfig,
    /// Image score used for screening; the paper uses the mean of the top 1 % of the map.
    pub screening_score: ImageScoreRule,
    /// Images scored per forward pass (memory bound, not a result-changing knob).
    pub batch_size: usize,
}

impl Stage1Config {
    /// The official LLBNAD release (GitHub hustzhangyuxin/LLBNAD, shipped smoke-test config):
    /// K = 3 random blocks, screening score = mean of the top 1 % of the anomaly map.
    pub fn llbnad_released(seed: u64) -> Self {
        Self::with_k(3, seed)
    }

    /// The config name in the LLBNAD repository that suggests K = 5.
    pub fn llbnad_repo_config(seed: u64) -> Self {
        Self::with_k(5, seed)
    }

    fn with_k(k: usize, seed: u64) -> Self {
        Self {
            partition: PartitionConfig { k, seed, mode: crate::PartitionMode::Random },
            screening_score: ImageScoreRule::TopMean { fraction: 0.01 },
            batch_size: 16,
        }
    }
}

/// The training set as stage 1 sees it: ids, optional groups, and precomputed frozen features.
#[derive(Clone, Copy, Debug)]
pub struct TrainingSet<'a> {
    /// Sample ids, one per row of every feature layer.
    pub ids: &'a [SampleId],
    /// A hash of each sample's input, e.g. the SHA-256 (hex) of its image file, in the order of
    /// `ids`: part of the resume cache's key, so other pixels under the same ids recompute.
    pub content_sha256: &'a [String],
    /// Physical-sample group of each id (`None` when unknown); same length as `ids`.
    pub groups: &'a [Option<GroupId>],
    /// Which samples the sub-models may be fitted on, in the order of `ids` (`None`: all). Every
    /// sample is scored either way; a later screening round passes the previous round's kept
    /// set here, so each sub-model refits on its block minus the images already distrusted.
    pub fit_mask: Option<&'a [bool]>,
    /// Encoder features, one tensor `[N, C, h, w]` per layer, rows in the order of `ids`.
    pub layers: &'a [Tensor],
    /// Size `(H, W)` of the anomaly maps, i.e. of the preprocessed images.
    pub image_size_px: (usize, usize),
}

/// What stage 1 produces.
#[derive(Clone, Debug)]
pub struct Stage1Output {
    /// The blocks the sub-models were fitted on.
    pub partition: Partition,
    /// Scores of every training sample by every sub-model, with in-subset flags.
    pub table: ScoreTable,
}

/// Runs stage 1: partitions the training set, fits `K` fresh sub-models with `fit`, and scores
/// every training sample with every sub-model (including the samples a sub-model was fitted on,
/// as the official code does; the in-subset flag records which).
///
/// Each sub-model is fitted on its block's ids (so, by the [`Fit`] contract, not on any row
/// order), and scores every sample.
///
/// With `resume_dir`, each sub-model's scores are written there (atomically) as soon as they are
/// known, and a later call with the same `cache_key`, config, ids and content hashes reuses them
/// instead of refitting. `cache_key` must describe everything else that determines the scores:
/// the detector's full settings and the encoder's (name, weights hash, input size).
///
/// # Errors
/// Inconsistent inputs, a partition error, a detector failure (with the block index), a
/// non-finite score, or a resume-cache IO error.
pub fn run_stage1<F: Fit>(
    fit: &F,
    train: &TrainingSet<'_>,
    config: &Stage1Config,
    cache_key: &str,
    resume_dir: Option<&Path>,
) -> Result<Stage1Output> {
    run_stage1_observed(fit, train, config, cache_key, resume_dir, None)
}

/// [`run_stage1`], showing every anomaly map it computes to `observer` (see [`MapObserver`]);
/// with `resume_dir`, what the observer returns per sub-model is cached beside its scores.
///
/// # Errors
/// As [`run_stage1`].
pub fn run_stage1_observed<F: Fit>(
    fit: &F,
    train: &TrainingSet<'_>,
    config: &Stage1Config,
    cache_key: &str,
    resume_dir: Option<&Path>,
    observer: Option<&mut dyn MapObserver>,
) -> Result<Stage1Output> {
    let store = resume_dir.map_or(Stage1Store::None, Stage1Store::Resume);
    run_stage1_stored(fit, train, config, cache_key, store, observer)
}

/// Where stage 1 keeps the scores of its sub-models.
///
/// A store folder holds one sub-folder per fingerprint of the cache key, config, ids and image
/// contents, so scores of other images or settings are never used; each sub-model's scores are
/// one file, locked while a process computes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage1Store<'a> {
    /// Nothing is stored: every sub-model is fitted.
    None,
    /// Sub-models found in the folder are reused; the others are fitted and stored there.
    Resume(&'a Path),
    /// Every sub-model must be in the folder already (fitted there by [`fit_submodels`], e.g. by
    /// K separate jobs); nothing is fitted, and a missing one is [`Error::MissingSubmodel`].
    Complete(&'a Path),
}

/// Stage 1 with an explicit [`Stage1Store`]: [`run_stage1_observed`] is this with
/// [`Stage1Store::None`] or [`Stage1Store::Resume`].
///
/// With [`Stage1Store::Complete`], `fit` is never called, and the observer gets every sub-model
/// through [`MapObserver::resume_block`].
///
/// # Errors
/// As [`run_stage1`]; [`Error::MissingSubmodel`] naming the first sub-model a complete store
/// lacks.
pub fn run_stage1_stored<F: Fit>(
    fit: &F,
    train: &TrainingSet<'_>,
    config: &Stage1Config,
    cache_key: &str,
    store: Stage1Store<'_>,
    observer: Option<&mut dyn MapObserver>,
) -> Result<Stage1Output> {
    let n = check_training_set(train)?;
    let partition = partition_of(train, config)?;
    let k = partition.k();
    let _span = tracing::info_span!("stage1", k, n_samples = n).entered();
    let (resume, complete) = match store {
        Stage1Store::None => (None, false),
        Stage1Store::Resume(dir) => (Some(dir), false),
        Stage1Store::Complete(dir) => (Some(dir), true),
    };
    let store = resume.map(|dir| ResumeStore::open(dir, cache_key, config, train)).transpose()?;
    let blocks: Vec<usize> = (0..k).collect();
    let columns = submodel_scores(
        fit,
        train,
        config,
        &partition,
        &blocks,
        store.as_ref().map(|s| (s, complete)),
        observer,
    )?;
    let block_of = partition.block_of();
    let models: Vec<String> = (0..k).map(|j| format!("submodel-{j}")).collect();
    let rows = train
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let cells = (0..k)
                .map(|j| {
                    let score = columns[j][i];
                    if block_of[id] == j {
                        ScoreCell::in_subset(score)
                    } else {
                        ScoreCell::out_of_subset(score)
                    }
                })
                .collect();
            (id.clone(), cells)
        })
        .collect();
    let table = ScoreTable::new(models, rows)?;
    Ok(Stage1Output { partition, table })
}

/// Part of stage 1, for splitting it across jobs: fits (or reuses) only the sub-models of
/// `subsets` (0-based block indices of the partition) and stores their scores, and what the
/// observer returns per sub-model, in `store_dir`, keyed as [`Stage1Store::Resume`] keys them.
/// Once every subset has been fitted into the folder, [`run_stage1_stored`] with
/// [`Stage1Store::Complete`] gives the table one uninterrupted [`run_stage1`] gives.
///
/// Returns the partition, so the caller knows K.
///
/// # Errors
/// [`Error::SubsetOutOfRange`] for an index not below K (before anything is fitted); otherwise
/// as [`run_stage1`].
pub fn fit_submodels<F: Fit>(
    fit: &F,
    train: &TrainingSet<'_>,
    config: &Stage1Config,
    cache_key: &str,
    store_dir: &Path,
    subsets: &[usize],
    observer: Option<&mut dyn MapObserver>,
) -> Result<Partition> {
    let n = check_training_set(train)?;
    let partition = partition_of(train, config)?;
    let k = partition.k();
    if let Some(&subset) = subsets.iter().find(|&&s| s >= k) {
        return Err(Error::SubsetOutOfRange { subset, k });
    }
    let _span = tracing::info_span!("stage1", k, n_samples = n, subsets = ?subsets).entered();
    let store = ResumeStore::open(store_dir, cache_key, config, train)?;
    let mut blocks = subsets.to_vec();
    blocks.sort_unstable();
    blocks.dedup();
    submodel_scores(fit, train, config, &partition, &blocks, Some((&store, false)), observer)?;
    Ok(partition)
}

/// The partition of `train` that `config` asks for (it depends on ids and groups only).
fn partition_of(train: &TrainingSet<'_>, config: &Stage1Config) -> Result<Partition> {
    let samples: Vec<(SampleId, Option<GroupId>)> =
        train.ids.iter().cloned().zip(train.groups.iter().cloned()).collect();
    Partition::new(&samples, &config.partition)
}

/// The scores of the sub-models `blocks`, one column (in the order of `train.ids`) per block:
/// read from `store` when it has them, otherwise fitted, scored and stored there; with the
/// store's flag `complete`, a missing sub-model is an error instead of a fit.
fn submodel_scores<F: Fit>(
    fit: &F,
    train: &TrainingSet<'_>,
    config: &Stage1Config,
    partition: &Partition,
    blocks: &[usize],
    store: Option<(&ResumeStore, bool)>,
    mut observer: Option<&mut dyn MapObserver>,
) -> Result<Vec<Vec<f32>>> {
    let row_of: std::collections::BTreeMap<&SampleId, usize> =
        train.ids.iter().enumerate().map(|(i, id)| (id, i)).collect();
    let mut columns: Vec<Vec<f32>> = Vec::with_capacity(blocks.len());
    for &block in blocks {
        let members = &partition.blocks()[block];
        let _span = tracing::info_span!("submodel", block, n_fit = members.len()).entered();
        let found = match store {
            Some((store, true)) => Some(store.read(block)?.ok_or_else(|| {
                Error::MissingSubmodel { subset: block, k: partition.k(), dir: store.dir().into() }
            })?),
            Some((store, false)) => store.load(block)?,
            None => None,
        };
        if let Some(scores) = found {
            tracing::info!(block, "reusing cached sub-model scores");
            if let (Some(observer), Some((store, _))) = (observer.as_deref_mut(), store) {
                observer.resume_block(block, store.load_maps(block)?);
            }
            columns.push(scores);
            continue;
        }
        let fitted: Vec<SampleId> = members
            .iter()
            .filter(|id| train.fit_mask.is_none_or(|mask| mask[row_of[id]]))
            .cloned()
            .collect();
        if fitted.is_empty() {
            return Err(Error::Features(format!(
                "block {block} has no sample left to fit a sub-model on"
            )));
        }
        let rows: Vec<u32> = fitted.iter().map(|id| row_of[id] as u32).collect();
        let subset = select_rows(train.layers, &rows)?;
        let model =
            fit.fit(&fitted, &subset).map_err(|source| Error::Detector { block, source })?;
        let members: std::collections::BTreeSet<&SampleId> = members.iter().collect();
        let mut visit = |row: usize, map: &[f32]| {
            if let Some(observer) = observer.as_deref_mut() {
                let id = &train.ids[row];
                observer.observe(block, id, members.contains(id), map);
            }
        };
        let scores = score_all(&model, train, config, block, &mut visit)?;
        let saved_maps = observer.as_deref_mut().and_then(|o| o.finish_block(block));
        if let Some((store, _)) = store {
            if let Some(bytes) = &saved_maps {
                store.save_maps(block, bytes)?;
            }
            store.save(block, &scores)?;
        }
        columns.push(scores);
    }
    Ok(columns)
}

fn check_training_set(train: &TrainingSet<'_>) -> Result<usize> {
    let n = train.ids.len();
    if train.groups.len() != n {
        return Err(Error::Features(format!("{} groups for {n} ids", train.groups.len())));
    }
    if train.content_sha256.len() != n {
        let got = train.content_sha256.len();
        return Err(Error::Features(format!("{got} content hashes for {n} ids")));
    }
    if let Some(mask) = train.fit_mask
        && mask.len() != n
    {
        return Err(Error::Features(format!("a fit mask of {} for {n} ids", mask.len())));
    }
    if train.layers.is_empty() {
        return Err(Error::Features("no feature layers".into()));
    }
    for (l, layer) in train.layers.iter().enumerate() {
        let rows = layer.dims().first().copied().unwrap_or(0);
        if rows != n {
            return Err(Error::Features(format!("layer {l} has {rows} rows for {n} ids")));
        }
    }
    Ok(n)
}

/// The given rows (images) of every layer `[N, C, h, w]`, in the given order.
///
/// # Errors
/// An index out of range, or a backend failure.
pub(crate) fn select_rows(layers: &[Tensor], rows: &[u32]) -> Result<Vec<Tensor>> {
    let device = layers[0].device();
    let index = Tensor::from_slice(rows, rows.len(), device)?;
    Ok(layers.iter().map(|l| l.index_select(&index, 0)).collect::<candle_core::Result<_>>()?)
}

/// Image scores of every training sample under one sub-model, in the order of `train.ids`;
/// `visit(row, map)` sees each sample's anomaly map.
fn score_all<D: Detector>(
    model: &D,
    train: &TrainingSet<'_>,
    config: &Stage1Config,
    block: usize,
    visit: &mut dyn FnMut(usize, &[f32]),
) -> Result<Vec<f32>> {
    let n = train.ids.len();
    let batch = config.batch_size.max(1);
    let mut scores = Vec::with_capacity(n);
    for start in (0..n).step_by(batch) {
        let len = batch.min(n - start);
        let layers: Vec<Tensor> = train
            .layers
            .iter()
            .map(|l| l.narrow(0, start, len))
            .collect::<candle_core::Result<_>>()?;
        let maps = model
            .anomaly_maps(&layers, train.image_size_px)
            .map_err(|source| Error::Detector { block, source })?;
        tracing::debug!(block, start, len, "scored batch");
        for i in 0..len {
            let map: Vec<f32> = maps.i(i)?.flatten_all()?.to_vec1()?;
            visit(start + i, &map);
            let score = config.screening_score.image_score(&map).unwrap_or(f32::NAN);
            if !score.is_finite() {
                return Err(Error::NonFinite {
                    block,
                    sample: train.ids[start + i].clone(),
                    score,
                });
            }
            scores.push(score);
        }
    }
    Ok(scores)
}
