//! Anomaly-detection metrics at image, sample and pixel level (AUROC, AP, F1max, AUPRO), exact
//! and streaming.
//!
//! Place in the pipeline: the last stage. Detectors (`llb-detect`) turn test images into anomaly
//! maps and image scores; this crate compares them with the ground truth. Inputs are plain
//! slices (`&[f32]` scores, `&[bool]` labels and masks, `true` = anomalous), so it depends on no
//! tensor or image crate and other projects can use it alone.
//!
//! - [`ImageMetrics::exact`]: I-AUROC, I-AP and I-F1max from one score per image.
//! - [`sample_scores`]: fuses camera views into one score per physical sample (max over views,
//!   Real-IAD's S-metrics), keyed by llb-types' `GroupId` or any ordered key.
//! - [`PixelEvaluator`]: P-AUROC, P-AP, P-F1max and P-AUPRO from anomaly maps and masks added
//!   image by image, implemented by [`ExactPixelEvaluator`] (sorts every pixel; the reference)
//!   and [`BinnedPixelEvaluator`] (fixed histograms; memory flat in the number of images, with
//!   an error bound from [`BinnedPixelEvaluator::max_error`]).
//!
//! Invariants:
//! - a higher score means more anomalous;
//! - exact values follow scikit-learn (`roc_auc_score`, `average_precision_score`,
//!   `precision_recall_curve`) including ties, and AUPRO follows `method.md` (8-connected regions
//!   per image, FPR limit [`AUPRO_FPR_LIMIT`], linear interpolation at the limit, area divided
//!   by the limit); golden tests check both to 1e-6;
//! - results do not depend on the order of images or pixels, and nothing is random;
//! - degenerate input (empty, one class only, NaN or infinite scores, mismatched shapes) is an
//!   [`Error`], never a panic or a NaN metric.
//!
//! # Example
//! ```
//! use llb_metrics::{ExactPixelEvaluator, ImageMetrics, PixelEvaluator};
//!
//! let image = ImageMetrics::exact(&[0.1, 0.7, 0.4], &[false, true, false])?;
//! assert_eq!(image.auroc, 1.0);
//!
//! let mut pixels = ExactPixelEvaluator::new();
//! pixels.add(&[0.1, 0.9, 0.2, 0.8], &[false, true, false, true], 2, 2)?;
//! assert_eq!(pixels.finish()?.aupro, 1.0);
//! # Ok::<(), llb_metrics::Error>(())
//! ```

mod curve;
mod error;
mod image;
mod pixel;
mod ranking;
mod regions;
mod sample;

pub use error::{Error, Result};
pub use image::ImageMetrics;
pub use pixel::{
    AUPRO_FPR_LIMIT, BinnedConfig, BinnedPixelEvaluator, ExactPixelEvaluator, PixelEvaluator,
    PixelMetrics,
};
pub use sample::{SampleScores, sample_scores};
