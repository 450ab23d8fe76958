//! How well stage 1 ranks a training set whose hidden labels are known: the fused scores as a
//! detector of the anomalous training images.

use crate::error::{Error, Result};
use llb_types::{Label, SampleId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Screening quality: the fused stage-1 scores of the training images as a detector of the
/// hidden anomalous ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScreeningQuality {
    /// AUROC of the fused scores against the hidden labels.
    pub auroc: f64,
    /// Average precision of the same.
    pub ap: f64,
    /// 10th, 50th and 90th percentiles of the fused scores of the normal training images.
    pub normal_quantiles: [f64; 3],
    /// The same percentiles for the anomalous training images.
    pub anomalous_quantiles: [f64; 3],
}

impl ScreeningQuality {
    /// The quality of `fused` against `labels` (every scored id must have one); `None` when the
    /// training set is not labelled both ways (no anomaly, or no normal image).
    ///
    /// # Errors
    /// An id without a label, or a metric failure.
    pub fn of(
        fused: &llb_purify::FusedScores,
        labels: &BTreeMap<SampleId, Label>,
    ) -> Result<Option<Self>> {
        let mut scores = Vec::with_capacity(fused.sample_ids().len());
        let mut anomalous = Vec::with_capacity(scores.capacity());
        for (id, score) in fused.iter() {
            let label =
                labels.get(id).ok_or_else(|| Error::Settings(format!("no label for {id}")))?;
            scores.push(score);
            anomalous.push(label.is_anomalous());
        }
        if anomalous.iter().all(|&a| a) || !anomalous.iter().any(|&a| a) {
            return Ok(None);
        }
        let metrics = llb_metrics::ImageMetrics::exact(&scores, &anomalous)?;
        let quantiles = |want: bool| {
            let mut v: Vec<f64> = scores
                .iter()
                .zip(&anomalous)
                .filter(|(_, a)| **a == want)
                .map(|(s, _)| f64::from(*s))
                .collect();
            v.sort_by(f64::total_cmp);
            [0.1, 0.5, 0.9]
                .map(|q| v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)])
        };
        Ok(Some(Self {
            auroc: metrics.auroc,
            ap: metrics.ap,
            normal_quantiles: quantiles(false),
            anomalous_quantiles: quantiles(true),
        }))
    }
}
