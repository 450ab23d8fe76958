//! Safetensors files with JSON metadata, written atomically (`llb_types::atomic`: unique
//! temporary file, fsync, rename).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::{Error, Result};

/// The `format` metadata value of every file this module writes.
pub(crate) const FORMAT: &str = "llb-dinomaly-v1";

/// Writes `tensors` and `metadata` to `path` so that a crash leaves either the old file or the
/// new one, never a torn file.
pub(crate) fn write(
    path: &Path,
    tensors: &BTreeMap<String, Tensor>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let bytes = safetensors::serialize(tensors.iter(), Some(metadata)).map_err(|e| {
        Error::BadModel { path: path.to_path_buf(), reason: format!("cannot serialise: {e}") }
    })?;
    llb_types::atomic::write(path, &bytes).map_err(io)
}

/// Reads the tensors (onto `device`) and metadata of a file written by [`write`].
pub(crate) fn read(
    path: &Path,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let bytes =
        std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let bad = |reason: String| Error::BadModel { path: path.to_path_buf(), reason };
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not safetensors: {e}")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    match metadata.get("format") {
        Some(f) if f == FORMAT => {}
        other => return Err(bad(format!("format is {other:?}, expected {FORMAT:?}"))),
    }
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)?;
    Ok((tensors, metadata))
}

/// A required metadata entry parsed as JSON.
pub(crate) fn field<T: serde::de::DeserializeOwned>(
    path: &Path,
    metadata: &HashMap<String, String>,
    key: &str,
) -> Result<T> {
    let text = metadata.get(key).ok_or_else(|| Error::BadModel {
        path: path.to_path_buf(),
        reason: format!("metadata {key:?} missing"),
    })?;
    serde_json::from_str(text).map_err(|source| Error::Json { path: path.to_path_buf(), source })
}

/// A metadata value serialised as JSON.
pub(crate) fn json<T: serde::Serialize>(value: &T) -> String {
    // Serialising plain data structs and numbers cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}
