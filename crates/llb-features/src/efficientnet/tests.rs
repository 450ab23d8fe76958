//! EfficientNet-Lite tests on seeded random weights: padding, block layout, key layout against
//! the real file's list, and the folded network against an unfolded reference.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::ops::tf_same_padding;
use super::{
    EfficientNetLite, EfficientNetLiteConfig, EfficientNetLiteEncoder,
    EfficientNetLiteEncoderConfig,
};
use crate::{Encoder, Error};

/// A seeded generator of values in `[lo, hi)` (a 64-bit LCG; tests need no crate for this).
pub(crate) fn seeded_values(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (state >> 40) as f32 / (1u64 << 24) as f32;
            lo + (hi - lo) * u
        })
        .collect()
}

/// Random tensors for every `(key, shape)`, with positive variances.
pub(crate) fn random_tensors(
    expected: &[(String, Vec<usize>)],
    seed: u64,
) -> HashMap<String, Tensor> {
    expected
        .iter()
        .enumerate()
        .map(|(i, (k, shape))| {
            let n = shape.iter().product();
            let (lo, hi) = if k.ends_with("running_var") {
                (0.5, 1.5)
            } else if k.ends_with("bn0.weight")
                || k.ends_with("bn1.weight")
                || k.ends_with("bn2.weight")
            {
                (0.5, 1.0)
            } else {
                (-0.3, 0.3)
            };
            let v = seeded_values(seed + i as u64, n, lo, hi);
            (k.clone(), Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).unwrap())
        })
        .collect()
}

fn check_padding(size: usize, kernel: usize, stride: usize, expected: (usize, usize)) {
    assert_eq!(
        tf_same_padding(size, kernel, stride),
        expected,
        "size {size} k {kernel} s {stride}"
    );
}

#[test]
fn tf_same_padding_puts_the_extra_pixel_after() {
    check_padding(224, 3, 2, (0, 1));
    check_padding(225, 3, 2, (1, 1));
    check_padding(96, 5, 2, (1, 2));
    check_padding(7, 5, 1, (2, 2));
    check_padding(7, 3, 1, (1, 1));
    check_padding(1, 3, 2, (1, 1));
}

#[test]
fn block_layouts_of_the_variants() {
    let lite0 = EfficientNetLiteConfig::lite0();
    let blocks = lite0.blocks();
    assert_eq!(blocks.len(), 16);
    assert_eq!(lite0.last_block_with_stride(8), Some(4));
    assert_eq!(lite0.last_block_with_stride(16), Some(10));
    assert_eq!(
        (blocks[4].out_channels, blocks[10].out_channels, blocks[15].out_channels),
        (40, 112, 320)
    );
    // Lite1: depth 1.1 scales the middle stages' repeats (2,2,3,3,4 -> 3,3,4,4,5), not the ends.
    assert_eq!(EfficientNetLiteConfig::lite1().blocks().len(), 1 + 3 + 3 + 4 + 4 + 5 + 1);
    // Lite2: width 1.1 rounds 16,24,40,80,112,192,320 to multiples of 8.
    let lite2 = EfficientNetLiteConfig::lite2();
    let mut outs: Vec<usize> = lite2.blocks().iter().map(|b| b.out_channels).collect();
    outs.dedup();
    assert_eq!(outs, vec![16, 24, 48, 88, 120, 208, 352]);
    assert_eq!(lite2.blocks().len(), 1 + 3 + 3 + 4 + 4 + 5 + 1);
    assert_eq!(EfficientNetLiteEncoderConfig::lite0_stride8_16().out_blocks, vec![4, 10]);
}

#[test]
fn expected_tensors_match_the_real_files_of_the_three_variants() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/efficientnet");
    for (name, config) in [
        ("lite0", EfficientNetLiteConfig::lite0()),
        ("lite1", EfficientNetLiteConfig::lite1()),
        ("lite2", EfficientNetLiteConfig::lite2()),
    ] {
        let text = std::fs::read_to_string(dir.join(format!("{name}_keys.txt"))).unwrap();
        let mut real: Vec<(String, Vec<usize>)> = text
            .lines()
            .map(|l| {
                let (k, s) = l.split_once(' ').unwrap();
                (k.to_owned(), s.split(',').map(|d| d.parse().unwrap()).collect())
            })
            .collect();
        let mut ours = config.expected_tensors(true);
        ours.sort();
        real.sort();
        assert_eq!(ours, real, "{name}");
    }
}

