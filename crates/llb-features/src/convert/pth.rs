//! Conversion of PyTorch `.pth` state dicts (legacy or zip format) to safetensors.

use std::path::{Path, PathBuf};

use safetensors::Dtype;
use safetensors::tensor::TensorView;

use super::pickle::{RawTensor, is_legacy, is_zip, read_legacy, read_zip};
use crate::{Error, Result};

/// Which serialisation a `.pth` file used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PthFormat {
    /// The pre-1.6 format: consecutive pickles followed by raw storages.
    Legacy,
    /// The zip archive format of PyTorch 1.6 and later.
    Zip,
}

/// What [`convert_pth`] read and wrote.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PthReport {
    /// The source file.
    pub source: PathBuf,
    /// The written safetensors file.
    pub output: PathBuf,
    /// The source's serialisation format.
    pub format: PthFormat,
    /// Number of tensors written.
    pub n_tensors: usize,
    /// Number of floating-point elements written (the parameters and BN statistics).
    pub n_float_elements: usize,
    /// State-dict entries that were not tensors and were skipped.
    pub n_skipped: usize,
}

/// The tensors of a `.pth` state dict.
#[derive(Clone, Debug, PartialEq)]
pub struct PthContents {
    /// The file's serialisation format.
    pub format: PthFormat,
    /// Every tensor with its state-dict key, in file order.
    pub tensors: Vec<(String, RawTensor)>,
    /// State-dict entries that were not tensors and were skipped.
    pub n_skipped: usize,
}

/// Reads every tensor of a `.pth` state dict (legacy or zip format), keyed by state-dict name.
///
/// Strided and offset views are copied to contiguous row-major data; element types are kept.
/// Both formats are read by this crate's own unpickler, which flattens nested dicts with
/// `.`-joined keys. Hostile files are refused before large allocations: the tensors of a file
/// decode to at most four times its size plus 1 MiB, and every view must lie in its storage.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read, [`Error::Pickle`] (with the byte offset; for zip
/// files, within `data.pkl`) when a file is truncated, malformed or over the decoding limit.
pub fn read_pth(path: &Path) -> Result<PthContents> {
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (format, read) = if is_legacy(&data) {
        (PthFormat::Legacy, read_legacy(&data))
    } else if is_zip(&data) {
        (PthFormat::Zip, read_zip(&data))
    } else {
        return Err(Error::Pickle {
            path: path.to_path_buf(),
            offset: 0,
            message: "neither a legacy PyTorch pickle nor a zip archive".into(),
        });
    };
    let (tensors, n_skipped) = read.map_err(|e| Error::Pickle {
        path: path.to_path_buf(),
        offset: e.offset,
        message: e.message,
    })?;
    Ok(PthContents { format, tensors, n_skipped })
}

/// Converts a `.pth` state dict to a safetensors file, written atomically (a temporary file in
/// the same folder, then a rename).
///
/// Keys are kept as they are in the state dict (nested dicts are joined with `.`).
///
/// # Errors
/// As [`read_pth`], plus [`Error::Safetensors`] or [`Error::Io`] when writing fails.
pub fn convert_pth(pth_path: &Path, out_safetensors: &Path) -> Result<PthReport> {
    let _span = tracing::info_span!("convert_pth", source = %pth_path.display()).entered();
    let PthContents { format, tensors, n_skipped } = read_pth(pth_path)?;
    let n_float_elements = tensors
        .iter()
        .filter(|(_, t)| matches!(t.dtype, Dtype::F32 | Dtype::F64 | Dtype::F16 | Dtype::BF16))
        .map(|(_, t)| t.shape.iter().product::<usize>())
        .sum();
    let safetensors_err =
        |message: String| Error::Safetensors { path: out_safetensors.to_path_buf(), message };
    let views = tensors
        .iter()
        .map(|(name, t)| {
            TensorView::new(t.dtype, t.shape.clone(), &t.data)
                .map(|v| (name.as_str(), v))
                .map_err(|e| safetensors_err(format!("tensor `{name}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes =
        safetensors::tensor::serialize(views, None).map_err(|e| safetensors_err(e.to_string()))?;
    llb_types::atomic::write(out_safetensors, &bytes).map_err(|e| Error::io(out_safetensors, e))?;
    tracing::info!(n_tensors = tensors.len(), n_float_elements, "converted checkpoint");
    Ok(PthReport {
        source: pth_path.to_path_buf(),
        output: out_safetensors.to_path_buf(),
        format,
        n_tensors: tensors.len(),
        n_float_elements,
        n_skipped,
    })
}
