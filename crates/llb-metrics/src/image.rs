//! Image-level metrics: one score and one label per image, all scores sorted (exact).

use crate::curve::{CurveAccumulator, Totals};
use crate::error::{Error, Result, check_finite};
use crate::ranking::{order_key, positive_key, walk_sorted};

/// Image-level detection quality: how well image scores rank anomalous above normal images.
///
/// Every field lies in `[0, 1]`; higher is better. Scores follow the crate convention: a higher
/// score means more anomalous.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageMetrics {
    /// Area under the ROC curve (scikit-learn's `roc_auc_score`; ties count one half).
    pub auroc: f64,
    /// Average precision (scikit-learn's `average_precision_score`, a step sum).
    pub ap: f64,
    /// Largest F1 score `2PR / (P + R)` over all thresholds (the points of scikit-learn's
    /// `precision_recall_curve`).
    pub f1max: f64,
}

impl ImageMetrics {
    /// Computes the metrics exactly by sorting all scores, with ties handled as scikit-learn
    /// does: every distinct score is one threshold.
    ///
    /// `labels[i]` is `true` when image `i` is anomalous. The order of the images does not
    /// matter. Time `O(n log n)`, memory `O(n)`.
    ///
    /// # Errors
    /// [`Error::Empty`] for no scores, [`Error::LengthMismatch`] when `labels` and `scores`
    /// differ in length, [`Error::NonFinite`] for a NaN or infinite score, and
    /// [`Error::NoPositives`] / [`Error::NoNegatives`] when one class is missing.
    pub fn exact(scores: &[f32], labels: &[bool]) -> Result<Self> {
        let what = "image scores";
        if scores.is_empty() {
            return Err(Error::Empty { what: what.into() });
        }
        if labels.len() != scores.len() {
            return Err(Error::LengthMismatch {
                what: "image labels".into(),
                expected: scores.len(),
                got: labels.len(),
            });
        }
        check_finite(|| what.into(), scores)?;
        let mut negatives = Vec::new();
        let mut positives = Vec::new();
        for (&score, &anomalous) in scores.iter().zip(labels) {
            if anomalous {
                positives.push(positive_key(score, 1));
            } else {
                negatives.push(order_key(score));
            }
        }
        let totals = check_totals(what, positives.len() as u64, negatives.len() as u64, 0)?;
        negatives.sort_unstable();
        positives.sort_unstable();
        let mut acc = CurveAccumulator::new(totals, 1.0);
        walk_sorted(&negatives, &positives, &mut acc);
        let values = acc.finish();
        Ok(Self { auroc: values.auroc, ap: values.ap, f1max: values.f1max })
    }
}

/// Builds [`Totals`], rejecting a curve with a missing class.
pub(crate) fn check_totals(what: &str, n_pos: u64, n_neg: u64, n_regions: u64) -> Result<Totals> {
    let n_items = n_pos + n_neg;
    if n_pos == 0 {
        return Err(Error::NoPositives { what: what.into(), n_items });
    }
    if n_neg == 0 {
        return Err(Error::NoNegatives { what: what.into(), n_items });
    }
    Ok(Totals { n_pos, n_neg, n_regions })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(scores: &[f32], labels: &[u8], expected: [f64; 3]) {
        let labels: Vec<bool> = labels.iter().map(|&l| l == 1).collect();
        let got = ImageMetrics::exact(scores, &labels).unwrap();
        let got = [got.auroc, got.ap, got.f1max];
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-12, "got {got:?}, expected {expected:?}");
        }
    }

    #[test]
    fn perfect_and_inverted_rankings() {
        check(&[0.1, 0.2, 0.8, 0.9], &[0, 0, 1, 1], [1.0, 1.0, 1.0]);
        // Inverted: AP = (1/2)(1/3) + (1/2)(2/4) = 5/12; F1max at the lowest threshold = 2/3.
        check(&[0.9, 0.8, 0.2, 0.1], &[0, 0, 1, 1], [0.0, 5.0 / 12.0, 2.0 / 3.0]);
    }

    #[test]
    fn ties_count_one_half() {
        // All scores equal: one threshold, AUROC 1/2, precision 1/2 at recall 1.
        check(&[0.5; 4], &[0, 1, 0, 1], [0.5, 0.5, 2.0 / 3.0]);
        // scikit-learn: roc_auc_score([0,0,1,1],[0.1,0.4,0.35,0.8]) = 0.75.
        check(&[0.1, 0.4, 0.35, 0.8], &[0, 0, 1, 1], [0.75, 0.8333333333333333, 0.8]);
    }

    #[test]
    fn signed_zeros_tie() {
        check(&[-0.0, 0.0], &[0, 1], [0.5, 0.5, 2.0 / 3.0]);
    }

    #[test]
    fn degenerate_inputs_are_errors() {
        assert!(matches!(ImageMetrics::exact(&[], &[]), Err(Error::Empty { .. })));
        assert!(matches!(
            ImageMetrics::exact(&[0.1, 0.2], &[true]),
            Err(Error::LengthMismatch { .. })
        ));
        assert!(matches!(
            ImageMetrics::exact(&[0.1, 0.2], &[true, true]),
            Err(Error::NoNegatives { .. })
        ));
        assert!(matches!(
            ImageMetrics::exact(&[0.1, 0.2], &[false, false]),
            Err(Error::NoPositives { .. })
        ));
        let err = ImageMetrics::exact(&[0.1, f32::NAN], &[true, false]).unwrap_err();
        assert!(matches!(err, Error::NonFinite { index: 1, .. }), "{err}");
        let err = ImageMetrics::exact(&[f32::INFINITY, 0.0], &[true, false]).unwrap_err();
        assert!(matches!(err, Error::NonFinite { index: 0, .. }), "{err}");
        // A negative NaN (x86's 0/0) is caught too.
        let err = ImageMetrics::exact(&[0.3, -f32::NAN], &[true, false]).unwrap_err();
        assert!(matches!(err, Error::NonFinite { index: 1, .. }), "{err}");
    }
}
