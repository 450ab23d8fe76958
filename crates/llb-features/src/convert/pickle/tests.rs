//! Tests of the unpickler and of the `.pth` readers, on the committed tiny fixtures and on
//! hand-built bytes.

use std::path::{Path, PathBuf};

use safetensors::Dtype;

use super::legacy::read_legacy;
use super::machine::{Value, unpickle};
use crate::{Error, PthFormat, RawTensor, convert_pth, read_pth};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/efficientnet").join(name)
}

fn values_f64(t: &RawTensor) -> Vec<f64> {
    let size = t.dtype.bitsize() / 8;
    t.data
        .chunks_exact(size)
        .map(|b| match t.dtype {
            Dtype::F32 => f64::from(f32::from_le_bytes(b.try_into().unwrap())),
            Dtype::F16 => f64::from(half::f16::from_le_bytes(b.try_into().unwrap())),
            Dtype::I64 => i64::from_le_bytes(b.try_into().unwrap()) as f64,
            other => panic!("dtype {other:?} not used by the fixture"),
        })
        .collect()
}

/// Compares every tensor read from `path` with `tiny_expected.json`.
/// `skip` names expected tensors the reader is known not to return.
fn check(path: &Path, format: PthFormat, skip: &[&str]) {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tiny_expected.json")).unwrap())
            .unwrap();
    let expected = expected.as_object().unwrap();
    let contents = read_pth(path).unwrap();
    assert_eq!(contents.format, format);
    let tensors = contents.tensors;
    let mut names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    let mut want: Vec<&str> =
        expected.keys().map(String::as_str).filter(|k| !skip.contains(k)).collect();
    want.sort_unstable();
    assert_eq!(names, want);
    for (name, t) in &tensors {
        let e = &expected[name];
        let shape: Vec<usize> =
            e["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(t.shape, shape, "{name}");
        let dtype = match e["dtype"].as_str().unwrap() {
            "float32" => Dtype::F32,
            "float16" => Dtype::F16,
            "int64" => Dtype::I64,
            other => panic!("unexpected dtype {other}"),
        };
        assert_eq!(t.dtype, dtype, "{name}");
        let values: Vec<f64> =
            e["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(values_f64(t), values, "{name}");
    }
}

#[test]
fn legacy_fixture_reads_strided_offset_and_nested_tensors() {
    check(&fixture("tiny_legacy.pth"), PthFormat::Legacy, &[]);
}

#[test]
fn zip_fixture_reads_through_candle() {
    // candle's zip reader returns the top-level tensors only: nested dicts are not flattened.
    check(&fixture("tiny_zip.pth"), PthFormat::Zip, &["nested.inner.bias"]);
}

#[test]
fn every_truncation_is_an_error_with_an_offset() {
    let data = std::fs::read(fixture("tiny_legacy.pth")).unwrap();
    for len in 0..data.len() {
        let result = read_legacy(&data[..len]);
        let err = result.expect_err("a truncated file must not parse");
        assert!(err.offset <= len as u64, "offset {} beyond length {len}", err.offset);
    }
    assert!(read_legacy(&data).is_ok());
}

#[test]
fn truncated_file_error_names_the_file_and_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let data = std::fs::read(fixture("tiny_legacy.pth")).unwrap();
    let path = dir.path().join("cut.pth");
    std::fs::write(&path, &data[..data.len() - 10]).unwrap();
    let err = read_pth(&path).unwrap_err();
    let Error::Pickle { path: p, offset, .. } = &err else { panic!("wrong error {err:?}") };
    assert_eq!(p, &path);
    assert_eq!(*offset, (data.len() - 10) as u64);
    let text = err.to_string();
    assert!(text.contains("cut.pth") && text.contains("offset"), "{text}");
}

#[test]
fn not_a_checkpoint_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.pth");
    std::fs::write(&path, b"hello world").unwrap();
    assert!(matches!(read_pth(&path), Err(Error::Pickle { offset: 0, .. })));
    assert!(matches!(read_pth(&dir.path().join("missing.pth")), Err(Error::Io { .. })));
}

