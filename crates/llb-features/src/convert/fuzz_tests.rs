//! Fuzzing of this crate's parsers of outside bytes (`llb_types::fuzz`): legacy PyTorch pickles,
//! zip checkpoints, ONNX protobuf, and safetensors files (feature-cache entries,
//! ViT weights). A fixed number of seeded mutants per parser; no panic, and peak memory within a
//! bound linear in the input length.

use super::onnx_proto::{OnnxGraph, encode};
use super::pickle::tests::build;
use super::pickle::{max_decoded_bytes, read_legacy};
use crate::{
    CacheItem, FeatureCache, FeatureKey, PosInterpolation, ViTConfig, ViTWeights, read_pth,
    sha256_hex,
};
use candle_core::{Device, Tensor};
use llb_types::fuzz::{PeakAlloc, run};
use std::path::Path;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// Mutants tried per parser.
const N: usize = 2000;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/efficientnet").join(name),
    )
    .unwrap()
}

#[test]
fn legacy_pickle_reader() {
    let corpus = vec![fixture("tiny_legacy.pth"), build::two_views()];
    let tokens: [&[u8]; 8] =
        [b"h\x00", b"q\x00", b"(", b"t", b"e", b"\x86", b"ctorch\nFloatStorage\n", b"\x8a\x08"];
    // The file is in memory already; the reader may decode up to `max_decoded_bytes` of tensors
    // and spend a bounded multiple of the input on its arena, stack and memo.
    let bound = |len: usize| max_decoded_bytes(len) + 512 * len + (1 << 20);
    run("legacy .pth pickle", &corpus, &tokens, N, 1, bound, |b| {
        read_legacy(b).map(drop).map_err(|e| e.message)
    })
    .assert_clean();
}

#[test]
fn zip_checkpoint_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.pth");
    let corpus = vec![fixture("tiny_zip.pth")];
    run(
        "zip .pth",
        &corpus,
        &[b"PK\x03\x04"],
        N / 4,
        2,
        |len| 64 * len + (4 << 20),
        |b| {
            std::fs::write(&path, b).unwrap();
            read_pth(&path).map(drop)
        },
    )
    .assert_clean();
}

#[test]
fn onnx_protobuf_reader() {
    let corpus = vec![encode::model(
        &[encode::node("/backbone/x/MatMul", "MatMul", &["a", "w"], &["y"])],
        &[
            encode::tensor("w", &[2, 3], &[1., 2., 3., 4., 5., 6.], true),
            encode::tensor("b", &[2], &[7., 8.], false),
        ],
    )];
    run(
        "onnx protobuf",
        &corpus,
        &[b"\x0a\xff\xff\xff\x0f", b"\x08\x80\x80\x80\x80\x80\x01"],
        N,
        3,
        |len| 16 * len + (1 << 20),
        |b| OnnxGraph::decode(b).map(drop),
    )
    .assert_clean();
}

fn key() -> FeatureKey {
    FeatureKey { encoder: "toy[0,1]".into(), weights_sha256: "w".into(), input_size_px: (4, 4) }
}

#[test]
fn safetensors_feature_cache_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cache = FeatureCache::open(dir.path()).unwrap();
    let item = CacheItem { sample_id: "s".into(), content_sha256: sha256_hex(b"image") };
    let layers = [
        Tensor::arange(0f32, 24., &Device::Cpu).unwrap().reshape((2, 3, 4)).unwrap(),
        Tensor::ones((3, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap(),
    ];
    cache.put(&key(), &item, &layers).unwrap();
    let path = cache.entry_path(&key(), &item);
    let corpus = vec![std::fs::read(&path).unwrap()];
    let tokens: [&[u8]; 4] = [b"\"F64\"", b"\"shape\":[", b"999999999999", b"\"data_offsets\":[0,"];
    // `get` reads the file (its length) and builds tensors no larger than the data.
    run(
        "safetensors feature-cache entry",
        &corpus,
        &tokens,
        N,
        4,
        |len| 8 * len + (1 << 20),
        |b| {
            std::fs::write(&path, b).unwrap();
            cache.get(&key(), &item, &Device::Cpu).map(drop)
        },
    )
    .assert_clean();
}

#[test]
fn safetensors_vit_weights() {
    let config = ViTConfig {
        name: "fuzz-vit".into(),
        hidden_size: 4,
        num_hidden_layers: 1,
        num_attention_heads: 1,
        intermediate_size: 4,
        patch_size: 2,
        position_grid_side: 2,
        num_register_tokens: 0,
        layer_norm_eps: 1e-6,
        pos_interpolation: PosInterpolation::Bicubic,
    };
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = config
        .expected_tensors()
        .into_iter()
        .map(|(k, shape)| {
            let n: usize = shape.iter().product();
            (k, shape, vec![0; 4 * n])
        })
        .collect();
    let bytes =
        crate::cache::safetensors_bytes(&tensors, Default::default(), Path::new("w")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let tokens: [&[u8]; 3] = [b"\"BF16\"", b"\"shape\":[0,", b"18446744073709551615"];
    run(
        "safetensors ViT weights",
        &[bytes],
        &tokens,
        N,
        5,
        |len| 8 * len + (1 << 20),
        |b| {
            std::fs::write(&path, b).unwrap();
            ViTWeights::load(&path, &config, &Device::Cpu).map(drop)
        },
    )
    .assert_clean();
}
