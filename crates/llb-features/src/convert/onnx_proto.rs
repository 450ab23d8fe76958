//! A minimal protobuf decoder for the parts of an ONNX `ModelProto` that hold weights:
//! `graph.initializer` (`TensorProto`: dims, data_type, float_data, raw_data, name) and
//! `graph.node` (`NodeProto`: input, output, name, op_type).
//!
//! Field numbers are those of `onnx.proto3` (onnx 1.x): `ModelProto.graph = 7`;
//! `GraphProto.node = 1`, `initializer = 5`; `NodeProto.input = 1`, `output = 2`, `name = 3`,
//! `op_type = 4`; `TensorProto.dims = 1`, `data_type = 2`, `float_data = 4`, `name = 8`,
//! `raw_data = 9`, `data_location = 14`. Everything else is skipped by wire type.

use crate::{Error, Result};
use std::path::Path;

/// ONNX `TensorProto.DataType.FLOAT`.
const ONNX_FLOAT: i64 = 1;

/// An initializer, decoded to f32.
#[derive(Clone, Debug, PartialEq)]
pub struct OnnxTensor {
    /// Initializer name.
    pub name: String,
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Values in row-major order.
    pub values: Vec<f32>,
}

/// A graph node (only the fields needed to find who consumes an initializer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnnxNode {
    /// Node name, e.g. `/backbone/encoder/layer.0/attention/attention/query/MatMul`.
    pub name: String,
    /// Operator, e.g. `MatMul`.
    pub op_type: String,
    /// Input value names.
    pub inputs: Vec<String>,
    /// Output value names.
    pub outputs: Vec<String>,
}

/// The decoded weights and nodes of an ONNX model's main graph.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OnnxGraph {
    /// Nodes in graph order.
    pub nodes: Vec<OnnxNode>,
    /// Float initializers (non-float ones are skipped).
    pub initializers: Vec<OnnxTensor>,
}

/// A protobuf field: number and payload.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
    Fixed64,
}

/// Iterates over the fields of one protobuf message.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut v = 0_u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".to_owned())
    }

    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| {
            format!("field of {n} bytes runs past the end ({} left)", self.buf.len() - self.pos)
        })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// The next `(field number, value)`, or `None` at the end of the message.
    fn next_field(&mut self) -> std::result::Result<Option<(u64, Value<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let start = self.pos;
        let tag = self.varint()?;
        let value = match tag & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed64
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|e| e.to_string())?;
                Value::Bytes(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            w => return Err(format!("unsupported wire type {w} at byte {start}")),
        };
        Ok(Some((tag >> 3, value)))
    }
}

fn utf8(b: &[u8]) -> std::result::Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|e| format!("name is not UTF-8: {e}"))
}

fn decode_node(buf: &[u8]) -> std::result::Result<OnnxNode, String> {
    let mut node = OnnxNode {
        name: String::new(),
        op_type: String::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
    };
    let mut r = Reader::new(buf);
    while let Some((field, value)) = r.next_field()? {
        if let Value::Bytes(b) = value {
            match field {
                1 => node.inputs.push(utf8(b)?),
                2 => node.outputs.push(utf8(b)?),
                3 => node.name = utf8(b)?,
                4 => node.op_type = utf8(b)?,
                _ => {}
            }
        }
    }
    Ok(node)
}

/// Decodes a `TensorProto`; `Ok(None)` for non-float tensors.
fn decode_tensor(buf: &[u8]) -> std::result::Result<Option<OnnxTensor>, String> {
    let mut name = String::new();
    let mut dims = Vec::new();
    let mut data_type = 0_i64;
    let mut raw: Option<&[u8]> = None;
    let mut floats = Vec::new();
    let mut external = false;
    let mut r = Reader::new(buf);
    while let Some((field, value)) = r.next_field()? {
        match (field, value) {
            (1, Value::Varint(d)) => dims.push(d),
            (1, Value::Bytes(packed)) => {
                let mut p = Reader::new(packed);
                while p.pos < packed.len() {
                    dims.push(p.varint()?);
                }
            }
            (2, Value::Varint(t)) => data_type = t as i64,
            (4, Value::Fixed32(bits)) => floats.push(f32::from_bits(bits)),
            (4, Value::Bytes(packed)) => {
                if packed.len() % 4 != 0 {
                    return Err(format!("packed float_data of {} bytes", packed.len()));
                }
                floats.extend(
                    packed.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                );
            }
            (8, Value::Bytes(b)) => name = utf8(b)?,
            (9, Value::Bytes(b)) => raw = Some(b),
            (14, Value::Varint(1)) => external = true,
            _ => {}
        }
    }
    if data_type != ONNX_FLOAT {
        return Ok(None);
    }
    if external {
        return Err(format!("tensor `{name}` stores its data in an external file"));
    }
    let dims = dims
        .into_iter()
        .map(|d| usize::try_from(d).map_err(|e| format!("tensor `{name}` dim {d}: {e}")))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let values = match raw {
        Some(b) if b.len() % 4 == 0 => {
            b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        }
        Some(b) => return Err(format!("tensor `{name}` raw_data of {} bytes", b.len())),
        None => floats,
    };
    let expected = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    let Some(expected) = expected else {
        return Err(format!("tensor `{name}` dims {dims:?} overflow"));
    };
    if values.len() != expected {
        return Err(format!(
            "tensor `{name}` has {} values for dims {dims:?} ({expected} expected)",
            values.len()
        ));
    }
    Ok(Some(OnnxTensor { name, dims, values }))
}

