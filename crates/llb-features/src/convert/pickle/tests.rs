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
fn zip_fixture_reads_every_tensor_nested_ones_included() {
    check(&fixture("tiny_zip.pth"), PthFormat::Zip, &[]);
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

/// Hand-built legacy checkpoints: the five pickles and the raw storages, as `torch.save(...,
/// _use_new_zipfile_serialization=False)` lays them out.
pub(crate) mod build {
    /// `SHORT_BINUNICODE`.
    pub(crate) fn str(out: &mut Vec<u8>, s: &str) {
        out.push(0x8c);
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }

    /// `BININT`.
    pub(crate) fn int(out: &mut Vec<u8>, v: i32) {
        out.push(b'J');
        out.extend_from_slice(&v.to_le_bytes());
    }

    /// A tuple of ints.
    fn ints(out: &mut Vec<u8>, values: &[usize]) {
        out.push(b'(');
        for &v in values {
            int(out, v as i32);
        }
        out.push(b't');
    }

    /// `_rebuild_tensor_v2(('storage', torch.<ty>, key, 'cpu', numel), offset, size, stride)`.
    pub(crate) fn tensor(
        out: &mut Vec<u8>,
        ty: &str,
        key: &str,
        numel: usize,
        offset: usize,
        (size, stride): (&[usize], &[usize]),
    ) {
        out.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        out.push(b'(');
        str(out, "storage");
        out.extend_from_slice(format!("ctorch\n{ty}\n").as_bytes());
        str(out, key);
        str(out, "cpu");
        int(out, numel as i32);
        out.extend_from_slice(b"tQ");
        int(out, offset as i32);
        ints(out, size);
        ints(out, stride);
        out.extend_from_slice(b"tR");
    }

    /// A whole file: the header pickles, `root` (one pickle, ending in `.`), the key list and
    /// the storages `(key, numel, bytes)`.
    pub(crate) fn file(root: &[u8], storages: &[(&str, u64, &[u8])]) -> Vec<u8> {
        let mut out = vec![0x80, 2, 0x8a, 10];
        out.extend_from_slice(&[0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);
        out.push(b'.');
        out.extend_from_slice(&[0x80, 2, b'M', 0xe9, 0x03, b'.']);
        out.extend_from_slice(b"}.");
        out.extend_from_slice(root);
        out.push(b'(');
        for (key, _, _) in storages {
            str(&mut out, key);
        }
        out.extend_from_slice(b"l.");
        for (_, numel, bytes) in storages {
            out.extend_from_slice(&numel.to_le_bytes());
            out.extend_from_slice(bytes);
        }
        out
    }

    /// A state dict `{name: tensor}` pickle (ending in `.`), each tensor given by `tensor`.
    pub(crate) fn state_dict(tensors: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut out = vec![0x80, 2, b'}', b'('];
        for (name, t) in tensors {
            str(&mut out, name);
            out.extend_from_slice(t);
        }
        out.extend_from_slice(b"u.");
        out
    }

    /// One f32 tensor `w` `[2, 3]` on a 6-element storage, and its transpose `t` on the same
    /// storage: a valid file for fuzzing and for the regression tests to break.
    pub(crate) fn two_views() -> Vec<u8> {
        let mut w = Vec::new();
        tensor(&mut w, "FloatStorage", "0", 6, 0, (&[2, 3], &[3, 1]));
        let mut t = Vec::new();
        tensor(&mut t, "FloatStorage", "0", 6, 0, (&[3, 2], &[1, 3]));
        let data: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        file(&state_dict(&[("w", w), ("t", t)]), &[("0", 6, &data)])
    }
}

#[test]
fn a_hand_built_file_reads_two_views_of_one_storage() {
    let (tensors, skipped) = read_legacy(&build::two_views()).unwrap();
    assert_eq!(skipped, 0);
    assert_eq!(tensors[0].0, "w");
    assert_eq!(tensors[1].1.shape, [3, 2]);
    let t: Vec<f64> = values_f64(&tensors[1].1);
    assert_eq!(t, [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
}

/// Regression: a stride-0 view of a one-element storage asking for 2^40 elements (4 TiB) used
/// to be allocated; it is refused before any allocation.
#[test]
fn a_view_asking_for_terabytes_is_refused_before_allocating() {
    let mut t = Vec::new();
    build::tensor(&mut t, "FloatStorage", "0", 1, 0, (&[1 << 20, 1 << 20], &[0, 0]));
    let file = build::file(&build::state_dict(&[("huge", t)]), &[("0", 1, &[0; 4])]);
    let err = read_legacy(&file).unwrap_err();
    assert!(err.message.contains("`huge`") && err.message.contains("more than"), "{err:?}");
}

/// Regression: a storage read as f32 by one tensor and as f64 by another made the reader slice
/// past the storage (a panic); it is an error naming both tensors.
#[test]
fn a_storage_read_as_two_element_types_is_an_error_not_a_panic() {
    let mut a = Vec::new();
    build::tensor(&mut a, "FloatStorage", "0", 2, 0, (&[2], &[1]));
    let mut b = Vec::new();
    build::tensor(&mut b, "DoubleStorage", "0", 2, 0, (&[2], &[1]));
    let file = build::file(&build::state_dict(&[("a", a), ("b", b)]), &[("0", 2, &[0; 8])]);
    let err = read_legacy(&file).unwrap_err();
    assert!(err.message.contains("`a`") && err.message.contains("`b`"), "{err:?}");
}

/// Regression: memoised values were deep-copied on every fetch, so a few hundred bytes could
/// ask for terabytes. Here each of 40 levels is a pair of the level below (fetched twice from
/// the memo): 2^40 leaves in tree form, refused within the decoding budget.
#[test]
fn a_memo_bomb_is_refused_within_the_budget() {
    let mut b = vec![0x80, 2, b']', b'q', 0];
    for _ in 0..40 {
        b.extend_from_slice(&[b'h', 0, b'h', 0, 0x86, b'q', 0]);
    }
    b.push(b'.');
    assert!(b.len() < 300);
    let mut pos = 0;
    let err = unpickle(&b, &mut pos).unwrap_err();
    assert!(err.message.contains("budget"), "{err:?}");
    // Sharing itself is fine: the same list twice.
    assert_eq!(
        run(&[b']', b'q', 0, b'h', 0, 0x86, b'.']),
        Ok(Value::Tuple(vec![Value::List(vec![]), Value::List(vec![])]))
    );
}

#[test]
fn deep_nesting_and_cycles_are_errors_not_stack_overflows() {
    // 100,000 nested lists.
    let mut b = vec![b']'; 100_000];
    b.extend(std::iter::repeat_n(b'a', 99_999));
    b.push(b'.');
    let mut pos = 0;
    let err = unpickle(&b, &mut pos).unwrap_err();
    assert!(err.message.contains("nested deeper"), "{err:?}");
    // A list appended to itself (`l = []; l.append(l)`).
    let mut pos = 0;
    let err = unpickle(&[b']', b'q', 0, b'h', 0, b'a', b'.'], &mut pos).unwrap_err();
    assert!(err.message.contains("nested deeper"), "{err:?}");
}

/// A memoised dict filled after it was memoised is seen filled by a later fetch, as in Python.
#[test]
fn memoised_containers_are_shared_not_copied() {
    // EMPTY_DICT, BINPUT 0, "k" 1 SETITEM, POP, BINGET 0, STOP.
    let b = [b'}', b'q', 0, 0x8c, 1, b'k', b'K', 1, b's', b'0', b'h', 0, b'.'];
    assert_eq!(run(&b), Ok(Value::Dict(vec![(Value::Str("k".into()), Value::Int(1))])));
}
