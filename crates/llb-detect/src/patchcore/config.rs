//! PatchCore's configuration and its presets.

use crate::{Error, Result};

/// Settings of a PatchCore detector (Roth et al., "Towards Total Recall in Industrial Anomaly
/// Detection", CVPR 2022).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchCoreConfig {
    /// Fraction of the training patches kept in the memory bank, in `(0, 1]`, chosen by
    /// [`PatchCoreConfig::bank_sampling`]; `1` keeps every patch.
    pub coreset_fraction: f64,
    /// How the bank's patches are chosen: the paper's greedy k-center coreset, or a uniform
    /// random sample keyed to sample ids. Absent in files written before it existed: greedy.
    #[serde(default)]
    pub bank_sampling: BankSampling,
    /// How a test patch's anomaly score is read from the bank. Absent in files written before
    /// it existed: [`PatchScore::Nearest`] (PatchCore).
    #[serde(default)]
    pub patch_score: PatchScore,
    /// Dimension of the seeded random projection the coreset distances are computed in; `None`
    /// selects on the full features.
    pub projection_dim: Option<usize>,
    /// `Some(b)`: multiply the image score by the paper's softmax weight over the `b` bank
    /// neighbours of the nearest bank patch of the most anomalous test patch (`b ≥ 2`); `None`:
    /// no re-weighting.
    pub reweight_neighbours: Option<usize>,
    /// Standard deviation, in pixels, of the Gaussian blur applied to upsampled maps; `0` turns
    /// the blur off.
    pub blur_sigma_px: f64,
    /// Seed of the random projection, the coreset's starting image and the random bank sample.
    pub seed: u64,
}

/// How a memory bank is subsampled from the training patches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BankSampling {
    /// Greedy k-center coreset (PatchCore): covers feature space, so rare patterns, including
    /// defects in a contaminated training set, are kept preferentially.
    #[default]
    GreedyCoreset,
    /// A uniform random sample of patches, each patch's draw keyed to its sample id and grid
    /// position: keeps the training set's density, so rare patterns stay rare.
    Random,
}

/// How a test patch is scored against the memory bank (higher = more anomalous).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PatchScore {
    /// The distance to the nearest bank patch (PatchCore).
    #[default]
    Nearest,
    /// The mean distance to the `k` nearest bank patches (at most the bank size).
    MeanOfNearest {
        /// Number of bank patches averaged, at least 1.
        k: usize,
    },
    /// For each training image with patches in the bank, the distance to its nearest such
    /// patch; the score is the `⌈fraction · images⌉`-th smallest of these. A patch is normal
    /// when many *different* images hold a similar one, so a defect that recurs in a few
    /// contaminating images still scores high, while one image's many defect patches cannot
    /// vouch for each other.
    KthNearestImage {
        /// Fraction of the bank's images that must hold a similar patch, in `(0, 1]`.
        fraction: f64,
    },
}

impl PatchCoreConfig {
    /// The PatchCore paper and its reference code (amazon-science/patchcore-inspection):
    /// a 10 % coreset on a 128-dimensional random projection, 1-NN patch scores without image
    /// re-weighting (the released code does not re-weight), blur σ = 4.
    pub fn roth2022() -> Self {
        Self {
            coreset_fraction: 0.1,
            bank_sampling: BankSampling::GreedyCoreset,
            patch_score: PatchScore::Nearest,
            projection_dim: Some(128),
            reweight_neighbours: None,
            blur_sigma_px: 4.0,
            seed: 0,
        }
    }

    /// anomalib's `Patchcore` defaults (`coreset_sampling_ratio = 0.1`, `num_neighbors = 9`):
    /// the same coreset, with the paper's softmax re-weighting of the image score over 9
    /// neighbours.
    pub fn anomalib() -> Self {
        Self { reweight_neighbours: Some(9), ..Self::roth2022() }
    }

