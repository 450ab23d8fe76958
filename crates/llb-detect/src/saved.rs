//! Saving and loading fitted memory-bank detectors: a safetensors file of tensors plus a JSON
//! file with the model card, the detector's configuration and the tensors' checksum.
//!
//! A saved model is a folder holding [`MODEL_TENSORS_FILE`] and [`MODEL_CARD_FILE`]. Both are
//! written atomically (temporary file, then rename), tensors first, so a crash leaves either
//! the old model, or a JSON file whose checksum does not match (a load error), never a silently
//! mixed model. Loading restores the exact f32 bits, so a loaded model scores bit-identically.
//! Memory-bank models also write [`PROVENANCE_FILE`](crate::PROVENANCE_FILE) (where each bank
//! patch came from), tied to the tensors' checksum; a folder without it loads without provenance.

use crate::dinomaly::{DinomalyConfig, DinomalyModel, FeatureShape};
use crate::patchcore::{PatchCore, PatchCoreConfig, load_provenance, save_provenance};
use crate::softpatch::{SoftPatch, SoftPatchConfig};
use crate::{Detector, Error, ImageScoreRule, Result};
use candle_core::{DType, Device, Tensor};
use llb_types::InputSpec;
use llb_types::sha256::sha256_hex;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Name of the tensors file inside a saved-model folder.
pub const MODEL_TENSORS_FILE: &str = "model.safetensors";
/// Name of the JSON file inside a saved-model folder.
pub const MODEL_CARD_FILE: &str = "model.json";
/// The [`SavedModel::format_version`] this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// What a user of a saved model needs besides the detector: which encoder produced its features,
/// how images were prepared, and how image scores are thresholded. The CLI fills it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    /// The encoder's name (llb-features' `Encoder::name`), e.g.
    /// `dinov2-vits14[2,3,4,5,6,7,8,9]`.
    pub encoder: String,
    /// Lower-case hex SHA-256 of the encoder's weights file.
    pub encoder_weights_sha256: String,
    /// Normalisation and size constraints of the encoder's input.
    pub input_spec: InputSpec,
    /// The `(height, width)` images are resized to before encoding, in pixels.
    pub image_size_px: [usize; 2],
    /// How an anomaly map becomes an image score.
    pub image_score_rule: ImageScoreRule,
    /// Image scores at or above this are called anomalous; `None` until calibrated.
    pub image_score_threshold: Option<f32>,
}

/// The detector-specific half of a saved model.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
#[non_exhaustive]
pub enum DetectorState {
    /// A [`PatchCore`] model; tensor `bank` `[K, D]`.
    #[serde(rename = "patchcore")]
    PatchCore {
        /// The configuration it was fitted with.
        config: PatchCoreConfig,
        /// The feature grid `(h, w)` it was fitted on.
        grid: [usize; 2],
    },
    /// A [`SoftPatch`] model; tensors `bank` `[K, D]` and, with soft weighting, `bank_weights`
    /// `[K]`.
    #[serde(rename = "softpatch")]
    SoftPatch {
        /// The configuration it was fitted with.
        config: SoftPatchConfig,
        /// The feature grid `(h, w)` it was fitted on.
        grid: [usize; 2],
    },
    /// A [`DinomalyModel`]; tensors are the bottleneck and decoder weights under the official
    /// Dinomaly state-dict names (`bottleneck.0.fc1.weight`, `decoder.3.attn.qkv.bias`, ...).
    #[serde(rename = "dinomaly")]
    Dinomaly {
        /// The configuration it was fitted with (boxed: it is much larger than the other
        /// variants).
        config: Box<DinomalyConfig>,
        /// The encoder feature shape it was fitted on.
        feature_shape: FeatureShape,
        /// Optimiser steps it was trained for.
        iterations_trained: usize,
    },
}

/// The JSON file of a saved model.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedModel {
    /// Version of this layout ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Encoder, preprocessing and threshold.
    pub card: ModelCard,
    /// Detector kind, configuration and grid.
    pub detector: DetectorState,
    /// Lower-case hex SHA-256 of the tensors file.
    pub tensors_sha256: String,
}

impl SavedModel {
    /// Reads and checks the JSON file of the saved model in `dir`, without loading tensors.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Json`], or [`Error::BadModel`] for another format version.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MODEL_CARD_FILE);
        let bytes =
            std::fs::read(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
        let saved: Self = serde_json::from_slice(&bytes)
            .map_err(|source| Error::Json { path: path.clone(), source })?;
        if saved.format_version != FORMAT_VERSION {
            let reason = format!(
                "format_version {} (this build reads {FORMAT_VERSION})",
                saved.format_version
            );
            return Err(Error::BadModel { path, reason });
        }
        Ok(saved)
    }
}

