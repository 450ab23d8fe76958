//! `llb fit --decisions decisions.csv`: what a person's keep / drop calls changed, recorded in the
//! model card ([`DecisionsRecord`]) and in `decisions-applied.json` ([`DecisionsApplied`]).
//!
//! The override itself is [`llb_purify::Selection::apply_decisions`]. "Before" is the fit the
//! rule alone gives (its kept set, its threshold, its final model's scores of the reviewed
//! images); "after" is the fit with the decisions. When the decisions change the kept set,
//! `llb fit` fits the final model both ways to report this (stage 1 is shared); otherwise the two
//! are the same fit.

use llb_detect::Detector;
use llb_pipeline::{DecisionsRecord, Extracted, FitSettings};
use llb_purify::{Decision, Decisions, FusedScores, Selection};
use llb_types::SampleId;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::Path;

/// The file `llb fit --decisions` writes into the output folder.
pub(crate) const DECISIONS_APPLIED: &str = "decisions-applied.json";

/// One side of the comparison: a final model's threshold and its scores of the reviewed images.
pub(crate) struct Outcome<'a> {
    /// Images the final model was fitted on.
    pub(crate) n_kept: usize,
    /// The final model and its calibrated threshold (`None` for `llb purify`).
    pub(crate) model: Option<(&'a dyn Detector, f32)>,
}

/// `decisions-applied.json`: the decisions and everything they changed.
#[derive(Debug, Serialize)]
pub(crate) struct DecisionsApplied {
    /// The decisions and the change of the kept set.
    #[serde(flatten)]
    pub(crate) record: DecisionsRecord,
    /// Selection rule and its cut (unchanged by the decisions).
    pub(crate) rule: String,
    pub(crate) cut: f32,
    /// Images the final model trains on, by the rule alone and with the decisions.
    pub(crate) n_kept_before: usize,
    pub(crate) n_kept_after: usize,
    /// Decision thresholds of the two final models (absent for `llb purify`).
    pub(crate) threshold_before: Option<f32>,
    pub(crate) threshold_after: Option<f32>,
    /// Every reviewed image, most suspicious first.
    pub(crate) reviewed: Vec<Reviewed>,
}

/// One reviewed image before and after the decisions.
#[derive(Debug, Serialize)]
pub(crate) struct Reviewed {
    pub(crate) id: SampleId,
    pub(crate) decision: Decision,
    /// The rule's verdict and the final one: `kept` or `dropped`.
    pub(crate) rule_verdict: &'static str,
    pub(crate) verdict: &'static str,
    /// Fused stage-1 score (the same before and after: stage 1 does not change).
    pub(crate) fused_score: f32,
    /// The final model's anomaly score of the image, by the rule's fit and by the decided fit.
    pub(crate) score_before: Option<f32>,
    pub(crate) score_after: Option<f32>,
}

/// Compares the rule's fit (`before`) with the decided fit (`after`) on the reviewed images.
pub(crate) fn compare(
    record: DecisionsRecord,
    fused: &FusedScores,
    rule: &Selection,
    (before, after): (Outcome<'_>, Outcome<'_>),
    train: &Extracted,
    settings: &FitSettings,
) -> anyhow::Result<DecisionsApplied> {
    let reviewed_ids: Vec<&SampleId> = record.decisions.keys().collect();
    let score = |outcome: &Outcome<'_>| -> anyhow::Result<Option<Vec<f32>>> {
        let Some((model, _)) = outcome.model else { return Ok(None) };
        let size = settings.encoder.image_size_px as usize;
        let ids: Vec<SampleId> = reviewed_ids.iter().map(|id| (*id).clone()).collect();
        let mut scores = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(16) {
            let layers = train.subset(chunk)?.layers;
            scores.extend(model.score(&layers, (size, size), settings.test_score)?.image_scores);
        }
        Ok(Some(scores))
    };
    let (scores_before, scores_after) = (score(&before)?, score(&after)?);
    let rule_kept: BTreeSet<&SampleId> = rule.kept.iter().collect();
    let mut reviewed: Vec<Reviewed> = reviewed_ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let decision = record.decisions[*id];
            let word = |kept: bool| if kept { "kept" } else { "dropped" };
            Reviewed {
                id: (*id).clone(),
                decision,
                rule_verdict: word(rule_kept.contains(id)),
                verdict: word(decision == Decision::Keep),
                fused_score: fused.get(id).unwrap_or(f32::NAN),
                score_before: scores_before.as_ref().map(|s| s[i]),
                score_after: scores_after.as_ref().map(|s| s[i]),
            }
        })
        .collect();
    reviewed.sort_by(|a, b| b.fused_score.total_cmp(&a.fused_score).then_with(|| a.id.cmp(&b.id)));
    Ok(DecisionsApplied {
        rule: rule.rule.clone(),
        cut: rule.cut,
        n_kept_before: before.n_kept,
        n_kept_after: after.n_kept,
        threshold_before: before.model.map(|(_, t)| t),
        threshold_after: after.model.map(|(_, t)| t),
        reviewed,
        record,
    })
}

/// Reads `path` as a decisions file (see [`llb_purify::Decisions`]).
pub(crate) fn load(path: &Path) -> anyhow::Result<Decisions> {
    Ok(Decisions::load_csv(path)?)
}