    /// llb's stage-1 density screener (chosen on benchmark v2; see `docs/purification.md`):
    /// a uniform random bank of 10 % of the training patches, keyed to sample ids, and 1-NN
    /// patch scores. A random bank keeps the training set's density, so a defect that recurs
    /// in a few contaminating images stays rare in the bank, where PatchCore's greedy coreset
    /// keeps it preferentially. Measured screening AUROC at α = 0.2 (seeds 0 and 1): grass
    /// 0.76 against 0.69 with the greedy 10 % coreset, gravel 0.85 against 0.79; a 25 % random
    /// bank, 3-NN means and k-th-nearest-image scores differed from it by less than the spread
    /// between seeds and cost up to 2.5 times as much.
    pub fn llb_density_screen() -> Self {
        Self {
            coreset_fraction: 0.1,
            bank_sampling: BankSampling::Random,
            patch_score: PatchScore::Nearest,
            ..Self::roth2022()
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first invalid field.
    pub fn validate(&self) -> Result<()> {
        let f = self.coreset_fraction;
        if !(f > 0.0 && f <= 1.0) {
            return Err(config_error("coreset_fraction", f, "must lie in (0, 1]"));
        }
        match self.patch_score {
            PatchScore::Nearest => {}
            PatchScore::MeanOfNearest { k: 0 } => {
                return Err(config_error("patch_score.k", 0, "must be at least 1"));
            }
            PatchScore::MeanOfNearest { .. } => {}
            PatchScore::KthNearestImage { fraction } if !(fraction > 0.0 && fraction <= 1.0) => {
                return Err(config_error("patch_score.fraction", fraction, "must lie in (0, 1]"));
            }
            PatchScore::KthNearestImage { .. } => {}
        }
        if self.projection_dim == Some(0) {
            return Err(config_error("projection_dim", 0, "must be positive when set"));
        }
        if let Some(b) = self.reweight_neighbours
            && b < 2
        {
            return Err(config_error("reweight_neighbours", b, "must be at least 2 when set"));
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

/// Builds an [`Error::Config`].
pub(crate) fn config_error(
    field: &'static str,
    value: impl std::fmt::Display,
    reason: &'static str,
) -> Error {
    Error::Config { field, value: value.to_string(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_round_trip() {
        for config in [
            PatchCoreConfig::roth2022(),
            PatchCoreConfig::anomalib(),
            PatchCoreConfig::llb_density_screen(),
        ] {
            config.validate().unwrap();
            let json = serde_json::to_string(&config).unwrap();
            assert_eq!(serde_json::from_str::<PatchCoreConfig>(&json).unwrap(), config);
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let check = |config: PatchCoreConfig, field: &str| match config.validate() {
            Err(Error::Config { field: got, .. }) => assert_eq!(got, field),
            other => panic!("expected a config error on {field}, got {other:?}"),
        };
        check(
            PatchCoreConfig { coreset_fraction: 0.0, ..PatchCoreConfig::roth2022() },
            "coreset_fraction",
        );
        check(
            PatchCoreConfig { coreset_fraction: f64::NAN, ..PatchCoreConfig::roth2022() },
            "coreset_fraction",
        );
        check(
            PatchCoreConfig {
                patch_score: PatchScore::MeanOfNearest { k: 0 },
                ..PatchCoreConfig::roth2022()
            },
            "patch_score.k",
        );
        check(
            PatchCoreConfig {
                patch_score: PatchScore::KthNearestImage { fraction: 0.0 },
                ..PatchCoreConfig::roth2022()
            },
            "patch_score.fraction",
        );
        check(
            PatchCoreConfig { projection_dim: Some(0), ..PatchCoreConfig::roth2022() },
            "projection_dim",
        );
        check(
            PatchCoreConfig { reweight_neighbours: Some(1), ..PatchCoreConfig::roth2022() },
            "reweight_neighbours",
        );
        check(
            PatchCoreConfig { blur_sigma_px: -1.0, ..PatchCoreConfig::roth2022() },
            "blur_sigma_px",
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let json = r#"{"coreset_fraction":0.1,"projection_dim":128,"reweight_neighbours":null,
            "blur_sigma_px":4.0,"seed":0,"threshold":0.5}"#;
        assert!(serde_json::from_str::<PatchCoreConfig>(json).is_err());
    }
}
