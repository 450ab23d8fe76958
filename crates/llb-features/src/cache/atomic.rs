//! Atomic file writes (temporary file in the same folder, flushed, then renamed), SHA-256, and
//! serialisation of f32 tensors to safetensors bytes.

use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `bytes` to `path` so that readers see either the old file, no file, or the whole new
/// file: a killed process leaves at most a `.tmp` file, never a half-written `path`.
///
/// # Errors
/// [`Error::Io`] naming the temporary or final path.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(
        ".{file_name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Serialises named f32 tensors (`(name, shape, little-endian bytes)`) with string metadata.
///
/// # Errors
/// [`Error::Safetensors`] (naming `path`) if a shape does not match its byte count.
pub(crate) fn safetensors_bytes(
    tensors: &[(String, Vec<usize>, Vec<u8>)],
    metadata: std::collections::HashMap<String, String>,
    path: &Path,
) -> Result<Vec<u8>> {
    let bad = |e: safetensors::SafeTensorError| Error::Safetensors {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let views = tensors
        .iter()
        .map(|(name, shape, data)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .map(|v| (name.as_str(), v))
                .map_err(bad)
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, Some(metadata)).map_err(bad)
}

/// Little-endian bytes of an f32 tensor's values in row-major order.
///
/// # Errors
/// A tensor that is not f32.
pub(crate) fn f32_le_bytes(t: &candle_core::Tensor) -> Result<Vec<u8>> {
    let values = t.flatten_all()?.to_vec1::<f32>()?;
    Ok(values.iter().flat_map(|v| v.to_le_bytes()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_abc_is_the_fips_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("f.bin");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
