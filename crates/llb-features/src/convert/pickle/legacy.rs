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

use std::collections::HashMap;

use super::machine::{PickleError, TensorRef, Value, unpickle};
use safetensors::Dtype;

/// The magic number that opens a legacy file, little-endian bytes of `0x1950a86a20f9469cfc6c`.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// The only protocol version the legacy format ever used.
const PROTOCOL_VERSION: i64 = 1001;

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

fn fail(offset: usize, message: impl Into<String>) -> LegacyError {
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
        other => return Err(fail(keys_at, format!("storage key list expected, got {other:?}"))),
    };

    // Storage key -> (dtype of the first tensor seen, byte range of its data).
    let mut leaves = Vec::new();
    let mut skipped = 0usize;
    flatten(String::new(), root, &mut leaves, &mut skipped);
    let mut dtypes: HashMap<String, Dtype> = HashMap::new();
    let mut parsed = Vec::with_capacity(leaves.len());
    for (name, t) in leaves {
        let (key, dtype) = storage_of(&t).map_err(|m| fail(root_at, format!("`{name}`: {m}")))?;
        dtypes.entry(key.clone()).or_insert(dtype);
        parsed.push((name, t, key, dtype));
    }

    let mut storages: HashMap<String, (usize, usize)> = HashMap::new();
    for key in keys {
        let Value::Str(key) = key else {
            return Err(fail(keys_at, "storage key is not a string"));
        };
        let count_at = pos;
        let count = data
            .get(pos..pos + 8)
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
        let Some(elem) = dtypes.get(&key).map(|d| d.bitsize() / 8) else {
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
        storages.insert(key, (pos, numel));
        pos += bytes;
    }

    let mut out = Vec::with_capacity(parsed.len());
    for (name, t, key, dtype) in parsed {
        let &(start, numel) = storages.get(&key).ok_or_else(|| {
            fail(keys_at, format!("`{name}`: storage `{key}` is not in the file"))
        })?;
        let raw = gather(&data[start..start + numel * (dtype.bitsize() / 8)], numel, dtype, &t)
            .map_err(|m| fail(start, format!("`{name}`: {m}")))?;
        out.push((name, raw));
    }
    Ok((out, skipped))
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
        return Err(format!("persistent id is not a tuple: {:?}", t.storage));
    };
    match items.as_slice() {
        [Value::Str(tag), ty, Value::Str(key), ..] if tag == "storage" => {
            let dtype =
                storage_dtype(ty).ok_or_else(|| format!("unsupported storage type {ty:?}"))?;
            Ok((key.clone(), dtype))
        }
        _ => Err(format!("unexpected persistent id {items:?}")),
    }
}

/// Copies a strided view of a storage into a contiguous row-major buffer.
fn gather(storage: &[u8], numel: usize, dtype: Dtype, t: &TensorRef) -> Result<RawTensor, String> {
    let elem = dtype.bitsize() / 8;
    let count: usize = t.shape.iter().product();
    if count > 0 {
        let last = t.storage_offset
            + t.shape.iter().zip(&t.strides).map(|(&n, &s)| (n - 1) * s).sum::<usize>();
        if last >= numel {
            return Err(format!(
                "view (offset {}, size {:?}, stride {:?}) reaches element {last} of a {numel}-element storage",
                t.storage_offset, t.shape, t.strides
            ));
        }
    }
    let mut data = Vec::with_capacity(count * elem);
    let mut index = vec![0usize; t.shape.len()];
    for _ in 0..count {
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
