//! The [`Selector`] trait, the extension point for selection rules, and its output [`Selection`].

use crate::{Error, FusedScores, Result};
use llb_types::SampleId;
use serde::{Deserialize, Serialize};

/// A selection rule: decides which samples to keep for stage 2 from their fused scores.
///
/// The trait is object-safe; registries hand out `Box<dyn Selector>`.
///
/// Contract (checked by the conformance kit in `llb_purify::testing`, feature `testing`):
/// kept and dropped partition the input ids, at least one sample is kept (or an `Err`), the
/// result is deterministic, and permuting the input keeps the same kept id set.
/// Build the output with [`Selection::from_keep_mask`], which enforces the first two.
pub trait Selector: Send + Sync {
    /// The rule's kebab-case name including its parameters, e.g. `keep-fraction(0.2)`.
    fn name(&self) -> String;

    /// Chooses the samples to keep.
    ///
    /// # Errors
    /// When the rule would keep nothing or a parameter is out of range.
    fn select(&self, fused: &FusedScores) -> Result<Selection>;
}

impl<S: Selector + ?Sized> Selector for Box<S> {
    fn name(&self) -> String {
        (**self).name()
    }

    fn select(&self, fused: &FusedScores) -> Result<Selection> {
        (**self).select(fused)
    }
}

/// The outcome of a selection rule.
///
/// `kept` and `dropped` partition the input ids; both are ordered by ascending fused score, ties
/// by ascending id, so the value does not depend on the input order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// The selection rule's name.
    pub rule: String,
    /// The purified set: the ids to train the final model on.
    pub kept: Vec<SampleId>,
    /// The ids removed as suspected anomalies.
    pub dropped: Vec<SampleId>,
    /// The cut: the largest fused score among kept samples. Every dropped sample scores ≥ `cut`
    /// (equal only when a keep-count splits a tie, which is then broken by id), unless a person
    /// overruled the rule ([`Selection::apply_decisions`] keeps the rule's cut).
    pub cut: f32,
}

impl Selection {
    /// Builds a selection from one keep flag per entry of `fused` (in its order).
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] when `keep` has the wrong length, [`Error::EmptySelection`] when
    /// nothing is kept, [`Error::Rule`] when a dropped sample scores below a kept one.
    pub fn from_keep_mask(
        rule: impl Into<String>,
        fused: &FusedScores,
        keep: &[bool],
    ) -> Result<Self> {
        let rule = rule.into();
        if keep.len() != fused.len() {
            return Err(Error::LengthMismatch {
                what: "keep mask",
                expected: fused.len(),
                got: keep.len(),
            });
        }
        let scores = fused.anomaly_scores();
        let (mut kept, mut dropped) = (Vec::new(), Vec::new());
        for i in fused.ascending_order() {
            if keep[i] { kept.push(i) } else { dropped.push(i) }
        }
        let Some(&last_kept) = kept.last() else {
            return Err(Error::EmptySelection { rule, n_samples: fused.len() });
        };
        let cut = scores[last_kept];
        if let Some(&first_dropped) = dropped.first()
            && scores[first_dropped] < cut
        {
            return Err(Error::Rule {
                rule,
                message: format!(
                    "dropped `{}` (score {}) scores below kept `{}` (score {cut}); a selection keeps the lowest scores",
                    fused.sample_ids()[first_dropped],
                    scores[first_dropped],
                    fused.sample_ids()[last_kept],
                ),
            });
        }
        let ids = |v: Vec<usize>| v.into_iter().map(|i| fused.sample_ids()[i].clone()).collect();
        Ok(Self { rule, kept: ids(kept), dropped: ids(dropped), cut })
    }

    /// The number of candidate samples (kept + dropped).
    pub fn n_samples(&self) -> usize {
        self.kept.len() + self.dropped.len()
    }
}
