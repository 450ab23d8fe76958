//! The two stages on extracted training features: stage-1 screening (sub-models, fusion,
//! selection), stage-2 fit on the kept ids, and an unsupervised decision threshold.

use super::backbone::{DetectorSettings, EncoderSettings, FittedDetector};
use super::extract::Extracted;
use anyhow::Context;
use llb_detect::{Detector, Fit, ImageScoreRule};
use llb_purify::{AggregatorRegistry, Purification, ScoreTable, SelectorRegistry};
use llb_submodel::{MapObserver, Stage1Config, TrainingSet, run_stage1_observed};
use llb_types::{GroupId, SampleId};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Stage-1 settings: the sub-models' detector, partition and score, and the fusion and selection
/// rules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PurifySettings {
    /// K, seed, partition mode and screening score.
    pub(crate) stage1: Stage1Config,
    /// The detector fitted on each subset; `None` uses the final detector (the paper's choice).
    /// The framework wraps any detector, and the best screener need not be the best final model.
    #[serde(default)]
    pub(crate) submodel: Option<DetectorSettings>,
    /// Fusion rule, e.g. `mean` or `trimmed-mean(0.1)` (see `llb_purify::BuiltinAggregator`).
    pub(crate) fusion: String,
    /// Selection rule, e.g. `keep-fraction(0.8)` or `mad(3.5)`.
    pub(crate) selection: String,
    /// Screening rounds, at least 1: round r + 1 refits every sub-model on its block minus the
    /// images round r dropped, scores every image again and selects again; the last round's
    /// selection is the result. Absent in files written before it existed: 1 (the paper).
    #[serde(default = "one_round")]
    pub(crate) rounds: usize,
}

fn one_round() -> usize {
    1
}

impl PurifySettings {
    /// Resolves the fusion and selection rules through the built-in registries and checks the
    /// round count, so that a typo fails before any image is read.
    ///
    /// # Errors
    /// An unknown or malformed rule (the message lists the known names), or `rounds = 0`.
    pub(crate) fn check_rules(&self) -> anyhow::Result<()> {
        AggregatorRegistry::with_builtins()
            .build(&self.fusion)
            .with_context(|| format!("fusion rule `{}`", self.fusion))?;
        SelectorRegistry::with_builtins()
            .build(&self.selection)
            .with_context(|| format!("selection rule `{}`", self.selection))?;
        anyhow::ensure!(self.rounds >= 1, "rounds = 0: stage 1 needs at least one round");
        Ok(())
    }
}

/// Everything `llb fit` decides, saved next to the model so that a run can be repeated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FitSettings {
    /// The frozen encoder.
    pub(crate) encoder: EncoderSettings,
    /// The detector used for sub-models and for the final model.
    pub(crate) detector: DetectorSettings,
    /// Stage 1; `None` fits the detector on every training image (`--no-purify`).
    pub(crate) purify: Option<PurifySettings>,
    /// Image score of new images (the paper's test score is the maximum of the map).
    pub(crate) test_score: ImageScoreRule,
    /// Seed of the split used to calibrate the decision threshold.
    pub(crate) calibration_seed: u64,
}

impl FitSettings {
    /// The same settings with every seed (detector, sub-model, partition, calibration) set to
    /// `seed`: one replicate of an experiment.
    pub(crate) fn with_seed(&self, seed: u64) -> Self {
        let mut out = self.clone();
        out.detector = self.detector.with_seed(seed);
        out.calibration_seed = seed;
        if let Some(purify) = out.purify.as_mut() {
            purify.stage1.partition.seed = seed;
            purify.submodel = purify.submodel.as_ref().map(|d| d.with_seed(seed));
        }
        out
    }
}

/// Stage-1 results.
pub(crate) struct Screening {
    /// Every training sample scored by every sub-model.
    pub(crate) table: ScoreTable,
    /// Fused scores and the kept / dropped ids.
    pub(crate) purification: Purification,
}

/// The fitted pipeline.
pub(crate) struct TwoStage {
    /// The final detector, fitted on `kept`.
    pub(crate) model: FittedDetector,
    /// Stage-1 results, unless purification was off.
    pub(crate) screening: Option<Screening>,
    /// Ids the final detector was fitted on.
    pub(crate) kept: Vec<SampleId>,
}

