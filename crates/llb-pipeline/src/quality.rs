//! How well stage 1 ranks a training set whose hidden labels are known: the fused scores as a
//! detector of the anomalous training images.

use crate::error::{Error, Result};
use llb_results::ScreeningQuality;
use llb_types::{Label, SampleId};
use std::collections::BTreeMap;

/// The [`ScreeningQuality`] (a record of llb-results) of `fused` against `labels` (every scored
/// id must have one); `None` when the training set is not labelled both ways (no anomaly, or no
/// normal image).
///
/// # Errors
/// An id without a label, or a metric failure.
pub fn screening_quality(
    fused: &llb_purify::FusedScores,
    labels: &BTreeMap<SampleId, Label>,
) -> Result<Option<ScreeningQuality>> {
    let mut scores = Vec::with_capacity(fused.sample_ids().len());
    let mut anomalous = Vec::with_capacity(scores.capacity());
    for (id, score) in fused.iter() {
        let label = labels.get(id).ok_or_else(|| Error::Settings(format!("no label for {id}")))?;
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
        [0.1, 0.5, 0.9].map(|q| v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)])
    };
    Ok(Some(ScreeningQuality {
        auroc: metrics.auroc,
        ap: metrics.ap,
        normal_quantiles: quantiles(false),
        anomalous_quantiles: quantiles(true),
    }))
}
