//! Save → load round trips (bit-identical scores) and damaged saved models.

use super::*;
use crate::OutlierScore;
use crate::order::FitRows;
use crate::patchcore::test_data::{normal_features, plant};

/// Counts this test binary's peak allocations for the fuzz test below.
#[global_allocator]
static ALLOC: llb_types::fuzz::PeakAlloc = llb_types::fuzz::PeakAlloc;

const GRID: (usize, usize) = (5, 5);
const C: usize = 6;

fn features(n: usize, seed: u64, defect: bool) -> Vec<Tensor> {
    let mut values = normal_features(n, C, GRID, seed);
    if defect {
        plant(&mut values, C, GRID, 0, (1, 3), 3.0);
    }
    vec![Tensor::from_vec(values, (n, C, GRID.0, GRID.1), &Device::Cpu).unwrap()]
}

fn card() -> ModelCard {
    ModelCard {
        encoder: "wrn50-2[layer2,layer3]".into(),
        encoder_weights_sha256: "ab".repeat(32),
        input_spec: InputSpec {
            mean: InputSpec::IMAGENET_MEAN,
            std: InputSpec::IMAGENET_STD,
            size_multiple_px: 8,
        },
        image_size_px: [40, 40],
        image_score_rule: ImageScoreRule::TopMean { fraction: 0.01 },
        image_score_threshold: Some(1.25),
    }
}

/// Maps and image scores as raw bits.
fn bits(detector: &dyn Detector, layers: &[Tensor]) -> (Vec<u32>, Vec<u32>) {
    let scores = detector.score(layers, (40, 40), ImageScoreRule::Max).unwrap();
    let maps = scores.maps.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    (
        maps.iter().map(|v| v.to_bits()).collect(),
        scores.image_scores.iter().map(|v| v.to_bits()).collect(),
    )
}

#[test]
fn patchcore_round_trip_scores_bit_identically() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|source| Error::Io { path: "tempdir".into(), source })?;
    let config = PatchCoreConfig {
        coreset_fraction: 0.3,
        projection_dim: Some(4),
        ..PatchCoreConfig::anomalib()
    };
    let model = config.fit_rows(&features(6, 1, false))?;
    model.save(dir.path(), &card())?;
    let (loaded, loaded_card) = PatchCore::load(dir.path(), &Device::Cpu)?;
    assert_eq!(loaded_card, card());
    assert_eq!(loaded.config(), model.config());
    let test = features(3, 2, true);
    assert_eq!(bits(&loaded, &test), bits(&model, &test));
    let (any, _) = load_detector(dir.path(), &Device::Cpu)?;
    assert_eq!(any.name(), model.name());
    assert_eq!(bits(any.as_ref(), &test), bits(&model, &test));
    Ok(())
}

#[test]
fn softpatch_round_trip_scores_bit_identically() -> Result<()> {
    for soft_weighting in [true, false] {
        let dir =
            tempfile::tempdir().map_err(|source| Error::Io { path: "tempdir".into(), source })?;
        let config = SoftPatchConfig {
            outlier_score: OutlierScore::Lof { k: 3 },
            soft_weighting,
            projection_dim: Some(4),
            ..SoftPatchConfig::jiang2022()
        };
        let model = config.fit_rows(&features(8, 3, false))?;
        model.save(dir.path(), &card())?;
        let (loaded, _) = SoftPatch::load(dir.path(), &Device::Cpu)?;
        assert_eq!(loaded.bank_weights().is_some(), soft_weighting);
        let test = features(2, 4, true);
        assert_eq!(bits(&loaded, &test), bits(&model, &test));
        // The wrong loader names the kind it found.
        assert!(matches!(PatchCore::load(dir.path(), &Device::Cpu), Err(Error::BadModel { .. })));
    }
    Ok(())
}

#[test]
fn per_image_scoring_keeps_its_bank_images_across_save_and_load() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|source| Error::Io { path: "tempdir".into(), source })?;
    let config = PatchCoreConfig {
        coreset_fraction: 0.5,
        bank_sampling: crate::BankSampling::Random,
        patch_score: crate::PatchScore::KthNearestImage { fraction: 0.5 },
        ..PatchCoreConfig::roth2022()
    };
    let model = config.fit_rows(&features(6, 7, false))?;
    model.save(dir.path(), &card())?;
    let (loaded, _) = PatchCore::load(dir.path(), &Device::Cpu)?;
    assert_eq!(loaded.bank_images(), model.bank_images());
    assert!(model.bank_images().is_some_and(|i| i.contains(&5)));
    let test = features(2, 8, true);
    assert_eq!(bits(&loaded, &test), bits(&model, &test));
    Ok(())
}

