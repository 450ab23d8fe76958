//! Dinomaly tests on tiny synthetic features: learning, defect ranking, resume equality,
//! persistence and degenerate inputs.

use candle_core::{Device, Tensor};

use super::rng::{self, Purpose};
use super::*;
use crate::order::{FitRows, row_ids};
use crate::{Detector, Error, Result};

const C: usize = 16;
const SIDE: usize = 4;
const LAYERS: usize = 4;
const LATENT: usize = 3;

/// A tiny, fast configuration: 2 heads of 8, 2 decoder blocks, 2 groups.
fn tiny(iterations: usize) -> DinomalyConfig {
    let mut config = DinomalyConfig::guo2025();
    config.head_dim = 8;
    config.decoder_depth = 2;
    config.length = TrainingLength::Iterations(iterations);
    config.batch_size = 4;
    config.inference_batch_size = 3;
    config.optimizer.lr = 1e-2;
    config.schedule = LrSchedule::WarmCosine { warmup_iters: 3, final_lr: 1e-3 };
    config.hard_mining.easy_fraction_ramp_iters = 20;
    config.map.blur_radius_px = 2;
    config
}

/// Features of `n` images, `[n, C, SIDE, SIDE]` per layer: every token is a layer-specific
/// linear image of a low-dimensional latent that varies smoothly with position. With
/// `defect`, image 0's top-left 2×2 tokens are replaced by off-subspace vectors.
fn features(n: usize, seed: u64, defect: bool) -> Result<Vec<Tensor>> {
    let mut basis_rng = rng::stream(99, Purpose::Init, 0);
    let bases: Vec<Vec<f64>> = (0..LAYERS)
        .map(|_| (0..C * LATENT).map(|_| rng::normal(&mut basis_rng)).collect())
        .collect();
    let mut rng = rng::stream(seed, Purpose::Init, 1);
    let tokens = SIDE * SIDE;
    let latents: Vec<Vec<f64>> = (0..n * tokens)
        .map(|i| {
            let t = (i % tokens) as f64;
            (0..LATENT).map(|k| (t * 0.4 + k as f64).sin() + 0.05 * rng::normal(&mut rng)).collect()
        })
        .collect();
    let junk: Vec<f64> = (0..4 * C * LAYERS).map(|_| 2.0 * rng::normal(&mut rng)).collect();
    let mut layers = Vec::new();
    for (l, basis) in bases.iter().enumerate() {
        let mut data = vec![0f32; n * C * tokens];
        for img in 0..n {
            for t in 0..tokens {
                let (y, x) = (t / SIDE, t % SIDE);
                for c in 0..C {
                    let v = if defect && img == 0 && y < 2 && x < 2 {
                        junk[((y * 2 + x) * C + c) * LAYERS + l]
                    } else {
                        let z = &latents[img * tokens + t];
                        (0..LATENT).map(|k| basis[c * LATENT + k] * z[k]).sum::<f64>()
                    };
                    data[(img * C + c) * tokens + t] = v as f32;
                }
            }
        }
        layers.push(Tensor::from_vec(data, (n, C, SIDE, SIDE), &Device::Cpu)?);
    }
    Ok(layers)
}

fn max_per_image(maps: &Tensor) -> Result<Vec<f32>> {
    Ok(maps.flatten_from(1)?.max(1)?.to_vec1::<f32>()?)
}

fn all_finite(t: &Tensor) -> Result<bool> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?.iter().all(|v| v.is_finite()))
}

#[test]
fn autotraits() {
    fn check<T: Send + Sync>() {}
    check::<DinomalyConfig>();
    check::<DinomalyModel>();
    check::<DinomalyTrainer>();
}

#[test]
fn presets_validate_and_round_trip_through_json() -> Result<()> {
    for config in [DinomalyConfig::guo2025(), DinomalyConfig::llbnad(), DinomalyConfig::llb_cpu()] {
        config.validate()?;
        let text = serde_json::to_string(&config)
            .map_err(|e| Error::BadModel { path: "-".into(), reason: e.to_string() })?;
        let back: DinomalyConfig = serde_json::from_str(&text).expect("round trip");
        assert_eq!(back, config);
    }
    let mut value = serde_json::to_value(DinomalyConfig::guo2025()).expect("to value");
    value["threshold"] = serde_json::json!(0.5);
    assert!(serde_json::from_value::<DinomalyConfig>(value).is_err());
    Ok(())
}