/// The network written out plainly: unfolded eval-mode BN, candle's grouped convolution.
fn reference_blocks(
    t: &HashMap<String, Tensor>,
    config: &EfficientNetLiteConfig,
    x: &Tensor,
    upto: usize,
) -> Tensor {
    let eps = config.bn_eps;
    let bn = |x: &Tensor, p: &str| {
        let g = |k: &str| t[&format!("{p}.{k}")].reshape((1, (), 1, 1)).unwrap();
        let norm = x.broadcast_sub(&g("running_mean")).unwrap();
        let norm = norm.broadcast_div(&(g("running_var") + eps).unwrap().sqrt().unwrap()).unwrap();
        norm.broadcast_mul(&g("weight")).unwrap().broadcast_add(&g("bias")).unwrap()
    };
    let conv = |x: &Tensor, key: &str, k: usize, s: usize, groups: usize| {
        let (_, _, h, w) = x.dims4().unwrap();
        let (ph, pw) = (tf_same_padding(h, k, s), tf_same_padding(w, k, s));
        let x = x.pad_with_zeros(2, ph.0, ph.1).unwrap().pad_with_zeros(3, pw.0, pw.1).unwrap();
        x.conv2d(&t[&format!("{key}.weight")], 0, s, 1, groups).unwrap()
    };
    let relu6 = |x: Tensor| x.clamp(0f32, 6f32).unwrap();
    let mut x = relu6(bn(&conv(x, "_conv_stem", 3, 2, 1), "_bn0"));
    for (i, b) in config.blocks().iter().enumerate().take(upto + 1) {
        let p = format!("_blocks.{i}");
        let input = x.clone();
        let hidden = b.in_channels * b.expand_ratio;
        if b.expand_ratio != 1 {
            x = relu6(bn(&conv(&x, &format!("{p}._expand_conv"), 1, 1, 1), &format!("{p}._bn0")));
        }
        x = relu6(bn(
            &conv(&x, &format!("{p}._depthwise_conv"), b.kernel, b.stride, hidden),
            &format!("{p}._bn1"),
        ));
        x = bn(&conv(&x, &format!("{p}._project_conv"), 1, 1, 1), &format!("{p}._bn2"));
        if b.stride == 1 && b.in_channels == b.out_channels {
            x = (x + input).unwrap();
        }
    }
    x
}

fn max_relative_error(got: &Tensor, want: &Tensor) -> f32 {
    let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    diff / scale
}

#[test]
fn folded_network_matches_the_unfolded_reference_on_odd_sizes() {
    let config = EfficientNetLiteConfig::lite0();
    let tensors = random_tensors(&config.expected_tensors(true), 7);
    let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu);
    let net = EfficientNetLite::new(vb, &config, true).unwrap();
    let x = Tensor::from_vec(
        seeded_values(1, 2 * 3 * 37 * 50, -2.0, 2.0),
        (2, 3, 37, 50),
        &Device::Cpu,
    )
    .unwrap();
    let outs = net.forward_blocks(&x, &[10, 1, 4]).unwrap();
    assert_eq!(outs[0].dims(), &[2, 112, 3, 4]);
    assert_eq!(outs[1].dims(), &[2, 24, 10, 13]);
    assert_eq!(outs[2].dims(), &[2, 40, 5, 7]);
    for (out, block) in outs.iter().zip([10, 1, 4]) {
        let want = reference_blocks(&tensors, &config, &x, block);
        let err = max_relative_error(out, &want);
        assert!(err < 1e-5, "block {block}: relative error {err}");
    }
    let logits = net.forward_logits(&x).unwrap();
    assert_eq!(logits.dims(), &[2, 1000]);
}

fn write_weights(path: &Path, tensors: &HashMap<String, Tensor>) {
    candle_core::safetensors::save(tensors, path).unwrap();
}

#[test]
fn encoder_loads_checks_and_names_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lite0.safetensors");
    let config = EfficientNetLiteEncoderConfig::lite0_stride8_16();
    let tensors = random_tensors(&config.model.expected_tensors(false), 3);
    write_weights(&path, &tensors);
    let encoder = EfficientNetLiteEncoder::load(&path, &config, &Device::Cpu).unwrap();
    assert_eq!(encoder.name(), "efficientnet-lite0[4,10]");
    let x = Tensor::zeros((1, 3, 64, 96), DType::F32, &Device::Cpu).unwrap();
    let outs = encoder.forward(&x).unwrap();
    assert_eq!(outs[0].dims(), &[1, 40, 8, 12]);
    assert_eq!(outs[1].dims(), &[1, 112, 4, 6]);
    // Deterministic.
    let again = encoder.forward(&x).unwrap();
    assert_eq!(max_relative_error(&outs[1], &again[1]), 0.0);

    for bad in [vec![1, 3, 60, 64], vec![1, 1, 64, 64], vec![3, 64, 64]] {
        let x = Tensor::zeros(bad.as_slice(), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(encoder.forward(&x), Err(Error::InputShape { .. })), "{bad:?}");
    }
    let mut wrong = config.clone();
    wrong.out_blocks = vec![4, 16];
    assert!(matches!(
        EfficientNetLiteEncoder::load(&path, &wrong, &Device::Cpu),
        Err(Error::Config { .. })
    ));
    // The head is not in the file: a classifier cannot be loaded from it.
    let err = EfficientNetLite::load(&path, &config.model, true, &Device::Cpu).unwrap_err();
    assert!(
        matches!(&err, Error::MissingTensor { key, .. } if key == "_conv_head.weight"),
        "{err}"
    );

    let mut bad = tensors.clone();
    bad.insert(
        "_blocks.3._depthwise_conv.weight".into(),
        Tensor::zeros((144, 1, 3, 3), DType::F32, &Device::Cpu).unwrap(),
    );
    write_weights(&path, &bad);
    let err = EfficientNetLiteEncoder::load(&path, &config, &Device::Cpu).unwrap_err();
    assert!(
        matches!(&err, Error::TensorShape { key, got, .. } if key == "_blocks.3._depthwise_conv.weight" && got == &[144, 1, 3, 3]),
        "{err}"
    );
}

#[test]
fn autotraits() {
    fn check<T: Send + Sync>() {}
    check::<EfficientNetLite>();
    check::<EfficientNetLiteEncoder>();
    check::<EfficientNetLiteConfig>();
    check::<Error>();
}
