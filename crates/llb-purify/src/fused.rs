//! Fused scores: one anomaly score per sample, the output of an [`Aggregator`](crate::Aggregator).

use crate::{Error, Result};
use llb_types::SampleId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// One fused anomaly score per sample (higher means more anomalous), with the rule that made it.
///
/// Invariants, checked by [`FusedScores::new`]: ids unique, one finite score per id.
/// Entries keep the order they were given in (for fusion: the score table's row order).
/// Serialises as `{"rule", "sample_ids", "anomaly_scores"}`; deserialising re-checks the invariants.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "FusedScoresFields")]
pub struct FusedScores {
    rule: String,
    sample_ids: Vec<SampleId>,
    anomaly_scores: Vec<f32>,
}

/// The serialised form of [`FusedScores`], validated on the way in.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FusedScoresFields {
    rule: String,
    sample_ids: Vec<SampleId>,
    anomaly_scores: Vec<f32>,
}

impl TryFrom<FusedScoresFields> for FusedScores {
    type Error = Error;

    fn try_from(f: FusedScoresFields) -> Result<Self> {
        Self::new(f.rule, f.sample_ids, f.anomaly_scores)
    }
}

impl FusedScores {
    /// Wraps scores computed elsewhere; `rule` names where they came from.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`], [`Error::NoSamples`], [`Error::DuplicateSampleId`] or
    /// [`Error::NonFiniteFused`].
    pub fn new(
        rule: impl Into<String>,
        sample_ids: Vec<SampleId>,
        anomaly_scores: Vec<f32>,
    ) -> Result<Self> {
        let rule = rule.into();
        if sample_ids.len() != anomaly_scores.len() {
            return Err(Error::LengthMismatch {
                what: "fused scores",
                expected: sample_ids.len(),
                got: anomaly_scores.len(),
            });
        }
        if sample_ids.is_empty() {
            return Err(Error::NoSamples);
        }
        let mut seen = BTreeSet::new();
        for (id, &value) in sample_ids.iter().zip(&anomaly_scores) {
            if !value.is_finite() {
                return Err(Error::NonFiniteFused { rule, sample_id: id.clone(), value });
            }
            if !seen.insert(id) {
                return Err(Error::DuplicateSampleId { sample_id: id.clone() });
            }
        }
        Ok(Self { rule, sample_ids, anomaly_scores })
    }

    /// The name of the rule that produced the scores.
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.sample_ids.len()
    }

    /// Always `false`: fused scores hold at least one sample.
    pub fn is_empty(&self) -> bool {
        self.sample_ids.is_empty()
    }

    /// The sample ids, in input order.
    pub fn sample_ids(&self) -> &[SampleId] {
        &self.sample_ids
    }

    /// The fused scores, parallel to [`FusedScores::sample_ids`].
    pub fn anomaly_scores(&self) -> &[f32] {
        &self.anomaly_scores
    }

    /// `(id, score)` pairs in input order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&SampleId, f32)> {
        self.sample_ids.iter().zip(self.anomaly_scores.iter().copied())
    }

    /// The score of one sample, if present (a linear search).
    pub fn get(&self, sample_id: &SampleId) -> Option<f32> {
        self.iter().find(|(id, _)| *id == sample_id).map(|(_, s)| s)
    }

    /// Input positions ordered by ascending score, ties broken by ascending [`SampleId`].
    ///
    /// This order depends only on the (id, score) pairs, never on the input order.
    pub fn ascending_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by(|&a, &b| {
            self.anomaly_scores[a]
                .total_cmp(&self.anomaly_scores[b])
                .then_with(|| self.sample_ids[a].cmp(&self.sample_ids[b]))
        });
        order
    }

    /// The same scores with entries reordered: entry `i` of the result is entry `order[i]`.
    ///
    /// # Errors
    /// When `order` is not a permutation of `0..len()`.
    pub fn permuted(&self, order: &[usize]) -> Result<Self> {
        crate::table::check_permutation(order, self.len())?;
        Ok(Self {
            rule: self.rule.clone(),
            sample_ids: order.iter().map(|&i| self.sample_ids[i].clone()).collect(),
            anomaly_scores: order.iter().map(|&i| self.anomaly_scores[i]).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<SampleId> {
        names.iter().map(|&n| SampleId::new(n)).collect()
    }

    #[test]
    fn ascending_order_breaks_ties_by_id() {
        let f = FusedScores::new("input", ids(&["c", "a", "b", "d"]), vec![0.5, 0.5, 0.1, 0.5])
            .unwrap();
        assert_eq!(f.ascending_order(), [2, 1, 0, 3]);
        assert_eq!(f.get(&SampleId::new("b")), Some(0.1));
        assert_eq!(f.get(&SampleId::new("z")), None);
    }

    #[test]
    fn json_round_trips_and_is_validated() {
        let f = FusedScores::new("mean", ids(&["a", "b"]), vec![0.1, 2.5]).unwrap();
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(json, r#"{"rule":"mean","sample_ids":["a","b"],"anomaly_scores":[0.1,2.5]}"#);
        assert_eq!(serde_json::from_str::<FusedScores>(&json).unwrap(), f);
        let dup = r#"{"rule":"mean","sample_ids":["a","a"],"anomaly_scores":[0.1,2.5]}"#;
        assert!(
            serde_json::from_str::<FusedScores>(dup)
                .unwrap_err()
                .to_string()
                .contains("`a` appears more")
        );
    }

    #[test]
    fn invalid_scores_are_typed_errors() {
        let msg = |r: Result<FusedScores>| r.unwrap_err().to_string();
        assert!(
            msg(FusedScores::new("r", ids(&["a"]), vec![])).contains("expected 1 entries, got 0")
        );
        assert!(
            msg(FusedScores::new("r", ids(&["a"]), vec![f32::INFINITY])).contains("sample `a`")
        );
        assert!(
            msg(FusedScores::new("r", ids(&["a", "a"]), vec![1.0, 2.0]))
                .contains("`a` appears more")
        );
        assert!(msg(FusedScores::new("r", vec![], vec![])).contains("no samples"));
    }
}
