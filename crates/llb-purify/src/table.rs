//! The score table: raw anomaly scores of every training sample under every sub-model.

use crate::{Error, Result};
use llb_types::SampleId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// One cell of a [`ScoreTable`]: the raw score a sub-model gave a sample.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreCell {
    /// The sub-model's raw image anomaly score; higher means more anomalous.
    pub anomaly_score: f32,
    /// `true` when the sub-model was trained on this sample (in-subset), `false` otherwise.
    pub in_subset: bool,
}

impl ScoreCell {
    /// A cell for a sample the sub-model was trained on.
    pub fn in_subset(anomaly_score: f32) -> Self {
        Self { anomaly_score, in_subset: true }
    }

    /// A cell for a sample the sub-model never saw.
    pub fn out_of_subset(anomaly_score: f32) -> Self {
        Self { anomaly_score, in_subset: false }
    }
}

/// Raw anomaly scores of N samples under K sub-models: stage 1's output and fusion's input.
///
/// Invariants, checked by [`ScoreTable::new`]: at least 1 sample and 1 model, unique sample ids,
/// unique non-empty model names without line breaks, exactly one cell per (sample, model), every
/// score finite.
/// Rows keep the order they were given in; no rule may depend on it.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreTable {
    sample_ids: Vec<SampleId>,
    models: Vec<String>,
    /// Row-major `[n_samples, n_models]`.
    cells: Vec<ScoreCell>,
}

impl ScoreTable {
    /// Builds a table from model names and one row of cells per sample (cells in model order).
    ///
    /// # Errors
    /// [`Error::NoModels`], [`Error::NoSamples`], [`Error::InvalidModelName`],
    /// [`Error::DuplicateModel`], [`Error::DuplicateSampleId`], [`Error::RaggedRow`] or
    /// [`Error::NonFiniteScore`] when an invariant does not hold.
    pub fn new(models: Vec<String>, rows: Vec<(SampleId, Vec<ScoreCell>)>) -> Result<Self> {
        if models.is_empty() {
            return Err(Error::NoModels);
        }
        if rows.is_empty() {
            return Err(Error::NoSamples);
        }
        let mut seen_models = BTreeSet::new();
        for model in &models {
            if model.is_empty() {
                return Err(Error::InvalidModelName {
                    model: model.clone(),
                    reason: "it is empty",
                });
            }
            if model.contains(['\n', '\r']) {
                return Err(Error::InvalidModelName {
                    model: model.clone(),
                    reason: "it contains a line break",
                });
            }
            if !seen_models.insert(model.as_str()) {
                return Err(Error::DuplicateModel { model: model.clone() });
            }
        }
        let mut seen_ids = BTreeSet::new();
        let mut sample_ids = Vec::with_capacity(rows.len());
        let mut cells = Vec::with_capacity(rows.len() * models.len());
        for (sample_id, row) in rows {
            if row.len() != models.len() {
                return Err(Error::RaggedRow { sample_id, expected: models.len(), got: row.len() });
            }
            for (cell, model) in row.iter().zip(&models) {
                if !cell.anomaly_score.is_finite() {
                    return Err(Error::NonFiniteScore {
                        sample_id,
                        model: model.clone(),
                        value: cell.anomaly_score,
                    });
                }
            }
            if !seen_ids.insert(sample_id.clone()) {
                return Err(Error::DuplicateSampleId { sample_id });
            }
            sample_ids.push(sample_id);
            cells.extend(row);
        }
        Ok(Self { sample_ids, models, cells })
    }

    /// The number of samples N (rows).
    pub fn n_samples(&self) -> usize {
        self.sample_ids.len()
    }

    /// The number of sub-models K (columns).
    pub fn n_models(&self) -> usize {
        self.models.len()
    }

    /// The sample ids, in row order.
    pub fn sample_ids(&self) -> &[SampleId] {
        &self.sample_ids
    }

    /// The model names, in column order.
    pub fn models(&self) -> &[String] {
        &self.models
    }

    /// The cells of row `sample`, one per model.
    ///
    /// # Panics
    /// When `sample >= n_samples()`.
    pub fn row(&self, sample: usize) -> &[ScoreCell] {
        let k = self.n_models();
        &self.cells[sample * k..(sample + 1) * k]
    }

    /// The raw scores of column `model`, in row order.
    ///
    /// # Panics
    /// When `model >= n_models()`.
    pub fn column_scores(&self, model: usize) -> Vec<f32> {
        assert!(model < self.n_models(), "model index {model} out of range");
        self.cells.iter().skip(model).step_by(self.n_models()).map(|c| c.anomaly_score).collect()
    }

