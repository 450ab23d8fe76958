//! What a fit decides, as plain serialisable values: the encoder, the detector, the purification
//! rules and the test score; rules are resolved into typed values before any image is read.

use crate::backbone::{DetectorSettings, EncoderKind, EncoderSettings};
use crate::error::{Error, Result};
use llb_detect::{ImageScoreRule, PatchCoreConfig};
use llb_purify::{Aggregator, AggregatorRegistry, Selector, SelectorRegistry};
use llb_submodel::{PartitionConfig, PartitionMode, Stage1Config};
use serde::{Deserialize, Serialize};

/// Stage-1 settings: the sub-models' detector, partition and score, and the fusion and selection
/// rules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurifySettings {
    /// K, seed, partition mode and screening score.
    pub stage1: Stage1Config,
    /// The detector fitted on each subset; `None` uses the final detector (the paper's choice).
    /// The framework wraps any detector, and the best screener need not be the best final model.
    #[serde(default)]
    pub submodel: Option<DetectorSettings>,
    /// Fusion rule, e.g. `mean` or `trimmed-mean(0.1)` (see `llb_purify::BuiltinAggregator`).
    pub fusion: String,
    /// Selection rule, e.g. `keep-fraction(0.8)` or `mad(3.5)`.
    pub selection: String,
    /// Screening rounds, at least 1: round r + 1 refits every sub-model on its block minus the
    /// images round r dropped, scores every image again and selects again; the last round's
    /// selection is the result. Absent in files written before it existed: 1 (the paper).
    #[serde(default = "one_round")]
    pub rounds: usize,
}

fn one_round() -> usize {
    1
}

/// The fusion and selection rules of [`PurifySettings`], resolved through the built-in
/// registries.
pub struct Rules {
    /// The fusion rule.
    pub fusion: Box<dyn Aggregator>,
    /// The selection rule.
    pub selection: Box<dyn Selector>,
}

impl PurifySettings {
    /// Resolves the fusion and selection rules through the built-in registries and checks the
    /// round count, so that a typo fails before any image is read.
    ///
    /// # Errors
    /// [`Error::Rule`] for an unknown or malformed rule (its message lists the known names),
    /// [`Error::Settings`] for `rounds = 0`.
    pub fn rules(&self) -> Result<Rules> {
        let fusion = AggregatorRegistry::with_builtins().build(&self.fusion).map_err(|source| {
            Error::Rule { kind: "fusion", rule: self.fusion.clone(), source: Box::new(source) }
        })?;
        let selection =
            SelectorRegistry::with_builtins().build(&self.selection).map_err(|source| {
                Error::Rule {
                    kind: "selection",
                    rule: self.selection.clone(),
                    source: Box::new(source),
                }
            })?;
        if self.rounds == 0 {
            return Err(Error::Settings("rounds = 0: stage 1 needs at least one round".into()));
        }
        Ok(Rules { fusion, selection })
    }
}

/// Everything a fit decides, saved in the model card so that a run can be repeated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitSettings {
    /// The frozen encoder.
    pub encoder: EncoderSettings,
    /// The detector used for sub-models and for the final model.
    pub detector: DetectorSettings,
    /// Stage 1; `None` fits the detector on every training image (no purification).
    pub purify: Option<PurifySettings>,
    /// Image score of new images (the paper's test score is the maximum of the map).
    pub test_score: ImageScoreRule,
    /// Seed of the split used to calibrate the decision threshold.
    pub calibration_seed: u64,
}

/// The selection rule of [`FitSettings::default`] (chosen on benchmark v2,
/// `docs/purification.md`).
pub const DEFAULT_SELECTION: &str = "keep-fraction(0.6)";

impl Default for FitSettings {
    /// What `llb fit` does with no options: DINOv2 ViT-S/14 blocks 3 and 5 at 224 px, PatchCore
    /// (Roth et al. 2022) as the final detector, K = 3 density-screen sub-models
    /// (`PatchCoreConfig::llb_density_screen`), mean fusion, [`DEFAULT_SELECTION`], one round, the
    /// maximum of the map as the image score, seed 0.
    fn default() -> Self {
        let seed = 0;
        Self {
            encoder: EncoderSettings {
                kind: EncoderKind::Dinov2Vits14,
                layers: vec![3, 5],
                image_size_px: 224,
                aggregation: None,
            },
            detector: DetectorSettings::Patchcore(PatchCoreConfig {
                seed,
                ..PatchCoreConfig::roth2022()
            }),
            purify: Some(PurifySettings {
                stage1: Stage1Config {
                    partition: PartitionConfig { k: 3, seed, mode: PartitionMode::Random },
                    screening_score: ImageScoreRule::TopMean { fraction: 0.01 },
                    batch_size: 16,
                },
                submodel: Some(DetectorSettings::Patchcore(PatchCoreConfig {
                    seed,
                    ..PatchCoreConfig::llb_density_screen()
                })),
                fusion: "mean".into(),
                selection: DEFAULT_SELECTION.into(),
                rounds: 1,
            }),
            test_score: ImageScoreRule::Max,
            calibration_seed: seed,
        }
    }
}

impl FitSettings {
    /// Checks everything that can be checked without an image: the purification rules
    /// ([`PurifySettings::rules`]). Every entry point calls it before reading data.
    ///
    /// # Errors
    /// As [`PurifySettings::rules`].
    pub fn check(&self) -> Result<()> {
        self.purify.as_ref().map(PurifySettings::rules).transpose().map(|_| ())
    }

    /// The same settings with every seed (detector, sub-model, partition, calibration) set to
    /// `seed`: one replicate of an experiment.
    pub fn with_seed(&self, seed: u64) -> Self {
        let mut out = self.clone();
        out.detector = self.detector.with_seed(seed);
        out.calibration_seed = seed;
        if let Some(purify) = out.purify.as_mut() {
            purify.stage1.partition.seed = seed;
            purify.submodel = purify.submodel.as_ref().map(|d| d.with_seed(seed));
        }
        out
    }
}
