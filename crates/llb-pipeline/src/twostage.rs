//! The two stages on extracted training features: stage-1 screening (sub-models, fusion,
//! selection), stage-2 fit on the kept ids, and an unsupervised decision threshold.

use crate::backbone::FittedDetector;
use crate::error::{Error, Result};
use crate::extract::Extracted;
use crate::settings::FitSettings;
use llb_detect::{Detector, Fit};
use llb_purify::{Purification, ScoreTable};
use llb_submodel::{MapObserver, Stage1Store, TrainingSet, fit_submodels, run_stage1_stored};
use llb_types::{GroupId, SampleId};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::path::Path;

/// Stage-1 results.
pub struct Screening {
    /// Every training sample scored by every sub-model.
    pub table: ScoreTable,
    /// Fused scores and the kept / dropped ids.
    pub purification: Purification,
}

/// The fitted pipeline.
pub struct TwoStage {
    /// The final detector, fitted on `kept`.
    pub model: FittedDetector,
    /// Stage-1 results, unless purification was off.
    pub screening: Option<Screening>,
    /// Ids the final detector was fitted on.
    pub kept: Vec<SampleId>,
}

/// The group of each of `ids` in `samples` (`None` for ids without one): what a group-aware
/// partition keeps together.
pub fn groups_of(samples: &[llb_data::Sample], ids: &[SampleId]) -> Vec<Option<GroupId>> {
    let by_id: std::collections::BTreeMap<_, _> =
        samples.iter().map(|s| (&s.id, s.group.clone())).collect();
    ids.iter().map(|id| by_id.get(id).cloned().flatten()).collect()
}

/// Stage 1: sub-models, score table, fusion and selection; `None` when purification is off.
pub fn screen(
    train: &Extracted,
    groups: &[Option<GroupId>],
    settings: &FitSettings,
    cache_key: &str,
    resume_dir: Option<&Path>,
) -> Result<Option<Screening>> {
    screen_observed(train, groups, settings, cache_key, resume_dir, None)
}

/// [`screen`], showing every stage-1 anomaly map to `maps` (see `llb_submodel::MapObserver`).
pub fn screen_observed(
    train: &Extracted,
    groups: &[Option<GroupId>],
    settings: &FitSettings,
    cache_key: &str,
    resume_dir: Option<&Path>,
    maps: Option<&mut dyn MapObserver>,
) -> Result<Option<Screening>> {
    let store = resume_dir.map_or(Stage1Store::None, Stage1Store::Resume);
    screen_stored(train, groups, settings, cache_key, store, maps)
}

/// The stage-1 key of `settings`: the sub-model's full settings, then the caller's `cache_key`
/// (the final detector's settings and the encoder's).
fn stage1_key(settings: &FitSettings, cache_key: &str) -> Result<String> {
    let purify = settings.purify.as_ref().ok_or_else(|| no_stage1("stage 1"))?;
    let submodel = purify.submodel.as_ref().unwrap_or(&settings.detector);
    let submodel_json = serde_json::to_string(submodel).map_err(Error::json("the sub-model"))?;
    Ok(format!("{submodel_json}|{cache_key}"))
}

fn no_stage1(what: &str) -> Error {
    Error::Settings(format!("{what} needs purification (stage 1), but it is off"))
}

/// Stage 1 split across jobs, one job's part: fits the sub-models of `subsets` (0-based, each
/// below K) on the whole training set's features and stores their scores (and what `maps`
/// returns per sub-model) in `store_dir`, keyed by image content and full settings as the
/// resume cache is; returns K. When every subset has been fitted into the folder,
/// [`screen_stored`] with [`Stage1Store::Complete`] gives the screening of one [`screen`].
///
/// # Errors
/// [`Error::Settings`] when purification is off or takes more than one round (round 2 needs all
/// of round 1); a subset ≥ K (`llb_submodel::Error::SubsetOutOfRange`, which blames the input);
/// stage-1 failures.
pub fn screen_submodels(
    train: &Extracted,
    groups: &[Option<GroupId>],
    settings: &FitSettings,
    cache_key: &str,
    store_dir: &Path,
    subsets: &[usize],
    maps: Option<&mut dyn MapObserver>,
) -> Result<usize> {
    let purify = settings.purify.as_ref().ok_or_else(|| no_stage1("fitting stage-1 subsets"))?;
    purify.rules()?;
    split_needs_one_round(purify.rounds)?;
    let cache_key = stage1_key(settings, cache_key)?;
    let submodel = purify.submodel.as_ref().unwrap_or(&settings.detector);
    let size = settings.encoder.image_size_px as usize;
    let set = TrainingSet {
        ids: &train.ids,
        content_sha256: &train.content_sha256,
        groups,
        fit_mask: None,
        layers: &train.layers,
        image_size_px: (size, size),
    };
    let partition =
        fit_submodels(submodel, &set, &purify.stage1, &cache_key, store_dir, subsets, maps)
            .map_err(|e| Error::during("stage 1 (sub-models)")(e.into()))?;
    Ok(partition.k())
}

fn split_needs_one_round(rounds: usize) -> Result<()> {
    if rounds > 1 {
        return Err(Error::Settings(format!(
            "stage 1 split across jobs takes one screening round, not {rounds}: round 2 refits \
             on round 1's selection, which needs every sub-model of round 1"
        )));
    }
    Ok(())
}

