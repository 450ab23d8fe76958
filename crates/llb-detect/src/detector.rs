//! The detector interface every backbone implements: fit on features, score into anomaly maps.

use crate::Result;
use candle_core::Tensor;

/// Rule that turns an anomaly map into one image score (higher = more anomalous).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum ImageScoreRule {
    /// The maximum of the map (PatchCore; the paper's test score).
    Max,
    /// The mean of the top `fraction` of map values (Dinomaly; the paper's screening score uses
    /// `0.01`). At least one value is always used.
    TopMean {
        /// Fraction of map values averaged, in `(0, 1]`.
        fraction: f32,
    },
}

/// A fitted detector.
///
/// Input features are what the detector's encoder produced for a batch of images: one tensor per
/// encoder layer, each `[N, C, h, w]` f32, in the same image order for every layer.
/// Implementations are deterministic: the same model and features give bit-identical maps.
pub trait Detector: Send + Sync {
    /// A short name with the parameters that matter, e.g. `patchcore(coreset=0.1)`.
    fn name(&self) -> String;

    /// Anomaly maps `[N, H, W]` f32 at `image_size_px = (H, W)`, upsampled and blurred as the
    /// detector's paper prescribes; higher means more anomalous.
    ///
    /// # Errors
    /// Features whose number of layers, channels or grid differ from those the model was fitted
    /// on.
    fn anomaly_maps(&self, layers: &[Tensor], image_size_px: (usize, usize)) -> Result<Tensor>;
}

/// A detector configuration that can be fitted on training features.
pub trait Fit {
    /// The fitted model.
    type Model: Detector;

    /// Fits a fresh model on the features of the training images (same layout as
    /// [`Detector::anomaly_maps`]). Every random choice is seeded from the configuration.
    ///
    /// # Errors
    /// Empty or inconsistent features, or a failure of the tensor backend.
    fn fit(&self, layers: &[Tensor]) -> Result<Self::Model>;
}