#[test]
fn damaged_models_are_errors() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|source| Error::Io { path: "tempdir".into(), source })?;
    let model = PatchCoreConfig { projection_dim: Some(4), ..PatchCoreConfig::roth2022() }
        .fit_rows(&features(4, 5, false))?;
    model.save(dir.path(), &card())?;
    let (tensors, json) = model_files(dir.path());

    // A flipped byte in the tensors file fails the checksum.
    let original =
        std::fs::read(&tensors).map_err(|source| Error::Io { path: tensors.clone(), source })?;
    let mut damaged = original.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    std::fs::write(&tensors, &damaged)
        .map_err(|source| Error::Io { path: tensors.clone(), source })?;
    assert!(matches!(PatchCore::load(dir.path(), &Device::Cpu), Err(Error::BadModel { .. })));
    std::fs::write(&tensors, &original)
        .map_err(|source| Error::Io { path: tensors.clone(), source })?;
    assert!(PatchCore::load(dir.path(), &Device::Cpu).is_ok());

    // An unknown JSON field or another format version is refused.
    let text = std::fs::read_to_string(&json)
        .map_err(|source| Error::Io { path: json.clone(), source })?;
    let extra = text.replacen("\"format_version\"", "\"colour\": 1,\n  \"format_version\"", 1);
    std::fs::write(&json, extra).map_err(|source| Error::Io { path: json.clone(), source })?;
    assert!(matches!(PatchCore::load(dir.path(), &Device::Cpu), Err(Error::Json { .. })));
    let future = text.replacen("\"format_version\": 1", "\"format_version\": 2", 1);
    std::fs::write(&json, future).map_err(|source| Error::Io { path: json.clone(), source })?;
    assert!(matches!(SavedModel::read(dir.path()), Err(Error::BadModel { .. })));

    // A missing folder is an IO error naming the JSON file.
    match PatchCore::load(&dir.path().join("absent"), &Device::Cpu) {
        Err(Error::Io { path, .. }) => assert!(path.ends_with(MODEL_CARD_FILE)),
        other => panic!("expected an io error, got {other:?}"),
    }
    Ok(())
}

#[test]
fn saved_model_json_names_the_kind() {
    let saved = SavedModel {
        format_version: FORMAT_VERSION,
        card: card(),
        detector: DetectorState::PatchCore { config: PatchCoreConfig::roth2022(), grid: [28, 28] },
        tensors_sha256: String::new(),
    };
    let json = serde_json::to_value(&saved).unwrap();
    assert_eq!(json["detector"]["kind"], "patchcore");
    assert_eq!(
        json["card"]["image_score_rule"],
        serde_json::json!({"top-mean": {"fraction": 0.01f32}})
    );
    assert_eq!(serde_json::from_value::<SavedModel>(json).unwrap(), saved);
}

#[test]
fn cards_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<SavedModel>();
    check::<ModelCard>();
}

/// Seeded mutants of a saved PatchCore model (`llb_types::fuzz`): of its card, and of its
/// safetensors file with the card's checksum updated so that the header parser sees them.
/// No panic, peak memory linear in the files' length.
#[test]
fn fuzz_saved_model_files() -> Result<()> {
    use llb_types::fuzz::run;
    let dir = tempfile::tempdir().map_err(|source| Error::Io { path: "tempdir".into(), source })?;
    let config = PatchCoreConfig {
        coreset_fraction: 0.3,
        projection_dim: Some(4),
        ..PatchCoreConfig::anomalib()
    };
    config.fit_rows(&features(6, 1, false))?.save(dir.path(), &card())?;
    let (tensors_path, card_path) = model_files(dir.path());
    let (tensors, card_json) =
        (std::fs::read(&tensors_path).unwrap(), std::fs::read(&card_path).unwrap());
    let load = || load_detector(dir.path(), &Device::Cpu).map(drop);
    let tokens: [&[u8]; 4] = [b"null", b"-1", b"18446744073709551616", b"\"patchcore\""];
    run(
        "saved model card (json)",
        std::slice::from_ref(&card_json),
        &tokens,
        500,
        41,
        |len| 64 * len + (1 << 20),
        |b| {
            std::fs::write(&card_path, b).unwrap();
            load()
        },
    )
    .assert_clean();
    std::fs::write(&card_path, &card_json).unwrap();
    let mut card_value: serde_json::Value = serde_json::from_slice(&card_json).unwrap();
    let tokens: [&[u8]; 3] = [b"\"F64\"", b"\"shape\":[", b"\"data_offsets\":[0,"];
    let bound = |len: usize| 8 * len + (1 << 20);
    run("saved model tensors (safetensors)", &[tensors], &tokens, 500, 42, bound, |b| {
        std::fs::write(&tensors_path, b).unwrap();
        card_value["tensors_sha256"] = sha256_hex(b).into();
        std::fs::write(&card_path, card_value.to_string()).unwrap();
        load()
    })
    .assert_clean();
    Ok(())
}