/// [`screen_observed`] with an explicit [`Stage1Store`]: with [`Stage1Store::Complete`] every
/// sub-model's scores come from the store (fitted there by [`screen_submodels`]) and none is
/// fitted.
///
/// # Errors
/// As [`screen`]; with a complete store, `llb_submodel::Error::MissingSubmodel` naming the
/// sub-model and folder (it blames the input), or [`Error::Settings`] for more than one round.
pub fn screen_stored(
    train: &Extracted,
    groups: &[Option<GroupId>],
    settings: &FitSettings,
    cache_key: &str,
    store: Stage1Store<'_>,
    mut maps: Option<&mut dyn MapObserver>,
) -> Result<Option<Screening>> {
    let Some(purify) = &settings.purify else {
        return match store {
            Stage1Store::Complete(_) => Err(no_stage1("stage-1 scores from a store")),
            _ => Ok(None),
        };
    };
    let rules = purify.rules()?;
    if matches!(store, Stage1Store::Complete(_)) {
        split_needs_one_round(purify.rounds)?;
    }
    let size = settings.encoder.image_size_px as usize;
    let submodel = purify.submodel.as_ref().unwrap_or(&settings.detector);
    let cache_key = stage1_key(settings, cache_key)?;
    let mut fit_mask: Option<Vec<bool>> = None;
    let mut screening = None;
    for round in 0..purify.rounds.max(1) {
        let _span = tracing::info_span!("screening_round", round).entered();
        let set = TrainingSet {
            ids: &train.ids,
            content_sha256: &train.content_sha256,
            groups,
            fit_mask: fit_mask.as_deref(),
            layers: &train.layers,
            image_size_px: (size, size),
        };
        // The maps shown for review are the last round's.
        let observer = if round + 1 == purify.rounds.max(1) { maps.take() } else { None };
        let out = run_stage1_stored(submodel, &set, &purify.stage1, &cache_key, store, observer)
            .map_err(|e| Error::during("stage 1 (sub-models)")(e.into()))?;
        let purification =
            llb_purify::purify(&out.table, rules.fusion.as_ref(), rules.selection.as_ref())?;
        tracing::info!(
            round,
            kept = purification.selection.kept.len(),
            dropped = purification.selection.dropped.len(),
            cut = purification.selection.cut,
            "stage 1 selection"
        );
        let kept: std::collections::BTreeSet<&SampleId> =
            purification.selection.kept.iter().collect();
        fit_mask = Some(train.ids.iter().map(|id| kept.contains(id)).collect());
        screening = Some(Screening { table: out.table, purification });
    }
    Ok(screening)
}

/// Stage 2: the final detector on the kept ids (all ids without screening).
pub fn fit_final(
    train: &Extracted,
    settings: &FitSettings,
    screening: Option<Screening>,
) -> Result<TwoStage> {
    let kept = match &screening {
        Some(s) => s.purification.selection.kept.clone(),
        None => train.ids.clone(),
    };
    let _span = tracing::info_span!("stage2", n_fit = kept.len()).entered();
    let subset = train.subset(&in_id_order(&kept))?;
    let model = settings
        .detector
        .fit(&subset.ids, &subset.layers)
        .map_err(|e| Error::during("stage 2 (final model)")(e.into()))?;
    Ok(TwoStage { model, screening, kept })
}

/// An unsupervised threshold: a detector fitted on a seeded half of the kept images scores the
/// other half (images it has not seen), and the threshold is where the selection rule `mad(3)`
/// would cut those scores ([`llb_purify::robust_upper_fence`] with z = 3; their maximum when
/// they are all equal). A model fitted on half the data scores a little higher than the final
/// one, which makes the threshold conservative (fewer false alarms).
pub fn calibrate_threshold(
    train: &Extracted,
    kept: &[SampleId],
    settings: &FitSettings,
) -> Result<f32> {
    let _span = tracing::info_span!("calibrate_threshold", n_kept = kept.len()).entered();
    let size = settings.encoder.image_size_px as usize;
    let mut ids = kept.to_vec();
    ids.sort();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(settings.calibration_seed);
    ids.shuffle(&mut rng);
    let (fit_ids, held_out) =
        if ids.len() >= 4 { ids.split_at(ids.len() / 2) } else { (&ids[..], &ids[..]) };
    let fit_on = train.subset(&in_id_order(fit_ids))?;
    let model = settings
        .detector
        .fit(&fit_on.ids, &fit_on.layers)
        .map_err(|e| Error::during("threshold calibration fit")(e.into()))?;
    let scores = model
        .score(&train.subset(held_out)?.layers, (size, size), settings.test_score)?
        .image_scores;
    Ok(threshold_of(&scores))
}

/// `ids` sorted. Fits sort their rows by id anyway; a subset taken in id order lets them use
/// its rows as they are instead of holding a reordered copy of every kept image's features.
fn in_id_order(ids: &[SampleId]) -> Vec<SampleId> {
    let mut sorted = ids.to_vec();
    sorted.sort();
    sorted
}

/// The `mad(3)` cut of held-out scores, or their maximum when they are all equal.
fn threshold_of(scores: &[f32]) -> f32 {
    llb_purify::robust_upper_fence(scores, 3.0)
        .map_or_else(|| scores.iter().copied().fold(f32::MIN, f32::max), |fence| fence as f32)
}

#[cfg(test)]
mod tests {
    use super::threshold_of;

    #[test]
    fn the_threshold_is_the_mad_rules_cut() {
        assert_eq!(threshold_of(&[1.0, 1.0, 1.0]), 1.0);
        let fence = threshold_of(&[1.0, 2.0, 3.0, 4.0, 100.0]);
        assert!((fence - (3.0 + 3.0 * 1.4826)).abs() < 1e-5, "{fence}");
    }
}
