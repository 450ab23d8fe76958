//! The model card `llb.json`: the one record of how a saved model was made and how to use it.
//!
//! Threshold semantics, stated once for the whole workspace: an image whose score under
//! [`FitSettings::test_score`] is **strictly above** [`ModelCard::threshold`]
//! (`score > threshold`) is anomalous; a score equal to the threshold is normal
//! ([`ModelCard::is_anomalous`]).
//!
//! The detector's own file (`detector/model.json`, `llb_detect`'s saved-model format) also has a
//! card; the pipeline writes it with no threshold and checks on load that its encoder weights
//! and score rule are the ones `llb.json` records, so the two cannot disagree silently.

use crate::extract::Extractor;
use crate::settings::FitSettings;
use llb_data::PreprocessConfig;
use llb_purify::{Decision, Decisions, Selection};
use llb_types::SampleId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// The card format this version writes.
pub const FORMAT: u32 = 2;

/// The card formats this version reads. Format 1 (before this crate existed) lacks the data spec
/// and the training-id hash; such a model is refused with [`crate::Error::ModelFormat`]: refit it.
pub(crate) const READABLE_FORMATS: [u32; 1] = [FORMAT];

/// Everything needed to use a fitted model again, with how it was made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    /// Version of this file's layout ([`FORMAT`]).
    pub format: u32,
    /// The fit's settings: encoder, detector, purification rules (stage 1, fusion, selection,
    /// rounds) and the test score rule.
    pub settings: FitSettings,
    /// Lower-case hex SHA-256 of the encoder weights the features came from; a model is only
    /// used with weights of this hash.
    pub weights_sha256: String,
    /// How images are prepared for the encoder (resize, crop, normalisation).
    pub data: PreprocessConfig,
    /// Image-score threshold: a score strictly above it is anomalous (see the module docs).
    pub threshold: f32,
    /// Lower-case hex SHA-256 of the training ids the fit read, sorted, one per line
    /// ([`training_ids_sha256`]).
    pub training_ids_sha256: String,
    /// Training images read.
    pub n_train: usize,
    /// Training images the final model was fitted on.
    pub n_kept: usize,
    /// A person's decisions that overruled the selection rule, and what they changed; absent
    /// when none were given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decisions: Option<DecisionsRecord>,
}

impl ModelCard {
    /// The card of a fit with `settings`: the weights and data spec of `extractor`, the training
    /// ids read, how many the final model was fitted on, its threshold, and a person's decisions.
    pub fn new(
        settings: FitSettings,
        extractor: &Extractor,
        train_ids: &[SampleId],
        n_kept: usize,
        threshold: f32,
        decisions: Option<DecisionsRecord>,
    ) -> Self {
        Self {
            format: FORMAT,
            settings,
            weights_sha256: extractor.key().weights_sha256.clone(),
            data: extractor.preprocess().clone(),
            threshold,
            training_ids_sha256: training_ids_sha256(train_ids),
            n_train: train_ids.len(),
            n_kept,
            decisions,
        }
    }

    /// `score > threshold`: the one place the threshold's direction is decided.
    pub fn is_anomalous(score: f32, threshold: f32) -> bool {
        score > threshold
    }
}

/// SHA-256 (hex) of `ids` sorted, each followed by a line feed: equal for equal sets of ids,
/// whatever their order.
pub fn training_ids_sha256(ids: &[SampleId]) -> String {
    let sorted: BTreeSet<&str> = ids.iter().map(SampleId::as_str).collect();
    let mut text = String::new();
    for id in sorted {
        text.push_str(id);
        text.push('\n');
    }
    llb_types::sha256::sha256_hex(text.as_bytes())
}

/// The decisions a model was fitted with, as the model card records them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionsRecord {
    /// The decisions file, as given.
    pub file: PathBuf,
    /// Every decision in it, by sample id.
    pub decisions: BTreeMap<SampleId, Decision>,
    /// Images the rule dropped and the decisions kept.
    pub kept_added: Vec<SampleId>,
    /// Images the rule kept and the decisions dropped.
    pub kept_removed: Vec<SampleId>,
}

impl DecisionsRecord {
    /// What `decisions` changed in `rule` to give `decided`.
    pub fn new(decisions: &Decisions, rule: &Selection, decided: &Selection) -> Self {
        let before: BTreeSet<&SampleId> = rule.kept.iter().collect();
        let after: BTreeSet<&SampleId> = decided.kept.iter().collect();
        Self {
            file: decisions.source.clone(),
            decisions: decisions.by_id.clone(),
            kept_added: after.difference(&before).map(|id| (*id).clone()).collect(),
            kept_removed: before.difference(&after).map(|id| (*id).clone()).collect(),
        }
    }

    /// `true` when the decisions changed the kept set.
    pub fn changes_kept_set(&self) -> bool {
        !self.kept_added.is_empty() || !self.kept_removed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_training_id_hash_ignores_order_and_sees_every_id() {
        let ids = |names: &[&str]| names.iter().map(|n| SampleId::new(*n)).collect::<Vec<_>>();
        let a = training_ids_sha256(&ids(&["b.png", "a.png"]));
        assert_eq!(a, training_ids_sha256(&ids(&["a.png", "b.png"])));
        assert_ne!(a, training_ids_sha256(&ids(&["a.png"])));
        // The line feed keeps `a` + `b.png` apart from `ab` + `.png`.
        assert_ne!(
            training_ids_sha256(&ids(&["a", "b.png"])),
            training_ids_sha256(&ids(&["ab", ".png"]))
        );
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn a_score_equal_to_the_threshold_is_normal() {
        assert!(!ModelCard::is_anomalous(1.0, 1.0));
        assert!(ModelCard::is_anomalous(1.000_001, 1.0));
    }
}