/// Stage 1: sub-models, score table, fusion and selection; `None` when purification is off.
pub(crate) fn screen(
    train: &Extracted,
    groups: &[Option<GroupId>],
    settings: &FitSettings,
    cache_key: &str,
    resume_dir: Option<&Path>,
) -> anyhow::Result<Option<Screening>> {
    screen_observed(train, groups, settings, cache_key, resume_dir, None)
}

/// [`screen`], showing every stage-1 anomaly map to `maps` (see `llb_submodel::MapObserver`).
pub(crate) fn screen_observed(
    train: &Extracted,
    groups: &[Option<GroupId>],
    settings: &FitSettings,
    cache_key: &str,
    resume_dir: Option<&Path>,
    mut maps: Option<&mut dyn MapObserver>,
) -> anyhow::Result<Option<Screening>> {
    let Some(purify) = &settings.purify else { return Ok(None) };
    let size = settings.encoder.image_size_px as usize;
    let submodel = purify.submodel.as_ref().unwrap_or(&settings.detector);
    let cache_key = format!("{}|{cache_key}", serde_json::to_string(submodel)?);
    let aggregator = AggregatorRegistry::with_builtins().build(&purify.fusion)?;
    let selector = SelectorRegistry::with_builtins().build(&purify.selection)?;
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
        let out =
            run_stage1_observed(submodel, &set, &purify.stage1, &cache_key, resume_dir, observer)
                .context("stage 1 (sub-models)")?;
        let purification = llb_purify::purify(&out.table, aggregator.as_ref(), selector.as_ref())?;
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
pub(crate) fn fit_final(
    train: &Extracted,
    settings: &FitSettings,
    screening: Option<Screening>,
) -> anyhow::Result<TwoStage> {
    let kept = match &screening {
        Some(s) => s.purification.selection.kept.clone(),
        None => train.ids.clone(),
    };
    let _span = tracing::info_span!("stage2", n_fit = kept.len()).entered();
    let subset = train.subset(&kept)?;
    let model =
        settings.detector.fit(&subset.ids, &subset.layers).context("stage 2 (final model)")?;
    Ok(TwoStage { model, screening, kept })
}

/// An unsupervised threshold: a detector fitted on a seeded half of the kept images scores the
/// other half (images it has not seen), and the threshold is the robust upper fence
/// `median + 3 · 1.4826 · MAD` of those scores (their maximum when the MAD is zero). A model fitted
/// on half the data scores a little higher than the final one, which makes the threshold
/// conservative (fewer false alarms).
pub(crate) fn calibrate_threshold(
    train: &Extracted,
    kept: &[SampleId],
    settings: &FitSettings,
) -> anyhow::Result<f32> {
    let _span = tracing::info_span!("calibrate_threshold", n_kept = kept.len()).entered();
    let size = settings.encoder.image_size_px as usize;
    let mut ids = kept.to_vec();
    ids.sort();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(settings.calibration_seed);
    ids.shuffle(&mut rng);
    let (fit_ids, held_out) =
        if ids.len() >= 4 { ids.split_at(ids.len() / 2) } else { (&ids[..], &ids[..]) };
    let fit_on = train.subset(fit_ids)?;
    let model =
        settings.detector.fit(&fit_on.ids, &fit_on.layers).context("threshold calibration fit")?;
    let scores = model
        .score(&train.subset(held_out)?.layers, (size, size), settings.test_score)?
        .image_scores;
    Ok(robust_upper_fence(&scores))
}

/// `median + 3 · 1.4826 · MAD`, or the maximum when the MAD is zero.
pub(crate) fn robust_upper_fence(scores: &[f32]) -> f32 {
    let median = |v: &mut Vec<f32>| {
        v.sort_by(f32::total_cmp);
        let n = v.len();
        if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
    };
    let mut sorted = scores.to_vec();
    let m = median(&mut sorted);
    let mut deviations: Vec<f32> = scores.iter().map(|s| (s - m).abs()).collect();
    let mad = median(&mut deviations);
    let max = scores.iter().copied().fold(f32::MIN, f32::max);
    if mad > 0.0 { m + 3.0 * 1.4826 * mad } else { max }
}

#[cfg(test)]
mod tests {
    use super::robust_upper_fence;

    #[test]
    fn upper_fence() {
        assert_eq!(robust_upper_fence(&[1.0, 1.0, 1.0]), 1.0);
        let fence = robust_upper_fence(&[1.0, 2.0, 3.0, 4.0, 100.0]);
        assert!((fence - (3.0 + 3.0 * 1.4826)).abs() < 1e-5, "{fence}");
    }
}
