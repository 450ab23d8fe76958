//! Serialisation of f32 tensors to safetensors bytes (written to disk by `llb_types::atomic`).

use crate::{Error, Result};
use std::path::Path;

/// Serialises named f32 tensors (`(name, shape, little-endian bytes)`) with string metadata in
/// the safetensors format, byte-identically for the same input: tensors keep the given order and
/// the header lists metadata and tensors sorted by name (the `safetensors` crate's own writer
/// takes a `HashMap` and so writes its metadata in a random order).
///
/// # Errors
/// [`Error::Safetensors`] (naming `path`) if a shape does not match its byte count.
pub(crate) fn safetensors_bytes(
    tensors: &[(String, Vec<usize>, Vec<u8>)],
    metadata: std::collections::BTreeMap<String, String>,
    path: &Path,
) -> Result<Vec<u8>> {
    let mut header = serde_json::Map::new();
    let meta: serde_json::Map<String, serde_json::Value> =
        metadata.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
    let mut entries: Vec<(String, serde_json::Value)> =
        vec![("__metadata__".to_owned(), meta.into())];
    let mut offset = 0usize;
    for (name, shape, data) in tensors {
        let expected = 4 * shape.iter().product::<usize>();
        if data.len() != expected {
            return Err(Error::Safetensors {
                path: path.to_owned(),
                message: format!(
                    "tensor `{name}` of shape {shape:?} has {} bytes, expected {expected}",
                    data.len()
                ),
            });
        }
        let info = serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + data.len()]});
        entries.push((name.clone(), info));
        offset += data.len();
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    header.extend(entries);
    let mut json = serde_json::to_string(&header)
        .map_err(|e| Error::Safetensors { path: path.to_owned(), message: e.to_string() })?;
    while (8 + json.len()) % 8 != 0 {
        json.push(' ');
    }
    let mut bytes = Vec::with_capacity(8 + json.len() + offset);
    bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
    bytes.extend_from_slice(json.as_bytes());
    for (_, _, data) in tensors {
        bytes.extend_from_slice(data);
    }
    Ok(bytes)
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
mod safetensors_tests {
    use super::safetensors_bytes;
    use std::collections::BTreeMap;
    use std::path::Path;

    #[test]
    fn output_is_deterministic_and_readable() {
        let tensors = vec![
            ("b".to_owned(), vec![2], [1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect()),
            ("a".to_owned(), vec![1, 1], 3.0f32.to_le_bytes().to_vec()),
        ];
        let meta: BTreeMap<String, String> =
            (0..20).map(|i| (format!("key{i}"), format!("value{i}"))).collect();
        let first = safetensors_bytes(&tensors, meta.clone(), Path::new("x")).unwrap();
        for _ in 0..5 {
            assert_eq!(safetensors_bytes(&tensors, meta.clone(), Path::new("x")).unwrap(), first);
        }
        let (_, parsed) = safetensors::SafeTensors::read_metadata(&first).unwrap();
        assert_eq!(parsed.metadata().as_ref().unwrap()["key7"], "value7");
        let st = safetensors::SafeTensors::deserialize(&first).unwrap();
        assert_eq!(st.tensor("b").unwrap().data(), &tensors[0].2[..]);
        assert_eq!(st.tensor("a").unwrap().shape(), &[1, 1]);
        let err = safetensors_bytes(
            &[("c".to_owned(), vec![3], vec![0; 4])],
            BTreeMap::new(),
            Path::new("x"),
        );
        assert!(err.unwrap_err().to_string().contains("`c`"));
    }
}
