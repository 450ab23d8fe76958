//! The [`PixelEvaluator`] trait shared by the exact and the streaming evaluator, and the checks
//! every added image passes.

use crate::curve::CurveValues;
use crate::error::{Error, Result, check_finite};

/// The false-positive-rate limit of AUPRO: the PRO curve is integrated over FPR ∈ [0, 0.3] and
/// the area divided by 0.3 (MVTec AD's protocol, `method.md`).
pub const AUPRO_FPR_LIMIT: f64 = 0.3;

/// Pixel-level segmentation quality, all in `[0, 1]`, higher is better.
///
/// Computed at the resolution of the maps and masks given to the evaluator: the evaluators never
/// resize, so a caller that upsamples maps to the mask size reports mask-resolution metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixelMetrics {
    /// Area under the ROC curve over all pixels of all images (ties count one half).
    pub auroc: f64,
    /// Average precision over all pixels (scikit-learn's step sum).
    pub ap: f64,
    /// Largest pixel F1 score over all thresholds.
    pub f1max: f64,
    /// Area under the per-region-overlap curve for FPR ≤ [`AUPRO_FPR_LIMIT`], divided by that
    /// limit. A region is an 8-connected component of one image's mask; PRO(τ) is the mean over
    /// all regions of the fraction of the region's pixels scoring ≥ τ; FPR(τ) is the fraction
    /// of all normal pixels scoring ≥ τ.
    pub aupro: f64,
}

impl PixelMetrics {
    pub(crate) fn from_values(values: CurveValues) -> Self {
        Self {
            auroc: values.auroc,
            ap: values.ap,
            f1max: values.f1max,
            aupro: values.aupro.unwrap_or_default(),
        }
    }
}

/// Accumulates anomaly maps one image at a time, then computes [`PixelMetrics`].
///
/// Object safe, so a caller can pick [`ExactPixelEvaluator`](crate::ExactPixelEvaluator) or
/// [`BinnedPixelEvaluator`](crate::BinnedPixelEvaluator) at run time.
pub trait PixelEvaluator: Send {
    /// Adds one image: `map` holds `width × height` anomaly scores in row-major order (higher
    /// means more anomalous) and `mask` the ground truth of the same pixels (`true` =
    /// anomalous). An all-`false` mask is a normal image.
    ///
    /// # Errors
    /// [`Error::Empty`] for a zero-sized image, [`Error::ShapeMismatch`] when `map` or `mask`
    /// does not hold `width × height` values, [`Error::NonFinite`] for a NaN or infinite score.
    /// A rejected image leaves the evaluator unchanged.
    fn add(&mut self, map: &[f32], mask: &[bool], width: usize, height: usize) -> Result<()>;

    /// Computes the metrics of every image added so far. More images may be added afterwards.
    ///
    /// # Errors
    /// [`Error::Empty`] when no image was added, [`Error::NoPositives`] when no pixel is
    /// anomalous, [`Error::NoNegatives`] when no pixel is normal.
    fn finish(&mut self) -> Result<PixelMetrics>;
}

/// Validates one image before an evaluator touches its state.
pub(crate) fn check_image(
    image: usize,
    map: &[f32],
    mask: &[bool],
    width: usize,
    height: usize,
) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(Error::Empty {
            what: format!("anomaly map of image {image} ({width}×{height})"),
        });
    }
    for (what, got) in [("anomaly map", map.len()), ("mask", mask.len())] {
        if got != width * height {
            return Err(Error::ShapeMismatch { image, what, width, height, got });
        }
    }
    check_finite(|| format!("anomaly map of image {image}"), map)
}

/// The error for finishing an evaluator that saw no image.
pub(crate) fn no_images() -> Error {
    Error::Empty { what: "pixel evaluator (no anomaly maps added)".into() }
}
