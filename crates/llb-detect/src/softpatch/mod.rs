//! SoftPatch (Jiang et al., NeurIPS 2022): PatchCore with patch-level noise discrimination
//! before the coreset and soft re-weighting of test distances.
//!
//! What is implemented, against the paper and its reference code:
//! - Outlier scores are computed, as in the reference, on the randomly projected features (the
//!   coreset's projection) and per grid position: patch `(y, x)` of image `i` is compared with
//!   patch `(y, x)` of every other training image only.
//! - [`OutlierScore::KnnDistance`] is `1 +` the mean distance to the `k` nearest; with `k = 1`
//!   this is the reference's `nearest` method. [`OutlierScore::Lof`] is the textbook local
//!   outlier factor with the reference's `1e-6` added to distances (the reference's GPU LOF).
//!   The reference's `gaussian` (Mahalanobis) method is not implemented.
//! - Denoising drops patches whose score is above the `1 − noise_fraction` quantile of all
//!   training patches' scores (one global quantile, linear interpolation, as the reference).
//! - The greedy coreset then runs on the kept patches only, keeping `coreset_fraction` of them.
//! - Soft weighting: a test patch's score is its distance to the nearest bank patch times that
//!   bank patch's outlier score (clamped at 0), as the reference's `soft_weight_flag`.
//! - `k` is capped at `n_images − 1`; fewer than two training images is an error.

mod algorithm;
mod config;
mod outlier;
#[cfg(test)]
mod tests;

pub use algorithm::SoftPatch;
pub use config::{OutlierScore, SoftPatchConfig};