#[test]
fn invalid_fields_are_named() {
    let mut config = DinomalyConfig::guo2025();
    config.dropout = 1.0;
    assert!(matches!(config.validate(), Err(Error::Config { field: "dropout", .. })));
    let mut config = DinomalyConfig::guo2025();
    config.decoder_depth = 7;
    assert!(matches!(config.validate(), Err(Error::Config { field: "decoder_depth", .. })));
    let mut config = DinomalyConfig::guo2025();
    config.hard_mining.easy_grad_factor = -0.1;
    assert!(matches!(
        config.validate(),
        Err(Error::Config { field: "hard_mining.easy_grad_factor", .. })
    ));
}

#[test]
fn schedules_follow_the_official_formulas() {
    let config = DinomalyConfig::guo2025();
    assert_eq!(config.lr_at(0, 5000), 0.0);
    assert!((config.lr_at(99, 5000) - 2e-3).abs() < 1e-12);
    assert!((config.lr_at(100, 5000) - 2e-3).abs() < 1e-12);
    assert!((config.lr_at(2550, 5000) - 1.1e-3).abs() < 1e-12);
    assert!(config.lr_at(4999, 5000) > 2e-4 && config.lr_at(4999, 5000) < 2.0001e-4);
    assert_eq!(config.lr_at(5000, 5000), 2e-4);
    assert_eq!(config.easy_fraction_at(0), 0.0);
    assert!((config.easy_fraction_at(500) - 0.45).abs() < 1e-12);
    assert_eq!(config.easy_fraction_at(5000), 0.9);
    let llbnad = DinomalyConfig::llbnad();
    assert_eq!(llbnad.lr_at(799, 1000), 5e-3);
    assert!((llbnad.lr_at(800, 1000) - 5e-4).abs() < 1e-12);
    assert_eq!(llbnad.easy_fraction_at(0), 0.9);
}

#[test]
fn loss_decreases_on_a_learnable_set() -> Result<()> {
    let layers = features(12, 1, false)?;
    let mut trainer = DinomalyTrainer::new(&tiny(80), &row_ids(layers[0].dim(0)?), &layers)?;
    let losses = trainer.train_until(80)?;
    let first: f32 = losses[..10].iter().sum::<f32>() / 10.0;
    let last: f32 = losses[70..].iter().sum::<f32>() / 10.0;
    assert!(last < 0.5 * first, "first {first} last {last}");
    Ok(())
}

#[test]
fn planted_defect_scores_higher_than_clean_images() -> Result<()> {
    let model = tiny(80).fit_rows(&features(12, 1, false)?)?;
    let test = features(4, 2, true)?;
    let maps = model.anomaly_maps(&test, (16, 16))?;
    assert_eq!(maps.dims(), [4, 16, 16]);
    let scores = max_per_image(&maps)?;
    assert!(scores[1..].iter().all(|&s| s < scores[0]), "scores {scores:?}");
    // The defect sits in the top-left quarter of the map.
    let map0 = maps.get(0)?.to_vec2::<f32>()?;
    assert!(
        map0[2][2] > map0[13][13],
        "defect corner {} vs far corner {}",
        map0[2][2],
        map0[13][13]
    );
    Ok(())
}

#[test]
fn resumed_training_equals_uninterrupted_training() -> Result<()> {
    let mut llbnad = DinomalyConfig::llbnad();
    llbnad.head_dim = 8;
    llbnad.decoder_depth = 2;
    llbnad.batch_size = 4;
    llbnad.length = TrainingLength::Iterations(9);
    check_resume(&tiny(9))?;
    check_resume(&llbnad)
}

