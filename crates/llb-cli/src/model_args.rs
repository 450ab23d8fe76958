//! Command-line options that choose the backbone and the stage-1 rules, turned into
//! [`FitSettings`] (checked before any image is read).

use anyhow::Context;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use llb_detect::{
    DinomalyConfig, ImageScoreRule, PatchCoreConfig, SoftPatchConfig, TrainingLength,
};
use llb_features::PatchAggregatorConfig;
use llb_pipeline::{
    DetectorSettings, EncoderKind, EncoderSettings, FitSettings, OnBadImage, PurifySettings,
};
use llb_submodel::{PartitionConfig, PartitionMode, Stage1Config};

/// A parser for a library enum that reads its own names (`FromStr`), listing `names` in
/// `--help` and in the error.
fn named<T>(names: impl IntoIterator<Item = &'static str>) -> impl TypedValueParser<Value = T>
where
    T: std::str::FromStr<Err = String> + Clone + Send + Sync + 'static,
{
    PossibleValuesParser::new(names).try_map(|name: String| name.parse::<T>())
}

/// The `--encoder` parser.
pub(crate) fn encoder_kind() -> impl TypedValueParser<Value = EncoderKind> {
    named(EncoderKind::ALL.map(|(_, name)| name))
}

/// The `--on-bad-image` parser.
pub(crate) fn on_bad_image() -> impl TypedValueParser<Value = OnBadImage> {
    named(OnBadImage::NAMES)
}

/// The detectors `--detector` can choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DetectorKind {
    /// PatchCore (memory bank of patch features, nearest-neighbour distance).
    Patchcore,
    /// SoftPatch (PatchCore with LOF patch denoising and soft re-weighting).
    Softpatch,
    /// Dinomaly (decoder trained to reconstruct DINOv2 blocks 2..9; the CPU-scale preset).
    Dinomaly,
}

/// The stage-1 sub-models `--submodel` can choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SubmodelKind {
    /// The final detector (the paper's choice).
    Same,
    /// `PatchCoreConfig::llb_density_screen`: a screener whose memory keeps the training set's
    /// density, so recurring defects in a few images stay rare (the default: it screened best
    /// on benchmark v2, `docs/purification.md`).
    Density,
}

/// Model options shared by `fit`, `purify` and `experiment`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ModelArgs {
    /// Detector fitted in both stages.
    #[arg(long, value_enum, default_value = "patchcore")]
    pub(crate) detector: DetectorKind,
    /// Dinomaly training length in epochs (passes over the training set), instead of the
    /// preset's fixed iteration count.
    #[arg(long)]
    pub(crate) epochs: Option<f64>,
    /// Frozen encoder.
    #[arg(long, value_parser = encoder_kind(), default_value = "dinov2-vits14")]
    pub(crate) encoder: EncoderKind,
    /// Encoder blocks feeding the detector (0-based, comma-separated; default 3,5 for DINOv2,
    /// 4,10 for EfficientNet-Lite0, whose two grids are merged by PatchCore's aggregation, and
    /// 2..9 for Dinomaly).
    #[arg(long, value_delimiter = ',')]
    pub(crate) layers: Option<Vec<usize>>,
    /// Square input side in pixels (a multiple of the encoder's patch size).
    #[arg(long, default_value_t = 224)]
    pub(crate) image_size: u32,
    /// Fraction of training patches kept in the memory bank (PatchCore, SoftPatch).
    #[arg(long, default_value_t = 0.1)]
    pub(crate) coreset_fraction: f64,
    /// Number of sub-models K in stage 1.
    #[arg(long, short = 'k', default_value_t = 3)]
    pub(crate) k: usize,
    /// Keep the views of one physical sample in one block (Real-IAD).
    #[arg(long)]
    pub(crate) group_aware: bool,
    /// Fusion rule of the sub-models' scores: mean, max, max-var, mean-out, median,
    /// trimmed-mean(p), rank-mean, zscore-mean.
    #[arg(long, default_value = "mean")]
    pub(crate) fusion: String,
    /// Selection rule: keep-fraction(t) keeps the ⌊t·N⌋ most normal images; mad(z) and gmm-split
    /// decide from the fused scores how many to drop (they dropped too few on benchmark v2,
    /// `docs/purification.md`).
    #[arg(long, default_value = llb_pipeline::DEFAULT_SELECTION)]
    pub(crate) selection: String,
    /// Stage-1 sub-model: `density` the density screener `PatchCoreConfig::llb_density_screen`
    /// (a random 10 % memory bank with 1-NN scores), `same` the final detector on every subset
    /// (the paper's choice).
    #[arg(long, value_enum, default_value = "density")]
    pub(crate) submodel: SubmodelKind,
    /// A JSON file holding the sub-model detector's full settings (as in `llb.json`'s
    /// `settings.detector`); overrides `--submodel`.
    #[arg(long)]
    pub(crate) submodel_config: Option<std::path::PathBuf>,
    /// Screening rounds: each further round refits the sub-models without the images the
    /// previous round dropped.
    #[arg(long, default_value_t = 1)]
    pub(crate) rounds: usize,
    /// Fit the detector on every training image (the baseline without purification).
    #[arg(long)]
    pub(crate) no_purify: bool,
    /// Seed of every random choice (partition, coreset, Dinomaly's weights and batches,
    /// calibration split).
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
}

