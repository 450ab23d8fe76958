//! The legacy (pre-1.6, non-zip) PyTorch serialisation format.
//!
//! Layout, as `torch.save(..., _use_new_zipfile_serialization=False)` writes it:
//! 1. a pickle of the magic number `0x1950a86a20f9469cfc6c`;
//! 2. a pickle of the protocol version (1001);
//! 3. a pickle of `sys_info` (endianness and type sizes);
//! 4. the pickled object (here a state dict) whose tensors name their storages through
//!    persistent ids `('storage', <StorageType>, key, location, numel[, view_metadata])`;
//! 5. a pickle of the list of storage keys, in the order the storages follow;
//! 6. per storage: its element count as a little-endian `u64`, then its raw little-endian data.
//!
//! Hostile files are refused before anything large is allocated: every size is computed with
//! checked arithmetic, every view must lie inside its storage, a storage must be read as one
//! element type, and the tensors together may decode to at most [`max_decoded_bytes`] of the
//! file's length (views may repeat storage elements, e.g. with stride 0, but not without bound).

use std::collections::HashMap;

use super::machine::{PickleError, TensorRef, Value, unpickle};
use safetensors::Dtype;

/// The magic number that opens a legacy file, little-endian bytes of `0x1950a86a20f9469cfc6c`.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// The only protocol version the legacy format ever used.
const PROTOCOL_VERSION: i64 = 1001;

/// Bytes the tensors of a legacy file of `file_len` bytes may decode to in all: four times the
/// file (tied weights and other repeated views of one storage fit easily) plus 1 MiB.
pub(crate) fn max_decoded_bytes(file_len: usize) -> usize {
    file_len.saturating_mul(4).saturating_add(1 << 20)
}

/// A dense tensor read from a checkpoint: dtype, shape and contiguous little-endian bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    /// The element type.
    pub dtype: Dtype,
    /// The shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Contiguous row-major little-endian data, `shape.product() * dtype.size()` bytes.
    pub data: Vec<u8>,
}

/// A failure while reading a legacy file, at a byte offset.
pub(crate) type LegacyError = PickleError;

pub(super) fn fail(offset: usize, message: impl Into<String>) -> LegacyError {
    PickleError { offset: offset as u64, message: message.into() }
}

/// Whether `data` starts like a legacy checkpoint (a protocol-2 pickle of the magic number).
pub(crate) fn is_legacy(data: &[u8]) -> bool {
    data.len() >= 15 && data[0] == 0x80 && data[2] == 0x8a && data[3] == 10 && data[4..14] == MAGIC
}

/// The element type and size of a storage class such as `torch.FloatStorage`.
fn storage_dtype(v: &Value) -> Option<Dtype> {
    let Value::Global { module, name } = v else { return None };
    if module != "torch" {
        return None;
    }
    Some(match name.as_str() {
        "FloatStorage" => Dtype::F32,
        "DoubleStorage" => Dtype::F64,
        "HalfStorage" => Dtype::F16,
        "BFloat16Storage" => Dtype::BF16,
        "LongStorage" => Dtype::I64,
        "IntStorage" => Dtype::I32,
        "ShortStorage" => Dtype::I16,
        "CharStorage" => Dtype::I8,
        "ByteStorage" => Dtype::U8,
        "BoolStorage" => Dtype::BOOL,
        _ => return None,
    })
}

