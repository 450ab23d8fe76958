//! Histograms of fused scores, split by label, for plots of the screening stage.

use crate::{Error, FusedScores, Result};
use llb_types::{Label, SampleId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One bin: the half-open score range `[lo, hi)` (the last bin also holds `hi`) and its counts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistogramBin {
    /// Lower edge.
    pub lo: f32,
    /// Upper edge.
    pub hi: f32,
    /// Samples labelled normal.
    pub normal: u32,
    /// Samples labelled anomalous.
    pub anomalous: u32,
    /// Samples without labels (all of them when no labels were given).
    pub unlabeled: u32,
}

/// Equal-width bins over the fused scores' range, plus an optional cut to mark.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Histogram {
    /// The bins, ascending.
    pub bins: Vec<HistogramBin>,
    /// A score to mark, e.g. a [`Selection`](crate::Selection)'s cut.
    pub cut: Option<f32>,
}

impl Histogram {
    /// Counts `fused` in `n_bins` equal-width bins from the minimum to the maximum score (a
    /// width-1 range centred on the value when all scores are equal).
    ///
    /// With `labels`, every sample must be labelled and is counted as normal or anomalous;
    /// without, every sample is counted as unlabeled. The result does not depend on input order.
    ///
    /// # Errors
    /// [`Error::NoBins`] for `n_bins == 0`, [`Error::MissingLabel`] for an unlabeled sample.
    pub fn new(
        fused: &FusedScores,
        labels: Option<&BTreeMap<SampleId, Label>>,
        n_bins: usize,
    ) -> Result<Self> {
        if n_bins == 0 {
            return Err(Error::NoBins { n_bins });
        }
        let scores = fused.anomaly_scores();
        let min = scores.iter().copied().fold(f32::INFINITY, f32::min);
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let (lo, hi) = if min < max {
            (f64::from(min), f64::from(max))
        } else {
            (f64::from(min) - 0.5, f64::from(min) + 0.5)
        };
        let width = (hi - lo) / n_bins as f64;
        let mut bins: Vec<HistogramBin> = (0..n_bins)
            .map(|b| HistogramBin {
                lo: (lo + width * b as f64) as f32,
                hi: if b + 1 == n_bins { hi as f32 } else { (lo + width * (b + 1) as f64) as f32 },
                normal: 0,
                anomalous: 0,
                unlabeled: 0,
            })
            .collect();
        for (id, score) in fused.iter() {
            let b = (((f64::from(score) - lo) / width).floor() as usize).min(n_bins - 1);
            let bin = &mut bins[b];
            match labels.map(|l| l.get(id)) {
                None => bin.unlabeled += 1,
                Some(Some(Label::Normal)) => bin.normal += 1,
                Some(Some(Label::Anomalous)) => bin.anomalous += 1,
                Some(None) => return Err(Error::MissingLabel { sample_id: id.clone() }),
            }
        }
        Ok(Self { bins, cut: None })
    }

    /// The same histogram marking `cut`.
    pub fn with_cut(mut self, cut: f32) -> Self {
        self.cut = Some(cut);
        self
    }

    /// The largest count of any one series in any bin (for scaling plots).
    pub fn max_count(&self) -> u32 {
        self.bins.iter().map(|b| b.normal.max(b.anomalous).max(b.unlabeled)).max().unwrap_or(0)
    }

    /// Total samples counted.
    pub fn total(&self) -> u64 {
        self.bins
            .iter()
            .map(|b| u64::from(b.normal) + u64::from(b.anomalous) + u64::from(b.unlabeled))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fused(scores: &[f32]) -> FusedScores {
        let ids = (0..scores.len()).map(|i| SampleId::new(format!("s{i}"))).collect();
        FusedScores::new("mean", ids, scores.to_vec()).unwrap()
    }

    #[test]
    fn bins_split_the_range_and_count_by_label() {
        let f = fused(&[0.0, 0.1, 0.5, 0.9, 1.0]);
        let labels: BTreeMap<_, _> = (0..5)
            .map(|i| {
                (
                    SampleId::new(format!("s{i}")),
                    if i >= 3 { Label::Anomalous } else { Label::Normal },
                )
            })
            .collect();
        let h = Histogram::new(&f, Some(&labels), 2).unwrap().with_cut(0.5);
        assert_eq!((h.bins[0].lo, h.bins[0].hi, h.bins[1].hi), (0.0, 0.5, 1.0));
        assert_eq!((h.bins[0].normal, h.bins[0].anomalous), (2, 0));
        assert_eq!((h.bins[1].normal, h.bins[1].anomalous, h.bins[1].unlabeled), (1, 2, 0));
        assert_eq!((h.total(), h.max_count(), h.cut), (5, 2, Some(0.5)));
        let plain = Histogram::new(&f, None, 4).unwrap();
        assert_eq!(plain.bins.iter().map(|b| b.unlabeled).collect::<Vec<_>>(), [2, 0, 1, 2]);
    }

    #[test]
    fn constant_scores_and_bad_requests() {
        let h = Histogram::new(&fused(&[2.0, 2.0]), None, 3).unwrap();
        assert_eq!((h.bins[0].lo, h.bins[2].hi, h.bins[1].unlabeled), (1.5, 2.5, 2));
        assert!(matches!(
            Histogram::new(&fused(&[1.0]), None, 0),
            Err(Error::NoBins { n_bins: 0 })
        ));
        let err = Histogram::new(&fused(&[1.0]), Some(&BTreeMap::new()), 2).unwrap_err();
        assert_eq!(err.to_string(), "sample `s0` has no label");
    }
}