#[test]
fn convert_writes_a_safetensors_file_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("weights/tiny.safetensors");
    let report = convert_pth(&fixture("tiny_legacy.pth"), &out).unwrap();
    assert_eq!(report.format, PthFormat::Legacy);
    assert_eq!(report.n_tensors, 7);
    assert_eq!(report.n_float_elements, 24 + 24 + 4 + 10 + 3 + 2);
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let fc = st.tensor("fc.weight").unwrap();
    assert_eq!(fc.shape(), &[6, 4]);
    let first: Vec<f32> = fc
        .data()
        .chunks_exact(4)
        .take(3)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    // fc.weight is the transpose of arange(24).reshape(4, 6) / 8 - 1: its first row is column 0.
    assert_eq!(first, vec![-1.0, -0.25, 0.5]);
    let leftovers: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "temporary file left behind");
}

/// Runs the unpickler on hand-built bytes.
fn run(bytes: &[u8]) -> Result<Value, u64> {
    let mut pos = 0;
    unpickle(bytes, &mut pos).map_err(|e| e.offset)
}

#[test]
fn hand_built_opcodes_decode() {
    // PROTO 2, MARK, BININT1 5, BININT2 0x0102, BININT -3, LONG1 (2 bytes, -2), NEWTRUE,
    // BINFLOAT 1.5, SHORT_BINUNICODE "ab", NONE, TUPLE, LONG_BINPUT 7, POP, LONG_BINGET 7, STOP.
    let mut b = vec![0x80, 2, b'(', b'K', 5, b'M', 2, 1, b'J'];
    b.extend_from_slice(&(-3i32).to_le_bytes());
    b.extend_from_slice(&[0x8a, 2, 0xfe, 0xff, 0x88, b'G']);
    b.extend_from_slice(&1.5f64.to_be_bytes());
    b.extend_from_slice(&[
        0x8c, 2, b'a', b'b', b'N', b't', b'r', 7, 0, 0, 0, b'0', b'j', 7, 0, 0, 0, b'.',
    ]);
    let want = Value::Tuple(vec![
        Value::Int(5),
        Value::Int(0x0102),
        Value::Int(-3),
        Value::Int(-2),
        Value::Bool(true),
        Value::Float(1.5),
        Value::Str("ab".into()),
        Value::None,
    ]);
    assert_eq!(run(&b), Ok(want));
}

#[test]
fn hand_built_dicts_and_lists_decode() {
    // EMPTY_DICT, MARK, "k" EMPTY_LIST MARK 1 2 APPENDS, SETITEMS, "z" EMPTY_TUPLE SETITEM, STOP.
    let b = [
        b'}', b'(', b'X', 1, 0, 0, 0, b'k', b']', b'(', b'K', 1, b'K', 2, b'e', b'u', b'X', 1, 0,
        0, 0, b'z', b')', b's', b'.',
    ];
    let want = Value::Dict(vec![
        (Value::Str("k".into()), Value::List(vec![Value::Int(1), Value::Int(2)])),
        (Value::Str("z".into()), Value::Tuple(vec![])),
    ]);
    assert_eq!(run(&b), Ok(want));
}

#[test]
fn malformed_pickles_report_the_offset() {
    // An unknown opcode at offset 2.
    assert_eq!(run(&[0x80, 2, 0xff]), Err(2));
    // SETITEM with an empty stack at offset 0.
    assert_eq!(run(b"s."), Err(0));
    // BINGET of a key never put, at offset 1.
    assert_eq!(run(&[b'N', b'h', 3, b'.']), Err(1));
    // A string cut short: the offset is the end of the data.
    assert_eq!(run(&[b'X', 9, 0, 0, 0, b'a']), Err(6));
}