impl OnnxGraph {
    /// Decodes the main graph's nodes and float initializers from `ModelProto` bytes.
    ///
    /// # Errors
    /// A message describing the first malformed field.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Self, String> {
        let mut graph_bytes = None;
        let mut r = Reader::new(bytes);
        while let Some((field, value)) = r.next_field()? {
            if let (7, Value::Bytes(b)) = (field, value) {
                graph_bytes = Some(b);
            }
        }
        let graph_bytes = graph_bytes.ok_or("no graph (ModelProto field 7)")?;
        let mut graph = Self::default();
        let mut r = Reader::new(graph_bytes);
        while let Some((field, value)) = r.next_field()? {
            match (field, value) {
                (1, Value::Bytes(b)) => graph.nodes.push(decode_node(b)?),
                (5, Value::Bytes(b)) => graph.initializers.extend(decode_tensor(b)?),
                _ => {}
            }
        }
        Ok(graph)
    }

    /// Reads and decodes an `.onnx` file.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Onnx`] naming the file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::decode(&bytes).map_err(|message| Error::Onnx { path: path.to_owned(), message })
    }
}

/// Protobuf encoding helpers for tests that write tiny ONNX files.
#[cfg(test)]
pub(crate) mod encode {
    /// Appends a varint.
    pub(crate) fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// Appends a length-delimited field.
    pub(crate) fn bytes(out: &mut Vec<u8>, field: u64, payload: &[u8]) {
        varint(out, field << 3 | 2);
        varint(out, payload.len() as u64);
        out.extend_from_slice(payload);
    }

    /// A `NodeProto`.
    pub(crate) fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> Vec<u8> {
        let mut n = Vec::new();
        inputs.iter().for_each(|i| bytes(&mut n, 1, i.as_bytes()));
        outputs.iter().for_each(|o| bytes(&mut n, 2, o.as_bytes()));
        bytes(&mut n, 3, name.as_bytes());
        bytes(&mut n, 4, op.as_bytes());
        n
    }

    /// A float `TensorProto`, with values as raw_data or packed float_data.
    pub(crate) fn tensor(name: &str, dims: &[usize], values: &[f32], raw: bool) -> Vec<u8> {
        let mut t = Vec::new();
        for &d in dims {
            varint(&mut t, 1 << 3);
            varint(&mut t, d as u64);
        }
        varint(&mut t, 2 << 3);
        varint(&mut t, 1);
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        if raw {
            bytes(&mut t, 9, &data);
        } else {
            bytes(&mut t, 4, &data);
        }
        bytes(&mut t, 8, name.as_bytes());
        t
    }

    /// A `ModelProto` holding one graph.
    pub(crate) fn model(nodes: &[Vec<u8>], initializers: &[Vec<u8>]) -> Vec<u8> {
        let mut g = Vec::new();
        nodes.iter().for_each(|n| bytes(&mut g, 1, n));
        bytes(&mut g, 2, b"graph");
        initializers.iter().for_each(|t| bytes(&mut g, 5, t));
        let mut m = Vec::new();
        varint(&mut m, 1 << 3); // ir_version
        varint(&mut m, 7);
        bytes(&mut m, 7, &g);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::encode::*;
    use super::*;

    #[test]
    fn decodes_nodes_and_both_float_encodings() {
        let bytes = model(
            &[node("/a/MatMul", "MatMul", &["x", "w"], &["y"])],
            &[
                tensor("w", &[2, 3], &[1., 2., 3., 4., 5., 6.], true),
                tensor("b", &[2], &[7., 8.], false),
            ],
        );
        let g = OnnxGraph::decode(&bytes).unwrap();
        assert_eq!(g.nodes[0].name, "/a/MatMul");
        assert_eq!(g.nodes[0].inputs, ["x", "w"]);
        assert_eq!(g.initializers[0].dims, [2, 3]);
        assert_eq!(g.initializers[0].values, [1., 2., 3., 4., 5., 6.]);
        assert_eq!(g.initializers[1].values, [7., 8.]);
    }

    #[test]
    fn truncated_model_is_an_error_not_a_panic() {
        let bytes = model(&[], &[tensor("w", &[4], &[1., 2., 3., 4.], true)]);
        for cut in [1, 5, bytes.len() / 2, bytes.len() - 1] {
            assert!(OnnxGraph::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    /// Regression: dims whose product overflows were multiplied unchecked (a panic in debug
    /// builds, a wrapped count in release).
    #[test]
    fn overflowing_dims_are_an_error() {
        let mut t = tensor("w", &[], &[], true);
        for d in [1u64 << 40, 1 << 40] {
            varint(&mut t, 1 << 3);
            varint(&mut t, d);
        }
        let err = OnnxGraph::decode(&model(&[], &[t])).unwrap_err();
        assert!(err.contains("`w`") && err.contains("overflow"), "{err}");
    }

    #[test]
    fn value_count_must_match_dims() {
        let bytes = model(&[], &[tensor("w", &[3], &[1., 2.], true)]);
        let err = OnnxGraph::decode(&bytes).unwrap_err();
        assert!(err.contains("`w`") && err.contains("3 expected"), "{err}");
    }
}
