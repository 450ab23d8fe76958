//! The purity report: how well a selection removed the (hidden) anomalies of a training set.

use crate::{Error, Result, Selection};
use llb_types::{Label, SampleId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Counts and rates of a selection against hidden ground-truth labels.
///
/// "Removed" means dropped by the selection; removing an anomaly is a true positive.
/// Rates that would divide by zero are `None` (shown as `–`), never NaN.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurityReport {
    /// The selection rule's name.
    pub rule: String,
    /// Training samples before selection.
    pub n_samples: usize,
    /// Anomalous training samples before selection.
    pub n_anomalous: usize,
    /// Samples the selection removed.
    pub n_removed: usize,
    /// Anomalous samples among the removed ones.
    pub n_anomalous_removed: usize,
    /// Samples kept.
    pub n_kept: usize,
    /// Anomalous samples among the kept ones.
    pub n_anomalous_kept: usize,
    /// Removal precision: anomalous removed / removed; `None` when nothing was removed.
    pub removal_precision: Option<f64>,
    /// Removal recall: anomalous removed / anomalous; `None` when there was no anomaly.
    pub removal_recall: Option<f64>,
    /// Anomaly fraction of the training set before selection.
    pub anomaly_fraction_before: f64,
    /// Anomaly fraction of the kept set.
    pub anomaly_fraction_after: f64,
}

impl PurityReport {
    /// Scores `selection` against `labels`, which must label every kept and dropped id.
    ///
    /// # Errors
    /// [`Error::MissingLabel`] naming the first unlabeled sample.
    pub fn new(selection: &Selection, labels: &BTreeMap<SampleId, Label>) -> Result<Self> {
        let count_anomalous = |ids: &[SampleId]| -> Result<usize> {
            ids.iter().try_fold(0, |n, id| match labels.get(id) {
                Some(label) => Ok(n + usize::from(label.is_anomalous())),
                None => Err(Error::MissingLabel { sample_id: id.clone() }),
            })
        };
        let n_anomalous_kept = count_anomalous(&selection.kept)?;
        let n_anomalous_removed = count_anomalous(&selection.dropped)?;
        let (n_kept, n_removed) = (selection.kept.len(), selection.dropped.len());
        let n_samples = n_kept + n_removed;
        let n_anomalous = n_anomalous_kept + n_anomalous_removed;
        let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
        Ok(Self {
            rule: selection.rule.clone(),
            n_samples,
            n_anomalous,
            n_removed,
            n_anomalous_removed,
            n_kept,
            n_anomalous_kept,
            removal_precision: ratio(n_anomalous_removed, n_removed),
            removal_recall: ratio(n_anomalous_removed, n_anomalous),
            anomaly_fraction_before: ratio(n_anomalous, n_samples).unwrap_or(0.0),
            anomaly_fraction_after: ratio(n_anomalous_kept, n_kept).unwrap_or(0.0),
        })
    }

    /// The Markdown table header (two lines) matching [`PurityReport::to_markdown`].
    pub fn markdown_header() -> String {
        "| rule | N | anomalous | removed | anomalous removed | kept | anomalous kept | precision | recall | anomaly fraction before → after |\n\
         |---|---|---|---|---|---|---|---|---|---|"
            .to_string()
    }

    /// One Markdown table row; rates with 3 decimals, fractions in percent with 1 decimal.
    pub fn to_markdown(&self) -> String {
        let rate = |r: Option<f64>| r.map_or_else(|| "–".to_string(), |r| format!("{r:.3}"));
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} % → {:.1} % |",
            self.rule,
            self.n_samples,
            self.n_anomalous,
            self.n_removed,
            self.n_anomalous_removed,
            self.n_kept,
            self.n_anomalous_kept,
            rate(self.removal_precision),
            rate(self.removal_recall),
            100.0 * self.anomaly_fraction_before,
            100.0 * self.anomaly_fraction_after,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selection(kept: &[&str], dropped: &[&str]) -> Selection {
        let ids = |v: &[&str]| v.iter().map(|&s| SampleId::new(s)).collect();
        Selection { rule: "r".into(), kept: ids(kept), dropped: ids(dropped), cut: 0.0 }
    }

    fn labels(anomalous: &[&str], normal: &[&str]) -> BTreeMap<SampleId, Label> {
        let a = anomalous.iter().map(|&s| (SampleId::new(s), Label::Anomalous));
        a.chain(normal.iter().map(|&s| (SampleId::new(s), Label::Normal))).collect()
    }

    #[test]
    fn counts_and_rates_by_hand() {
        // 10 samples, 3 anomalous (a1..a3); 4 removed: a1, a2, n1, n2; a3 kept.
        let s = selection(&["n3", "n4", "n5", "n6", "n7", "a3"], &["a1", "a2", "n1", "n2"]);
        let l = labels(&["a1", "a2", "a3"], &["n1", "n2", "n3", "n4", "n5", "n6", "n7"]);
        let r = PurityReport::new(&s, &l).unwrap();
        assert_eq!((r.n_samples, r.n_anomalous, r.n_removed, r.n_anomalous_removed), (10, 3, 4, 2));
        assert_eq!((r.n_kept, r.n_anomalous_kept), (6, 1));
        assert_eq!(r.removal_precision, Some(0.5));
        assert_eq!(r.removal_recall, Some(2.0 / 3.0));
        assert_eq!((r.anomaly_fraction_before, r.anomaly_fraction_after), (0.3, 1.0 / 6.0));
        assert_eq!(
            r.to_markdown(),
            "| r | 10 | 3 | 4 | 2 | 6 | 1 | 0.500 | 0.667 | 30.0 % → 16.7 % |"
        );
        assert_eq!(PurityReport::markdown_header().lines().count(), 2);
        let back: PurityReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn undefined_rates_are_none_not_nan() {
        let r =
            PurityReport::new(&selection(&["n1", "n2"], &[]), &labels(&[], &["n1", "n2"])).unwrap();
        assert_eq!((r.removal_precision, r.removal_recall), (None, None));
        assert_eq!(r.to_markdown(), "| r | 2 | 0 | 0 | 0 | 2 | 0 | – | – | 0.0 % → 0.0 % |");
    }

    #[test]
    fn a_missing_label_is_an_error_naming_the_sample() {
        let err =
            PurityReport::new(&selection(&["n1"], &["x"]), &labels(&[], &["n1"])).unwrap_err();
        assert_eq!(err.to_string(), "sample `x` has no label");
    }
}