/// Reads every tensor of a legacy checkpoint, with its dotted state-dict key.
///
/// Nested dicts (e.g. `{"state_dict": {...}}`) are flattened with `.`-joined keys; non-tensor
/// leaves are skipped and counted in the second return value.
///
/// # Errors
/// Truncation, an unexpected header, an unknown storage type, or a tensor view that reaches
/// outside its storage, each with the byte offset where it was found.
pub(crate) fn read_legacy(data: &[u8]) -> Result<(Vec<(String, RawTensor)>, usize), LegacyError> {
    let mut pos = 0usize;
    let magic = unpickle(data, &mut pos)?;
    if magic != Value::Bytes(MAGIC.to_vec()) {
        return Err(fail(0, "not a legacy PyTorch file: bad magic number"));
    }
    let at = pos;
    match unpickle(data, &mut pos)? {
        Value::Int(PROTOCOL_VERSION) => {}
        other => return Err(fail(at, format!("unsupported protocol version {other:?}"))),
    }
    let at = pos;
    let sys_info = unpickle(data, &mut pos)?;
    check_sys_info(&sys_info).map_err(|m| fail(at, m))?;
    let root_at = pos;
    let root = unpickle(data, &mut pos)?;
    let keys_at = pos;
    let keys = match unpickle(data, &mut pos)? {
        Value::List(keys) => keys,
        other => {
            return Err(fail(
                keys_at,
                format!("storage key list expected, got {}", other.describe()),
            ));
        }
    };

    let (views, skipped) = views(root, root_at, data.len())?;
    let dtypes = storage_dtypes(&views);

    let mut storages: HashMap<String, (&[u8], usize)> = HashMap::new();
    for key in keys {
        let Value::Str(key) = key else {
            return Err(fail(keys_at, "storage key is not a string"));
        };
        let count_at = pos;
        let count = pos
            .checked_add(8)
            .and_then(|end| data.get(pos..end))
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .ok_or_else(|| {
                fail(
                    data.len(),
                    format!("truncated file: storage `{key}` count at offset {count_at}"),
                )
            })?;
        pos += 8;
        // The element size comes from the tensors that use the storage: an unused storage
        // cannot be skipped safely.
        let Some(elem) = dtypes.get(key.as_str()).map(|d| d.bitsize() / 8) else {
            return Err(fail(
                count_at,
                format!("storage `{key}` is used by no tensor: unknown element size"),
            ));
        };
        let numel = usize::try_from(count).map_err(|_| fail(count_at, "storage too large"))?;
        let bytes = numel
            .checked_mul(elem)
            .filter(|&n| pos.checked_add(n).is_some_and(|end| end <= data.len()))
            .ok_or_else(|| {
                fail(data.len(), format!("truncated file: storage `{key}` needs {numel} elements of {elem} bytes from offset {pos}"))
            })?;
        if storages.insert(key.clone(), (&data[pos..pos + bytes], numel)).is_some() {
            return Err(fail(count_at, format!("storage `{key}` appears twice")));
        }
        pos += bytes;
    }
    Ok((gather_all(views, &storages, keys_at)?, skipped))
}

/// A tensor of a state dict: its dotted key, its view, and the storage it reads.
pub(super) struct View {
    name: String,
    tensor: TensorRef,
    key: String,
    dtype: Dtype,
}

/// The tensors of a decoded state dict `root` (found at byte `at`) in a file of `file_len`
/// bytes, with the number of skipped non-tensor leaves.
///
/// Checks that each storage is read as one element type and that the tensors decode to at most
/// [`max_decoded_bytes`] in all, before anything is allocated for them.
pub(super) fn views(
    root: Value,
    at: usize,
    file_len: usize,
) -> Result<(Vec<View>, usize), LegacyError> {
    let mut leaves = Vec::new();
    let mut skipped = 0usize;
    flatten(String::new(), root, &mut leaves, &mut skipped);
    let mut first_reader: HashMap<String, (Dtype, String)> = HashMap::new();
    let mut views = Vec::with_capacity(leaves.len());
    let mut decoded = 0usize;
    let max_decoded = max_decoded_bytes(file_len);
    for (name, tensor) in leaves {
        let (key, dtype) = storage_of(&tensor).map_err(|m| fail(at, format!("`{name}`: {m}")))?;
        match first_reader.get(&key) {
            Some((first, by)) if *first != dtype => {
                return Err(fail(
                    at,
                    format!(
                        "storage `{key}` is read as {first:?} by `{by}` and as {dtype:?} by `{name}`"
                    ),
                ));
            }
            Some(_) => {}
            None => {
                first_reader.insert(key.clone(), (dtype, name.clone()));
            }
        }
        decoded = tensor
            .shape
            .iter()
            .try_fold(dtype.bitsize() / 8, |n, &d| n.checked_mul(d))
            .and_then(|n| decoded.checked_add(n))
            .filter(|&total| total <= max_decoded)
            .ok_or_else(|| {
                fail(at, format!(
                    "`{name}` (size {:?}) would decode the file's tensors to more than {max_decoded} bytes, 4 × its {file_len} bytes + 1 MiB",
                    tensor.shape
                ))
            })?;
        views.push(View { name, tensor, key, dtype });
    }
    Ok((views, skipped))
}

