//! A saved model folder: `llb.json` (how the model was made and its threshold) and `detector/`
//! (the detector in `llb-detect`'s saved-model format).

use super::backbone::FittedDetector;
use super::twostage::FitSettings;
use anyhow::Context;
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Everything needed to use a fitted model again, with how it was made.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModelCard {
    /// Version of this file's layout.
    pub(crate) format: u32,
    /// The fit's settings (encoder, detector, stage 1, test score rule).
    pub(crate) settings: FitSettings,
    /// SHA-256 of the encoder weights the features came from.
    pub(crate) weights_sha256: String,
    /// Image-score threshold: a new image scoring above it is called anomalous.
    pub(crate) threshold: f32,
    /// Training images read.
    pub(crate) n_train: usize,
    /// Training images the final model was fitted on.
    pub(crate) n_kept: usize,
    /// A person's decisions that overruled the selection rule (`llb fit --decisions`), and what
    /// they changed; absent when none were given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) decisions: Option<crate::review::DecisionsRecord>,
}

const CARD: &str = "llb.json";
const DETECTOR: &str = "detector";

/// Writes the detector, then the card, into `dir` (each file atomically).
pub(crate) fn save(
    dir: &Path,
    card: &ModelCard,
    detector_card: &llb_detect::ModelCard,
    model: &FittedDetector,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let detector_dir = dir.join(DETECTOR);
    model
        .save(&detector_dir, detector_card)
        .with_context(|| format!("writing {}", detector_dir.display()))?;
    write_json(&dir.join(CARD), card)
}

/// Reads a model folder written by [`save`].
pub(crate) fn load(dir: &Path, device: &Device) -> anyhow::Result<(ModelCard, FittedDetector)> {
    let path = dir.join(CARD);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let card: ModelCard =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    anyhow::ensure!(card.format == 1, "{}: unknown format {}", path.display(), card.format);
    let model = FittedDetector::load(&card.settings.detector, &dir.join(DETECTOR), device)
        .with_context(|| format!("reading {}", dir.join(DETECTOR).display()))?;
    Ok((card, model))
}

/// Pretty JSON, written atomically.
pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(value)?;
    llb_assets::write_atomic(path, &json)
        .map(|_| ())
        .with_context(|| format!("writing {}", path.display()))
}
