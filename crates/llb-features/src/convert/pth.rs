//! Conversion of PyTorch `.pth` state dicts (legacy or zip format) to safetensors.

use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use super::pickle::{RawTensor, is_legacy, read_legacy};
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
/// Legacy files are read by this crate's own unpickler, which flattens nested dicts with
/// `.`-joined keys; zip files are read by candle's reader, which returns top-level tensors only.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read, [`Error::Pickle`] (with the byte offset) when a
/// legacy file is truncated or malformed, [`Error::Candle`] when candle's zip reader fails.
pub fn read_pth(path: &Path) -> Result<PthContents> {
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if is_legacy(&data) {
        let (tensors, skipped) = read_legacy(&data).map_err(|e| Error::Pickle {
            path: path.to_path_buf(),
            offset: e.offset,
            message: e.message,
        })?;
        return Ok(PthContents { format: PthFormat::Legacy, tensors, n_skipped: skipped });
    }
    if !data.starts_with(b"PK\x03\x04") {
        return Err(Error::Pickle {
            path: path.to_path_buf(),
            offset: 0,
            message: "neither a legacy PyTorch pickle nor a zip archive".into(),
        });
    }
    drop(data);
    let tensors = candle_core::pickle::read_all(path)?;
    let tensors = tensors
        .into_iter()
        .map(|(name, t)| raw_from_candle(&t).map(|raw| (name, raw)))
        .collect::<Result<Vec<_>>>()?;
    Ok(PthContents { format: PthFormat::Zip, tensors, n_skipped: 0 })
}

fn raw_from_candle(t: &Tensor) -> Result<RawTensor> {
    let flat = t.flatten_all()?;
    let (dtype, data): (Dtype, Vec<u8>) = match t.dtype() {
        DType::F32 => {
            (Dtype::F32, flat.to_vec1::<f32>()?.iter().flat_map(|x| x.to_le_bytes()).collect())
        }
        DType::F64 => {
            (Dtype::F64, flat.to_vec1::<f64>()?.iter().flat_map(|x| x.to_le_bytes()).collect())
        }
        DType::F16 => (
            Dtype::F16,
            flat.to_vec1::<half::f16>()?.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
        DType::BF16 => (
            Dtype::BF16,
            flat.to_vec1::<half::bf16>()?.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
        DType::I64 => {
            (Dtype::I64, flat.to_vec1::<i64>()?.iter().flat_map(|x| x.to_le_bytes()).collect())
        }
        DType::U32 => {
            (Dtype::U32, flat.to_vec1::<u32>()?.iter().flat_map(|x| x.to_le_bytes()).collect())
        }
        DType::U8 => (Dtype::U8, flat.to_vec1::<u8>()?),
        other => {
            return Err(Error::Candle(candle_core::Error::Msg(format!(
                "unsupported tensor dtype {other:?} in a zip checkpoint"
            ))));
        }
    };
    Ok(RawTensor { dtype, shape: t.dims().to_vec(), data })
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
    crate::cache::write_atomic(out_safetensors, &bytes)?;
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