/// The element type of each storage the views read.
pub(super) fn storage_dtypes(views: &[View]) -> std::collections::BTreeMap<&str, Dtype> {
    views.iter().map(|v| (v.key.as_str(), v.dtype)).collect()
}

/// Copies every view out of its storage (`key → (bytes, element count)`); `at` is the offset
/// reported for a storage missing from the file.
pub(super) fn gather_all(
    views: Vec<View>,
    storages: &HashMap<String, (&[u8], usize)>,
    at: usize,
) -> Result<Vec<(String, RawTensor)>, LegacyError> {
    views
        .into_iter()
        .map(|View { name, tensor, key, dtype }| {
            let &(storage, numel) = storages
                .get(&key)
                .ok_or_else(|| fail(at, format!("`{name}`: storage `{key}` is not in the file")))?;
            let raw = gather(storage, numel, dtype, &tensor)
                .map_err(|m| fail(at, format!("`{name}`: {m}")))?;
            Ok((name, raw))
        })
        .collect()
}

fn check_sys_info(v: &Value) -> Result<(), String> {
    let Value::Dict(entries) = v else { return Err("sys_info is not a dict".into()) };
    for (k, v) in entries {
        if k == &Value::Str("little_endian".into()) && v == &Value::Bool(false) {
            return Err("big-endian checkpoints are not supported".into());
        }
    }
    Ok(())
}

fn flatten(prefix: String, v: Value, out: &mut Vec<(String, TensorRef)>, skipped: &mut usize) {
    match v {
        Value::Tensor(t) => out.push((prefix, t)),
        Value::Dict(entries) => {
            for (k, v) in entries {
                let k = match k {
                    Value::Str(s) => s,
                    Value::Int(i) => i.to_string(),
                    _ => {
                        *skipped += 1;
                        continue;
                    }
                };
                let name = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
                flatten(name, v, out, skipped);
            }
        }
        _ => *skipped += 1,
    }
}

/// The storage key and element type named by a tensor's persistent id.
fn storage_of(t: &TensorRef) -> Result<(String, Dtype), String> {
    let Value::Tuple(items) = t.storage.as_ref() else {
        return Err(format!("persistent id is not a tuple: {}", t.storage.describe()));
    };
    match items.as_slice() {
        [Value::Str(tag), ty, Value::Str(key), ..] if tag == "storage" => {
            let dtype = storage_dtype(ty)
                .ok_or_else(|| format!("unsupported storage type {}", ty.describe()))?;
            Ok((key.clone(), dtype))
        }
        _ => Err(format!("unexpected persistent id {}", t.storage.describe())),
    }
}

/// Copies a strided view of a storage into a contiguous row-major buffer.
///
/// The caller has checked that the view's byte size fits the decoding cap; this checks, with
/// checked arithmetic, that every element it reads lies inside the storage.
fn gather(storage: &[u8], numel: usize, dtype: Dtype, t: &TensorRef) -> Result<RawTensor, String> {
    let elem = dtype.bitsize() / 8;
    let too_large = || format!("view size {:?} overflows", t.shape);
    let count = t.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(too_large)?;
    if count > 0 {
        let last =
            t.shape.iter().zip(&t.strides).try_fold(t.storage_offset, |acc, (&n, &s)| {
                (n - 1).checked_mul(s)?.checked_add(acc)
            });
        if last.is_none_or(|last| last >= numel) {
            return Err(format!(
                "view (offset {}, size {:?}, stride {:?}) reaches outside its {numel}-element storage",
                t.storage_offset, t.shape, t.strides
            ));
        }
    }
    let mut data = Vec::with_capacity(count.checked_mul(elem).ok_or_else(too_large)?);
    let mut index = vec![0usize; t.shape.len()];
    for _ in 0..count {
        // Each term is at most the `last` element checked above: no overflow, in range.
        let src =
            t.storage_offset + index.iter().zip(&t.strides).map(|(i, s)| i * s).sum::<usize>();
        data.extend_from_slice(&storage[src * elem..(src + 1) * elem]);
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < t.shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(RawTensor { dtype, shape: t.shape.clone(), data })
}