impl PatchCore {
    /// Saves the model and `card` into folder `dir` (created if missing).
    ///
    /// # Errors
    /// [`Error::Io`] and tensor-backend failures.
    pub fn save(&self, dir: &Path, card: &ModelCard) -> Result<()> {
        let detector =
            DetectorState::PatchCore { config: self.config().clone(), grid: self.grid().into() };
        let mut tensors = BTreeMap::from([("bank".to_string(), self.bank().clone())]);
        if let Some(images) = self.bank_images() {
            let images = Tensor::from_slice(images, images.len(), self.bank().device())?;
            tensors.insert("bank_images".to_string(), images);
        }
        let sha = write(dir, card, detector, tensors)?;
        save_provenance(dir, self.provenance(), &sha)
    }

    /// Loads a PatchCore model saved by [`PatchCore::save`] onto `device`.
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Json`], or [`Error::BadModel`] for a checksum mismatch, another
    /// detector kind, or missing or misshapen tensors.
    pub fn load(dir: &Path, device: &Device) -> Result<(Self, ModelCard)> {
        let (saved, mut tensors) = read(dir, device)?;
        match saved.detector {
            DetectorState::PatchCore { config, grid } => {
                let bank = take(&mut tensors, "bank", dir)?;
                check_bank(&bank, None, grid, dir)?;
                let images = match tensors.remove("bank_images") {
                    Some(t) if t.dims() == [bank.dim(0)?] && t.dtype() == DType::U32 => {
                        Some(t.to_vec1::<u32>()?)
                    }
                    Some(t) => {
                        let reason = format!(
                            "`bank_images` must be [{}] u32, got {:?}",
                            bank.dim(0)?,
                            t.dims()
                        );
                        return Err(Error::BadModel { path: dir.to_path_buf(), reason });
                    }
                    None => None,
                };
                let mut model =
                    Self::from_parts(config, bank, grid.into(), images).map_err(|e| {
                        Error::BadModel { path: dir.to_path_buf(), reason: e.to_string() }
                    })?;
                model.inner.provenance =
                    load_provenance(dir, &saved.tensors_sha256, model.bank_len(), model.grid())?;
                Ok((model, saved.card))
            }
            other => Err(wrong_kind(dir, "patchcore", &other)),
        }
    }
}

impl SoftPatch {
    /// Saves the model and `card` into folder `dir` (created if missing).
    ///
    /// # Errors
    /// [`Error::Io`] and tensor-backend failures.
    pub fn save(&self, dir: &Path, card: &ModelCard) -> Result<()> {
        let detector =
            DetectorState::SoftPatch { config: self.config().clone(), grid: self.grid().into() };
        let mut tensors = BTreeMap::from([("bank".to_string(), self.bank().clone())]);
        if let Some(w) = self.bank_weights() {
            tensors.insert("bank_weights".to_string(), w.clone());
        }
        let sha = write(dir, card, detector, tensors)?;
        save_provenance(dir, self.provenance(), &sha)
    }

    /// Loads a SoftPatch model saved by [`SoftPatch::save`] onto `device`.
    ///
    /// # Errors
    /// As [`PatchCore::load`].
    pub fn load(dir: &Path, device: &Device) -> Result<(Self, ModelCard)> {
        let (saved, mut tensors) = read(dir, device)?;
        match saved.detector {
            DetectorState::SoftPatch { config, grid } => {
                let bank = take(&mut tensors, "bank", dir)?;
                let weights = if config.soft_weighting {
                    Some(take(&mut tensors, "bank_weights", dir)?)
                } else {
                    None
                };
                check_bank(&bank, weights.as_ref(), grid, dir)?;
                let mut model = Self::from_parts(config, bank, weights, grid.into(), 0)?;
                model.inner.provenance =
                    load_provenance(dir, &saved.tensors_sha256, model.bank_len(), model.grid())?;
                Ok((model, saved.card))
            }
            other => Err(wrong_kind(dir, "softpatch", &other)),
        }
    }
}

impl DinomalyModel {
    /// Saves the model to folder `dir` with its model card (see [`SavedModel`]).
    ///
    /// # Errors
    /// The folder or its files cannot be written.
    pub fn save(&self, dir: &Path, card: &ModelCard) -> Result<()> {
        let detector = DetectorState::Dinomaly {
            config: Box::new(self.config().clone()),
            feature_shape: self.feature_shape(),
            iterations_trained: self.iterations_trained(),
        };
        write(dir, card, detector, self.weights().clone()).map(|_| ())
    }

    /// Loads a Dinomaly model saved by [`DinomalyModel::save`] onto `device`.
    ///
    /// # Errors
    /// As [`PatchCore::load`], and weights whose names or shapes do not match the configuration.
    pub fn load(dir: &Path, device: &Device) -> Result<(Self, ModelCard)> {
        let (saved, tensors) = read(dir, device)?;
        match saved.detector {
            DetectorState::Dinomaly { config, feature_shape, iterations_trained } => {
                let model =
                    Self::from_weights(*config, feature_shape, iterations_trained, &tensors)
                        .map_err(|e| Error::BadModel {
                            path: dir.join(MODEL_TENSORS_FILE),
                            reason: e.to_string(),
                        })?;
                Ok((model, saved.card))
            }
            other => Err(wrong_kind(dir, "dinomaly", &other)),
        }
    }
}

/// Loads any memory-bank detector saved in `dir`, whatever its kind.
///
/// # Errors
/// As [`PatchCore::load`].
pub fn load_detector(dir: &Path, device: &Device) -> Result<(Box<dyn Detector>, ModelCard)> {
    match SavedModel::read(dir)?.detector {
        DetectorState::PatchCore { .. } => {
            let (model, card) = PatchCore::load(dir, device)?;
            Ok((Box::new(model), card))
        }
        DetectorState::SoftPatch { .. } => {
            let (model, card) = SoftPatch::load(dir, device)?;
            Ok((Box::new(model), card))
        }
        DetectorState::Dinomaly { .. } => {
            let (model, card) = DinomalyModel::load(dir, device)?;
            Ok((Box::new(model), card))
        }
    }
}

/// Writes the tensors, then the JSON file; returns the tensors' SHA-256.
fn write(
    dir: &Path,
    card: &ModelCard,
    detector: DetectorState,
    tensors: BTreeMap<String, Tensor>,
) -> Result<String> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
    let tensors_path = dir.join(MODEL_TENSORS_FILE);
    let cpu: Vec<(String, Tensor)> = tensors
        .into_iter()
        .map(|(k, t)| Ok((k, t.to_device(&Device::Cpu)?)))
        .collect::<Result<_>>()?;
    let bytes =
        safetensors::serialize(cpu.iter().map(|(k, t)| (k.as_str(), t)), None).map_err(|e| {
            Error::BadModel { path: tensors_path.clone(), reason: format!("cannot serialise: {e}") }
        })?;
    llb_types::atomic::write(&tensors_path, &bytes)
        .map_err(|source| Error::Io { path: tensors_path.clone(), source })?;
    let tensors_sha256 = sha256_hex(&bytes);
    let saved = SavedModel {
        format_version: FORMAT_VERSION,
        card: card.clone(),
        detector,
        tensors_sha256: tensors_sha256.clone(),
    };
    let json_path = dir.join(MODEL_CARD_FILE);
    let json = serde_json::to_vec_pretty(&saved)
        .map_err(|source| Error::Json { path: json_path.clone(), source })?;
    llb_types::atomic::write(&json_path, &json)
        .map_err(|source| Error::Io { path: json_path.clone(), source })?;
    tracing::info!(dir = %dir.display(), "saved model");
    Ok(tensors_sha256)
}

fn read(
    dir: &Path,
    device: &Device,
) -> Result<(SavedModel, std::collections::HashMap<String, Tensor>)> {
    let saved = SavedModel::read(dir)?;
    let path = dir.join(MODEL_TENSORS_FILE);
    let bytes = std::fs::read(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
    let actual = sha256_hex(&bytes);
    if actual != saved.tensors_sha256 {
        let reason =
            format!("sha256 {actual}, but {MODEL_CARD_FILE} records {}", saved.tensors_sha256);
        return Err(Error::BadModel { path, reason });
    }
    let tensors = candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| {
        Error::BadModel { path: path.clone(), reason: format!("not safetensors: {e}") }
    })?;
    Ok((saved, tensors))
}

fn take(
    tensors: &mut std::collections::HashMap<String, Tensor>,
    name: &str,
    dir: &Path,
) -> Result<Tensor> {
    tensors.remove(name).ok_or_else(|| Error::BadModel {
        path: dir.join(MODEL_TENSORS_FILE),
        reason: format!("missing tensor `{name}`"),
    })
}

fn check_bank(bank: &Tensor, weights: Option<&Tensor>, grid: [usize; 2], dir: &Path) -> Result<()> {
    let bad = |reason: String| Error::BadModel { path: dir.join(MODEL_TENSORS_FILE), reason };
    let dims = bank.dims();
    if dims.len() != 2 || dims[0] == 0 || dims[1] == 0 || bank.dtype() != candle_core::DType::F32 {
        return Err(bad(format!(
            "`bank` must be non-empty [K, D] f32, got {dims:?} {:?}",
            bank.dtype()
        )));
    }
    if let Some(w) = weights
        && (w.dims() != [dims[0]] || w.dtype() != candle_core::DType::F32)
    {
        return Err(bad(format!("`bank_weights` must be [{}] f32, got {:?}", dims[0], w.dims())));
    }
    if grid[0] == 0 || grid[1] == 0 {
        return Err(bad(format!("grid {grid:?} is empty")));
    }
    Ok(())
}

fn wrong_kind(dir: &Path, expected: &str, got: &DetectorState) -> Error {
    let got = match got {
        DetectorState::PatchCore { .. } => "patchcore",
        DetectorState::SoftPatch { .. } => "softpatch",
        DetectorState::Dinomaly { .. } => "dinomaly",
    };
    Error::BadModel {
        path: dir.join(MODEL_CARD_FILE),
        reason: format!("expected a {expected} model, found {got}"),
    }
}

/// Saved-model file paths of folder `dir`: `(tensors, json)`.
pub fn model_files(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(MODEL_TENSORS_FILE), dir.join(MODEL_CARD_FILE))
}

#[cfg(test)]
mod tests;