#[test]
fn the_cpu_pass_trains_like_autograd() -> Result<()> {
    let config = tiny(6);
    let layers = features(6, 3, false)?;
    let train = |autograd: bool| -> Result<(Vec<f32>, DinomalyModel)> {
        let mut trainer = DinomalyTrainer::new(&config, &row_ids(6), &layers)?;
        trainer.use_autograd(autograd);
        Ok((trainer.train_until(6)?, trainer.model()?))
    };
    let ((fused_losses, fused), (graph_losses, graph)) = (train(false)?, train(true)?);
    for (a, b) in fused_losses.iter().zip(&graph_losses) {
        assert!(
            (a - b).abs() <= 1e-4 * b.abs().max(1.0),
            "losses {fused_losses:?} vs {graph_losses:?}"
        );
    }
    for (name, w) in &graph.weights {
        let (x, y) = (
            w.flatten_all()?.to_vec1::<f32>()?,
            fused.weights[name].flatten_all()?.to_vec1::<f32>()?,
        );
        let err = x.iter().zip(&y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(err <= 1e-4, "weight {name}: max difference {err}");
    }
    Ok(())
}

/// Trains 9 iterations straight, and 4 + checkpoint + resume + 5; both must agree bit for bit.
fn check_resume(config: &DinomalyConfig) -> Result<()> {
    let config = config.clone();
    let layers = features(6, 3, false)?;
    let mut straight = DinomalyTrainer::new(&config, &row_ids(layers[0].dim(0)?), &layers)?;
    let straight_losses = straight.train_until(9)?;

    let dir = tempfile::tempdir().map_err(|source| Error::Io { path: "tempdir".into(), source })?;
    let path = dir.path().join("ckpt.safetensors");
    let mut first = DinomalyTrainer::new(&config, &row_ids(layers[0].dim(0)?), &layers)?;
    // Checkpoints land at iterations 3 and 4; the resume starts from the last one.
    let mut losses = first.train_until_with_checkpoints(4, &path, 3)?;
    drop(first);
    let mut second = DinomalyTrainer::resume(&config, &row_ids(layers[0].dim(0)?), &layers, &path)?;
    assert_eq!(second.iteration(), 4);
    losses.extend(second.train_until(9)?);
    assert_eq!(losses, straight_losses);

    let (a, b) = (straight.model()?, second.model()?);
    for (name, w) in &a.weights {
        let (x, y) =
            (w.flatten_all()?.to_vec1::<f32>()?, b.weights[name].flatten_all()?.to_vec1::<f32>()?);
        assert!(x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()), "weight {name} differs");
    }

    // A checkpoint refuses another configuration or other features.
    let mut other = config.clone();
    other.seed += 1;
    assert!(matches!(
        DinomalyTrainer::resume(&other, &row_ids(layers[0].dim(0)?), &layers, &path),
        Err(Error::BadModel { .. })
    ));
    let other_layers = features(6, 4, false)?;
    assert!(matches!(
        DinomalyTrainer::resume(&config, &row_ids(other_layers[0].dim(0)?), &other_layers, &path),
        Err(Error::BadModel { .. })
    ));
    Ok(())
}

fn card() -> crate::ModelCard {
    crate::ModelCard {
        encoder: "synthetic".into(),
        encoder_weights_sha256: "0".repeat(64),
        input_spec: llb_types::InputSpec {
            mean: llb_types::InputSpec::IMAGENET_MEAN,
            std: llb_types::InputSpec::IMAGENET_STD,
            size_multiple_px: 14,
        },
        image_size_px: [9, 11],
        image_score_rule: crate::ImageScoreRule::TopMean { fraction: 0.01 },
        image_score_threshold: None,
    }
}

#[test]
fn saved_model_scores_bit_identically() -> Result<()> {
    let model = tiny(5).fit_rows(&features(5, 5, false)?)?;
    let dir = tempfile::tempdir().map_err(|source| Error::Io { path: "tempdir".into(), source })?;
    let path = dir.path().join("model");
    model.save(&path, &card())?;
    let (loaded, loaded_card) = DinomalyModel::load(&path, &Device::Cpu)?;
    assert_eq!(loaded_card, card());
    assert_eq!(loaded.config(), model.config());
    assert_eq!(loaded.name(), model.name());
    let (boxed, _) = crate::load_detector(&path, &Device::Cpu)?;
    let test = features(3, 6, true)?;
    let a = model.anomaly_maps(&test, (9, 11))?.flatten_all()?.to_vec1::<f32>()?;
    for maps in [loaded.anomaly_maps(&test, (9, 11))?, boxed.anomaly_maps(&test, (9, 11))?] {
        let b = maps.flatten_all()?.to_vec1::<f32>()?;
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }

    // A damaged tensors file or a missing folder are typed errors.
    let tensors = path.join(crate::MODEL_TENSORS_FILE);
    std::fs::write(&tensors, b"not a model")
        .map_err(|source| Error::Io { path: tensors.clone(), source })?;
    assert!(matches!(DinomalyModel::load(&path, &Device::Cpu), Err(Error::BadModel { .. })));
    assert!(matches!(
        DinomalyModel::load(&dir.path().join("missing"), &Device::Cpu),
        Err(Error::Io { .. })
    ));
    Ok(())
}

