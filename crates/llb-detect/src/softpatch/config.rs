//! SoftPatch's configuration and its presets.

use crate::Result;
use crate::patchcore::config_error;

/// How SoftPatch scores the outlyingness of a training patch among the patches at the same grid
/// position in the other training images.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum OutlierScore {
    /// `1 +` the mean distance to the `k` nearest patches (the reference's `nearest` method is
    /// `k = 1`).
    KnnDistance {
        /// Number of neighbours, at least 1; capped at `n_images − 1`.
        k: usize,
    },
    /// The local outlier factor (Breunig et al., 2000) with `k` neighbours (the reference's
    /// `lof` method); about 1 for inliers.
    Lof {
        /// Number of neighbours, at least 1; capped at `n_images − 1`.
        k: usize,
    },
}

/// Settings of a SoftPatch detector (Jiang et al., "SoftPatch: Unsupervised Anomaly Detection
/// with Noisy Data", NeurIPS 2022): PatchCore whose memory bank is denoised patch by patch
/// before the coreset, with soft re-weighting of test distances.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftPatchConfig {
    /// How outlying each training patch is.
    pub outlier_score: OutlierScore,
    /// Patches whose outlier score exceeds the `1 − noise_fraction` quantile of all scores
    /// (linear interpolation, as `torch.quantile`) are dropped before the coreset, in `[0, 1)`.
    pub noise_fraction: f64,
    /// Multiply a test patch's nearest-neighbour distance by the outlier score of that bank
    /// patch (the paper's soft weighting); `false` is the reference's `--no_soft_weight_flag`.
    pub soft_weighting: bool,
    /// Fraction of the kept patches in the coreset memory bank, in `(0, 1]`.
    pub coreset_fraction: f64,
    /// Dimension of the seeded random projection used by both the outlier scores and the
    /// coreset; `None` uses the full features.
    pub projection_dim: Option<usize>,
    /// Standard deviation, in pixels, of the Gaussian blur of upsampled maps; `0` turns it off.
    pub blur_sigma_px: f64,
    /// Seed of the random projection and of the coreset's starting point.
    pub seed: u64,
}

impl SoftPatchConfig {
    /// The SoftPatch reference code's MVTec scripts (`--weight_method lof --lof_k 6
    /// --threshold 0.15`, sampler `-p 0.1`): LOF with `k = 6`, `noise_fraction = 0.15`, soft
    /// weighting on, a 10 % coreset on a 128-dimensional projection, blur σ = 4.
    pub fn jiang2022() -> Self {
        Self {
            outlier_score: OutlierScore::Lof { k: 6 },
            noise_fraction: 0.15,
            soft_weighting: true,
            coreset_fraction: 0.1,
            projection_dim: Some(128),
            blur_sigma_px: 4.0,
            seed: 0,
        }
    }

    /// [`SoftPatchConfig::jiang2022`] with the reference's `nearest` outlier score (distance to
    /// the nearest patch at the same position, plus 1) instead of LOF.
    pub fn jiang2022_nearest() -> Self {
        Self { outlier_score: OutlierScore::KnnDistance { k: 1 }, ..Self::jiang2022() }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) naming the first invalid field.
    pub fn validate(&self) -> Result<()> {
        let k = match self.outlier_score {
            OutlierScore::KnnDistance { k } | OutlierScore::Lof { k } => k,
        };
        if k == 0 {
            return Err(config_error("outlier_score.k", k, "must be at least 1"));
        }
        if !(0.0..1.0).contains(&self.noise_fraction) {
            return Err(config_error("noise_fraction", self.noise_fraction, "must lie in [0, 1)"));
        }
        let f = self.coreset_fraction;
        if !(f > 0.0 && f <= 1.0) {
            return Err(config_error("coreset_fraction", f, "must lie in (0, 1]"));
        }
        if self.projection_dim == Some(0) {
            return Err(config_error("projection_dim", 0, "must be positive when set"));
        }
        if !(self.blur_sigma_px >= 0.0 && self.blur_sigma_px.is_finite()) {
            return Err(config_error(
                "blur_sigma_px",
                self.blur_sigma_px,
                "must be finite and >= 0",
            ));
        }
        Ok(())
    }
}