    /// Rows as `(sample id, cells)` pairs, in row order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = (&SampleId, &[ScoreCell])> {
        self.sample_ids.iter().zip(self.cells.chunks_exact(self.n_models()))
    }

    /// The same table with its rows reordered: row `i` of the result is row `order[i]` of `self`.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] or [`Error::InvalidParameter`] when `order` is not a permutation
    /// of `0..n_samples()`.
    pub fn permuted(&self, order: &[usize]) -> Result<Self> {
        check_permutation(order, self.n_samples())?;
        let rows =
            order.iter().map(|&i| (self.sample_ids[i].clone(), self.row(i).to_vec())).collect();
        Self::new(self.models.clone(), rows)
    }
}

/// Checks that `order` is a permutation of `0..n`.
pub(crate) fn check_permutation(order: &[usize], n: usize) -> Result<()> {
    if order.len() != n {
        return Err(Error::LengthMismatch { what: "permutation", expected: n, got: order.len() });
    }
    let mut seen = vec![false; n];
    for &i in order {
        if i >= n || std::mem::replace(&mut seen[i], true) {
            return Err(Error::InvalidParameter {
                rule: "permutation".into(),
                parameter: "order",
                value: i.to_string(),
                expected: "each index of 0..n exactly once",
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn row(id: &str, scores: &[f32]) -> (SampleId, Vec<ScoreCell>) {
        (SampleId::new(id), scores.iter().map(|&s| ScoreCell::out_of_subset(s)).collect())
    }

    #[test]
    fn accessors_follow_row_and_column_order() {
        let t = ScoreTable::new(
            models(&["m0", "m1"]),
            vec![row("a", &[1.0, 2.0]), row("b", &[3.0, 4.0])],
        )
        .unwrap();
        assert_eq!((t.n_samples(), t.n_models()), (2, 2));
        assert_eq!(t.column_scores(1), [2.0, 4.0]);
        assert_eq!(t.row(1)[0].anomaly_score, 3.0);
        let p = t.permuted(&[1, 0]).unwrap();
        assert_eq!(p.sample_ids(), [SampleId::new("b"), SampleId::new("a")]);
        assert_eq!(p.column_scores(0), [3.0, 1.0]);
    }

    #[test]
    fn invalid_tables_are_typed_errors() {
        let m = models(&["m0", "m1"]);
        let cases: Vec<(Result<ScoreTable>, &str)> = vec![
            (ScoreTable::new(vec![], vec![row("a", &[])]), "no models"),
            (ScoreTable::new(m.clone(), vec![]), "no samples"),
            (
                ScoreTable::new(m.clone(), vec![row("a", &[1.0])]),
                "sample `a` has 1 score cell(s), expected 2",
            ),
            (
                ScoreTable::new(m.clone(), vec![row("a", &[1.0, 2.0]), row("a", &[1.0, 2.0])]),
                "`a` appears more",
            ),
            (
                ScoreTable::new(m.clone(), vec![row("a", &[1.0, f32::NAN])]),
                "model `m1` is not finite: NaN",
            ),
            // The sign of a NaN (x86's 0/0 is negative) does not let it through.
            (
                ScoreTable::new(m.clone(), vec![row("b", &[-f32::NAN, 1.0])]),
                "sample `b` under model `m0` is not finite: NaN",
            ),
            (
                ScoreTable::new(m.clone(), vec![row("c", &[1.0, f32::NEG_INFINITY])]),
                "sample `c` under model `m1` is not finite: -inf",
            ),
            (ScoreTable::new(models(&["m", "m"]), vec![row("a", &[1.0, 2.0])]), "`m` appears more"),
            (ScoreTable::new(models(&["m\n"]), vec![row("a", &[1.0])]), "line break"),
            (ScoreTable::new(models(&[""]), vec![row("a", &[1.0])]), "empty"),
        ];
        for (got, needle) in cases {
            let msg = got.unwrap_err().to_string();
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
        }
    }

    #[test]
    fn permuted_rejects_non_permutations() {
        let t = ScoreTable::new(models(&["m0"]), vec![row("a", &[1.0]), row("b", &[2.0])]).unwrap();
        assert!(t.permuted(&[0]).is_err());
        assert!(t.permuted(&[0, 0]).is_err());
        assert!(t.permuted(&[0, 2]).is_err());
    }
}
