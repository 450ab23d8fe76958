//! SoftPatch tests on synthetic features: denoising a contaminated training set, weights and
//! degenerate inputs.

use super::*;
use crate::order::FitRows;
use crate::patchcore::test_data::{normal_features, plant};
use crate::{Detector, Error, ImageScoreRule, PatchCoreConfig, Result};
use candle_core::{Device, Tensor};

const GRID: (usize, usize) = (6, 6);
const C: usize = 8;

fn tensor(values: Vec<f32>, n: usize) -> Tensor {
    Tensor::from_vec(values, (n, C, GRID.0, GRID.1), &Device::Cpu).unwrap()
}

fn config(outlier_score: OutlierScore) -> SoftPatchConfig {
    SoftPatchConfig {
        outlier_score,
        noise_fraction: 0.02,
        coreset_fraction: 1.0,
        projection_dim: Some(4),
        blur_sigma_px: 1.0,
        ..SoftPatchConfig::jiang2022()
    }
}

/// 12 clean training images plus image 12 carrying a defect at patch (2, 2); a test batch of a
/// clean image and an image with the same defect.
fn contaminated() -> (Tensor, Tensor) {
    let mut train = normal_features(13, C, GRID, 11);
    plant(&mut train, C, GRID, 12, (2, 2), 4.0);
    let mut test = normal_features(2, C, GRID, 12);
    plant(&mut test, C, GRID, 1, (2, 2), 4.0);
    (tensor(train, 13), tensor(test, 2))
}

#[test]
fn denoising_removes_a_defect_that_patchcore_memorises() -> Result<()> {
    let (train, test) = contaminated();
    let rule = ImageScoreRule::Max;
    let patchcore = PatchCoreConfig {
        coreset_fraction: 1.0,
        blur_sigma_px: 1.0,
        ..PatchCoreConfig::roth2022()
    };
    let pc = patchcore.fit_rows(std::slice::from_ref(&train))?.score(
        std::slice::from_ref(&test),
        (12, 12),
        rule,
    )?;
    // PatchCore learnt the defect: the defective test image is not clearly worse.
    assert!(pc.image_scores[1] < 2.0 * pc.image_scores[0], "patchcore {:?}", pc.image_scores);
    for outlier in [OutlierScore::Lof { k: 6 }, OutlierScore::KnnDistance { k: 1 }] {
        let model = config(outlier).fit_rows(std::slice::from_ref(&train))?;
        // A few patches, at most 12 of 468, are dropped.
        assert!(
            model.n_dropped() > 0 && model.n_dropped() <= 12,
            "{outlier:?}: {}",
            model.n_dropped()
        );
        assert_eq!(model.bank_len(), 13 * 36 - model.n_dropped());
        let s = model.score(std::slice::from_ref(&test), (12, 12), rule)?.image_scores;
        assert!(s[1] > 3.0 * s[0], "{outlier:?}: {s:?}");
    }
    Ok(())
}

#[test]
fn soft_weights_multiply_distances() -> Result<()> {
    let (train, test) = contaminated();
    let soft = config(OutlierScore::KnnDistance { k: 2 }).fit_rows(std::slice::from_ref(&train))?;
    let hard =
        SoftPatchConfig { soft_weighting: false, ..config(OutlierScore::KnnDistance { k: 2 }) }
            .fit_rows(std::slice::from_ref(&train))?;
    let weights = soft.bank_weights().map(|w| w.to_vec1::<f32>()).transpose()?.unwrap_or_default();
    assert_eq!(weights.len(), soft.bank_len());
    // kNN-distance weights are 1 + a distance.
    assert!(weights.iter().all(|w| *w >= 1.0 && w.is_finite()));
    assert!(hard.bank_weights().is_none());
    assert_eq!(soft.bank().to_vec2::<f32>()?, hard.bank().to_vec2::<f32>()?);
    let a =
        soft.anomaly_maps(std::slice::from_ref(&test), (6, 6))?.flatten_all()?.to_vec1::<f32>()?;
    let b =
        hard.anomaly_maps(std::slice::from_ref(&test), (6, 6))?.flatten_all()?.to_vec1::<f32>()?;
    assert!(a.iter().zip(&b).all(|(x, y)| x >= y), "weights >= 1 cannot lower a score");
    assert!(a.iter().zip(&b).any(|(x, y)| x > y));
    Ok(())
}

#[test]
fn coreset_and_seed_are_deterministic() -> Result<()> {
    let (train, test) = contaminated();
    let cfg = SoftPatchConfig { coreset_fraction: 0.2, ..config(OutlierScore::Lof { k: 3 }) };
    let a = cfg.fit_rows(std::slice::from_ref(&train))?;
    let b = cfg.fit_rows(std::slice::from_ref(&train))?;
    assert_eq!(a.bank_len(), ((13 * 36 - a.n_dropped()) as f64 * 0.2).floor() as usize);
    let ma =
        a.anomaly_maps(std::slice::from_ref(&test), (6, 6))?.flatten_all()?.to_vec1::<f32>()?;
    let mb =
        b.anomaly_maps(std::slice::from_ref(&test), (6, 6))?.flatten_all()?.to_vec1::<f32>()?;
    assert_eq!(ma, mb);
    Ok(())
}

#[test]
fn degenerate_training_sets() -> Result<()> {
    let one = tensor(normal_features(1, C, GRID, 13), 1);
    let cfg = config(OutlierScore::Lof { k: 6 });
    assert!(matches!(cfg.fit_rows(&[one]), Err(Error::TooFewImages { needed: 2, got: 1, .. })));
    // Two images: k is capped at 1.
    let two = tensor(normal_features(2, C, GRID, 14), 2);
    let model = cfg.fit_rows(&[two])?;
    let s =
        model.score(&[tensor(normal_features(1, C, GRID, 15), 1)], (6, 6), ImageScoreRule::Max)?;
    assert!(s.image_scores[0].is_finite());
    // Constant images: every distance is 0, LOF is 1 everywhere, nothing is above the quantile.
    let constant = Tensor::full(0.5f32, (4, C, GRID.0, GRID.1), &Device::Cpu)?;
    let model = cfg.fit_rows(std::slice::from_ref(&constant))?;
    assert_eq!(model.n_dropped(), 0);
    let s = model.score(&[constant.narrow(0, 0, 1)?], (6, 6), ImageScoreRule::Max)?;
    assert!(s.image_scores[0].is_finite() && s.image_scores[0] < 1e-2, "{:?}", s.image_scores);
    Ok(())
}

#[test]
fn config_is_checked() {
    let bad = |c: SoftPatchConfig, field: &str| {
        assert!(
            matches!(c.validate(), Err(Error::Config { field: f, .. }) if f == field),
            "{field}"
        );
    };
    bad(SoftPatchConfig { noise_fraction: 1.0, ..SoftPatchConfig::jiang2022() }, "noise_fraction");
    bad(
        SoftPatchConfig {
            outlier_score: OutlierScore::Lof { k: 0 },
            ..SoftPatchConfig::jiang2022()
        },
        "outlier_score.k",
    );
    bad(
        SoftPatchConfig { coreset_fraction: 0.0, ..SoftPatchConfig::jiang2022() },
        "coreset_fraction",
    );
    for c in [SoftPatchConfig::jiang2022(), SoftPatchConfig::jiang2022_nearest()] {
        c.validate().unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<SoftPatchConfig>(&json).unwrap(), c);
    }
}

#[test]
fn models_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<SoftPatch>();
    check::<SoftPatchConfig>();
}