impl ModelArgs {
    /// The settings these options describe, with the rules checked.
    ///
    /// # Errors
    /// An unreadable or invalid `--submodel-config`, or an unknown fusion or selection rule
    /// (`llb_pipeline::Error::Rule`, an input error).
    pub(crate) fn settings(&self) -> anyhow::Result<FitSettings> {
        let detector = match self.detector {
            DetectorKind::Patchcore => DetectorSettings::Patchcore(PatchCoreConfig {
                coreset_fraction: self.coreset_fraction,
                seed: self.seed,
                ..PatchCoreConfig::roth2022()
            }),
            DetectorKind::Softpatch => DetectorSettings::Softpatch(SoftPatchConfig {
                coreset_fraction: self.coreset_fraction,
                seed: self.seed,
                ..SoftPatchConfig::jiang2022()
            }),
            DetectorKind::Dinomaly => {
                let mut config = DinomalyConfig::llb_cpu();
                config.seed = self.seed;
                if let Some(epochs) = self.epochs {
                    config.length = TrainingLength::Epochs(epochs);
                }
                DetectorSettings::Dinomaly(config)
            }
        };
        let default_layers = match (self.detector, self.encoder) {
            (DetectorKind::Dinomaly, _) => (2..=9).collect(),
            (_, EncoderKind::Dinov2Vits14) => vec![3, 5],
            (_, EncoderKind::EfficientnetLite0) => vec![4, 10],
        };
        let layers = self.layers.clone().unwrap_or(default_layers);
        let mode = if self.group_aware { PartitionMode::GroupAware } else { PartitionMode::Random };
        let submodel = match (&self.submodel_config, self.submodel) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let detector: DetectorSettings = serde_json::from_str(&text)
                    .with_context(|| format!("parsing {}", path.display()))?;
                Some(detector.with_seed(self.seed))
            }
            (None, SubmodelKind::Same) => None,
            (None, SubmodelKind::Density) => Some(DetectorSettings::Patchcore(PatchCoreConfig {
                seed: self.seed,
                ..PatchCoreConfig::llb_density_screen()
            })),
        };
        let purify = (!self.no_purify).then(|| PurifySettings {
            stage1: Stage1Config {
                partition: PartitionConfig { k: self.k, seed: self.seed, mode },
                screening_score: ImageScoreRule::TopMean { fraction: 0.01 },
                batch_size: 16,
            },
            submodel,
            fusion: self.fusion.clone(),
            selection: self.selection.clone(),
            rounds: self.rounds,
        });
        // PatchCore-style detectors merge CNN grids with the patch aggregation; Dinomaly
        // reconstructs the blocks as they are.
        let aggregation = (self.encoder == EncoderKind::EfficientnetLite0
            && self.detector != DetectorKind::Dinomaly)
            .then(PatchAggregatorConfig::anomalib);
        let settings = FitSettings {
            encoder: EncoderSettings {
                kind: self.encoder,
                layers,
                image_size_px: self.image_size,
                aggregation,
            },
            detector,
            purify,
            test_score: ImageScoreRule::Max,
            calibration_seed: self.seed,
        };
        settings.check()?;
        Ok(settings)
    }
}

/// The settings `llb fit` builds from these model flags (tests).
#[cfg(test)]
pub(crate) fn settings_from_flags(flags: &[&str]) -> FitSettings {
    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        model: ModelArgs,
    }
    let args =
        <Flags as clap::Parser>::parse_from(std::iter::once("llb").chain(flags.iter().copied()));
    args.model.settings().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `llb fit` with no options fits what a library user gets from `FitSettings::default()`.
    #[test]
    fn no_flags_give_the_library_defaults() {
        assert_eq!(settings_from_flags(&[]), FitSettings::default());
        assert_ne!(settings_from_flags(&["--k", "5"]), FitSettings::default());
    }

    fn defaults(extra: &[&str]) -> serde_json::Value {
        serde_json::to_value(settings_from_flags(extra)).unwrap()
    }

    /// The committed benchmark's purified rows are what `llb fit` does with no options, so the
    /// README's numbers describe the defaults a user gets.
    #[test]
    fn the_benchmark_manifest_runs_llb_fit_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../xtask/manifests/benchmark.json");
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let backbones = &manifest["backbones"];
        let settings = |i: usize| {
            let parsed: FitSettings =
                serde_json::from_value(backbones[i]["settings"].clone()).unwrap();
            serde_json::to_value(parsed).unwrap()
        };
        assert_eq!(backbones[0]["name"], "patchcore");
        assert_eq!(settings(0), defaults(&[]));
        assert_eq!(backbones[1]["name"], "softpatch");
        assert_eq!(settings(1), defaults(&["--detector", "softpatch"]));
    }
}
