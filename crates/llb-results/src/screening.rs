//! How well stage 1 ranked a training set whose hidden labels are known.

use serde::{Deserialize, Serialize};

/// Screening quality: the fused stage-1 scores of the training images as a detector of the
/// hidden anomalous ones (higher score = more anomalous).
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
