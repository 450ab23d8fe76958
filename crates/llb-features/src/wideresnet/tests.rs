//! WideResNet tests: the key layout against torchvision's, and a small random-weight trunk
//! against an unfolded reference written with candle's plain ops.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::{WideResNet, WideResNetConfig, WideResNetEncoder, WideResNetEncoderConfig};
use crate::efficientnet::tests::{random_tensors, seeded_values};
use crate::{Encoder, Error};

#[test]
fn expected_tensors_match_torchvision_wide_resnet50_2() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wideresnet/wide_resnet50_2_keys.txt");
    let text = std::fs::read_to_string(path).unwrap();
    let torchvision: Vec<(String, Vec<usize>)> = text
        .lines()
        .map(|l| {
            let (k, s) = l.split_once(' ').unwrap();
            (k.to_owned(), s.split(',').map(|d| d.parse().unwrap()).collect())
        })
        .collect();
    let config = WideResNetConfig::wide_resnet50_2();
    let mut ours = config.expected_tensors(4);
    let mut theirs = torchvision.clone();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs);
    // torchvision's trunk parameter count (the fixture script prints it): 66,834,240.
    let params: usize = config
        .expected_tensors(4)
        .iter()
        .filter(|(k, _)| !k.contains("running_"))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    assert_eq!(params, 66_834_240);
    // Building up to layer 3 reads exactly the stem, layer1, layer2 and layer3 tensors.
    assert!(config.expected_tensors(3).iter().all(|(k, _)| !k.starts_with("layer4")));
    assert_eq!((config.layer_channels(2), config.layer_channels(3)), (512, 1024));
}

fn tiny_config() -> WideResNetConfig {
    WideResNetConfig {
        name: "tiny".into(),
        blocks_per_layer: [1, 2, 1, 1],
        base_width: 8,
        bn_eps: 1e-5,
    }
}

/// The trunk written out plainly: unfolded eval-mode BN, candle's padded convolution.
fn reference_layers(
    t: &HashMap<String, Tensor>,
    config: &WideResNetConfig,
    x: &Tensor,
    upto: usize,
) -> Vec<Tensor> {
    let bn = |x: &Tensor, p: &str| {
        let g = |k: &str| t[&format!("{p}.{k}")].reshape((1, (), 1, 1)).unwrap();
        let norm = x.broadcast_sub(&g("running_mean")).unwrap();
        let norm = norm
            .broadcast_div(&(g("running_var") + config.bn_eps).unwrap().sqrt().unwrap())
            .unwrap();
        norm.broadcast_mul(&g("weight")).unwrap().broadcast_add(&g("bias")).unwrap()
    };
    let conv = |x: &Tensor, key: &str, pad: usize, stride: usize| {
        x.conv2d(&t[&format!("{key}.weight")], pad, stride, 1, 1).unwrap()
    };
    let x = bn(&conv(x, "conv1", 3, 2), "bn1").relu().unwrap();
    let neg = x.pad_with_same(2, 1, 1).unwrap().pad_with_same(3, 1, 1).unwrap();
    // -inf padding for the max pool, written independently of the trunk's zero padding.
    let (_, _, h, w) = x.dims4().unwrap();
    let mask = Tensor::ones((1, 1, h, w), DType::F32, &Device::Cpu)
        .unwrap()
        .pad_with_zeros(2, 1, 1)
        .unwrap()
        .pad_with_zeros(3, 1, 1)
        .unwrap();
    let outside = ((mask.clone() - 1.0).unwrap() * 1e30).unwrap();
    let padded = neg.broadcast_mul(&mask).unwrap().broadcast_add(&outside).unwrap();
    let mut x = padded.max_pool2d_with_stride(3, 2).unwrap();
    let mut outs = Vec::new();
    for layer in 1..=upto {
        for b in 0..config.blocks_per_layer[layer - 1] {
            let p = format!("layer{layer}.{b}");
            let stride = if b == 0 && layer > 1 { 2 } else { 1 };
            let h = bn(&conv(&x, &format!("{p}.conv1"), 0, 1), &format!("{p}.bn1")).relu().unwrap();
            let h = bn(&conv(&h, &format!("{p}.conv2"), 1, stride), &format!("{p}.bn2"))
                .relu()
                .unwrap();
            let h = bn(&conv(&h, &format!("{p}.conv3"), 0, 1), &format!("{p}.bn3"));
            let identity = if b == 0 {
                bn(&conv(&x, &format!("{p}.downsample.0"), 0, stride), &format!("{p}.downsample.1"))
            } else {
                x.clone()
            };
            x = (h + identity).unwrap().relu().unwrap();
        }
        outs.push(x.clone());
    }
    outs
}