#[test]
fn constant_inputs_and_a_single_image_give_finite_maps() -> Result<()> {
    for value in [0f32, 1.0] {
        let layers: Vec<Tensor> = (0..LAYERS)
            .map(|_| Tensor::full(value, (3, C, SIDE, SIDE), &Device::Cpu))
            .collect::<Result<_, _>>()?;
        let model = tiny(4).fit_rows(&layers)?;
        let maps = model.anomaly_maps(&layers, (8, 8))?;
        assert!(all_finite(&maps)?, "constant {value}");
    }
    let one = features(1, 7, false)?;
    let model = tiny(4).fit_rows(&one)?;
    let maps = model.anomaly_maps(&features(2, 8, true)?, (8, 8))?;
    assert!(all_finite(&maps)?);
    Ok(())
}

#[test]
fn bad_features_are_typed_errors() -> Result<()> {
    let config = tiny(2);
    assert!(matches!(config.fit_rows(&[]), Err(Error::Empty { .. })));
    let mut layers = features(3, 1, false)?;
    layers.pop();
    assert!(matches!(config.fit_rows(&layers), Err(Error::Shape { .. })));
    let mut layers = features(3, 1, false)?;
    layers[1] = Tensor::zeros((3, C, SIDE, SIDE + 1), candle_core::DType::F32, &Device::Cpu)?;
    assert!(matches!(config.fit_rows(&layers), Err(Error::Shape { .. })));
    let mut layers = features(3, 1, false)?;
    layers[2] = Tensor::full(f32::NAN, (3, C, SIDE, SIDE), &Device::Cpu)?;
    assert!(matches!(config.fit_rows(&layers), Err(Error::NonFinite { .. })));
    let mut odd = config.clone();
    odd.head_dim = 5;
    assert!(matches!(odd.fit_rows(&features(3, 1, false)?), Err(Error::Shape { .. })));

    let mut trainer = DinomalyTrainer::new(&config, &row_ids(3), &features(3, 1, false)?)?;
    let never = std::path::Path::new("never-written.safetensors");
    assert!(matches!(trainer.train_until_with_checkpoints(2, never, 0), Err(Error::Config { .. })));

    let model = config.fit_rows(&features(3, 1, false)?)?;
    let wrong: Vec<Tensor> = (0..LAYERS)
        .map(|_| Tensor::zeros((1, C, SIDE + 1, SIDE), candle_core::DType::F32, &Device::Cpu))
        .collect::<Result<_, _>>()?;
    assert!(matches!(model.anomaly_maps(&wrong, (8, 8)), Err(Error::Shape { .. })));
    Ok(())
}

#[test]
fn epochs_resolve_to_whole_batches_of_the_training_set() {
    // 60 images at batch 8: 7 full batches per epoch (the remainder is dropped).
    assert_eq!(TrainingLength::Epochs(10.0).iterations(60, 8), 70);
    assert_eq!(TrainingLength::Epochs(10.0).iterations(20, 8), 20);
    // A subset smaller than a batch still trains one batch per epoch; never zero iterations.
    assert_eq!(TrainingLength::Epochs(2.0).iterations(3, 8), 2);
    assert_eq!(TrainingLength::Epochs(0.01).iterations(60, 8), 1);
    assert_eq!(TrainingLength::Iterations(300).iterations(3, 8), 300);
    let mut config = DinomalyConfig::llb_cpu();
    config.length = TrainingLength::Epochs(0.0);
    assert!(matches!(config.validate(), Err(Error::Config { field: "length", .. })));
}