fn max_relative_error(got: &Tensor, want: &Tensor) -> f32 {
    let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    diff / want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn folded_trunk_matches_the_unfolded_reference() {
    let config = tiny_config();
    let tensors = random_tensors(&config.expected_tensors(3), 11);
    let net = WideResNet::new(
        VarBuilder::from_tensors(tensors.clone(), DType::F32, &Device::Cpu),
        &config,
        3,
    )
    .unwrap();
    let x = Tensor::from_vec(
        seeded_values(5, 2 * 3 * 64 * 96, -2.0, 2.0),
        (2, 3, 64, 96),
        &Device::Cpu,
    )
    .unwrap();
    let outs = net.forward_layers(&x, &[3, 2]).unwrap();
    assert_eq!(outs[0].dims(), &[2, 1024, 4, 6]);
    assert_eq!(outs[1].dims(), &[2, 512, 8, 12]);
    let want = reference_layers(&tensors, &config, &x, 3);
    let e3 = max_relative_error(&outs[0], &want[2]);
    let e2 = max_relative_error(&outs[1], &want[1]);
    assert!(e3 < 1e-5 && e2 < 1e-5, "relative errors layer3 {e3}, layer2 {e2}");
    // Odd input sizes work too (the stem and max pool round like torchvision's).
    let odd =
        Tensor::from_vec(seeded_values(6, 3 * 37 * 45, -1.0, 1.0), (1, 3, 37, 45), &Device::Cpu)
            .unwrap();
    let got = net.forward_layers(&odd, &[2]).unwrap().remove(0);
    let want = reference_layers(&tensors, &config, &odd, 2).remove(1);
    assert_eq!(got.dims(), want.dims());
    assert!(max_relative_error(&got, &want) < 1e-5);
}

#[test]
fn encoder_runs_only_up_to_the_last_layer_and_checks_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrn.safetensors");
    let config = WideResNetEncoderConfig { model: tiny_config(), out_layers: vec![2, 3] };
    // The file holds layers up to 3 only: a layer-4 trunk cannot be built from it.
    candle_core::safetensors::save(&random_tensors(&config.model.expected_tensors(3), 2), &path)
        .unwrap();
    let encoder = WideResNetEncoder::load(&path, &config, &Device::Cpu).unwrap();
    assert_eq!(encoder.name(), "tiny[2,3]");
    assert_eq!(encoder.input_spec().size_multiple_px, 16);
    let x = Tensor::zeros((1, 3, 32, 48), DType::F32, &Device::Cpu).unwrap();
    let outs = encoder.forward(&x).unwrap();
    assert_eq!(outs[0].dims(), &[1, 512, 4, 6]);
    assert_eq!(outs[1].dims(), &[1, 1024, 2, 3]);
    let x = Tensor::zeros((1, 3, 40, 48), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(encoder.forward(&x), Err(Error::InputShape { .. })));

    let deeper = WideResNetEncoderConfig { out_layers: vec![4], ..config.clone() };
    let err = WideResNetEncoder::load(&path, &deeper, &Device::Cpu).unwrap_err();
    assert!(
        matches!(&err, Error::MissingTensor { key, .. } if key == "layer4.0.conv1.weight"),
        "{err}"
    );
    let bad = WideResNetEncoderConfig { out_layers: vec![0, 2], ..config };
    assert!(matches!(
        WideResNetEncoder::load(&path, &bad, &Device::Cpu),
        Err(Error::Config { .. })
    ));
}

#[test]
fn autotraits() {
    fn check<T: Send + Sync>() {}
    check::<WideResNet>();
    check::<WideResNetEncoder>();
    check::<WideResNetEncoderConfig>();
}
