//! PatchCore tests on synthetic features: fitting, planted defects and degenerate inputs.

use super::test_data::{normal_features, plant};
use super::*;
use crate::order::FitRows;
use crate::{Detector, Error, ImageScoreRule, Result};
use candle_core::{Device, Tensor};

fn tensor(values: Vec<f32>, n: usize, c: usize, (h, w): (usize, usize)) -> Tensor {
    Tensor::from_vec(values, (n, c, h, w), &Device::Cpu).unwrap()
}

fn small_config() -> PatchCoreConfig {
    PatchCoreConfig {
        coreset_fraction: 0.25,
        projection_dim: Some(4),
        blur_sigma_px: 1.0,
        ..PatchCoreConfig::roth2022()
    }
}

const GRID: (usize, usize) = (6, 6);
const C: usize = 8;

#[test]
fn fit_builds_a_coreset_of_the_requested_size() -> Result<()> {
    let train = tensor(normal_features(10, C, GRID, 1), 10, C, GRID);
    let model = small_config().fit_rows(std::slice::from_ref(&train))?;
    assert_eq!(model.bank_len(), 90);
    assert_eq!(model.grid(), GRID);
    assert_eq!(model.bank().dims(), &[90, C]);
    let full = PatchCoreConfig { coreset_fraction: 1.0, ..small_config() }.fit_rows(&[train])?;
    assert_eq!(full.bank_len(), 360);
    Ok(())
}

#[test]
fn planted_defect_scores_higher_and_peaks_at_its_location() -> Result<()> {
    let train = tensor(normal_features(12, C, GRID, 2), 12, C, GRID);
    let model = small_config().fit_rows(&[train])?;
    let mut test = normal_features(4, C, GRID, 3);
    plant(&mut test, C, GRID, 2, (1, 4), 5.0);
    let test = tensor(test, 4, C, GRID);
    let scores = model.score(&[test], (24, 24), ImageScoreRule::Max)?;
    assert_eq!(scores.maps.dims(), &[4, 24, 24]);
    let s = &scores.image_scores;
    for clean in [0, 1, 3] {
        assert!(s[2] > 3.0 * s[clean], "defect {} vs clean {}", s[2], s[clean]);
    }
    // The map's peak lies in the upsampled cell of patch (1, 4): rows 4..8, columns 16..20.
    let map = scores.maps.get(2)?.flatten_all()?.to_vec1::<f32>()?;
    let peak =
        map.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0);
    let (py, px) = (peak / 24, peak % 24);
    assert!((4..8).contains(&py) && (16..20).contains(&px), "peak at ({py}, {px})");
    Ok(())
}

#[test]
fn reweighting_keeps_the_defect_ranking_and_stays_finite() -> Result<()> {
    let train = tensor(normal_features(12, C, GRID, 4), 12, C, GRID);
    let config = PatchCoreConfig { reweight_neighbours: Some(9), ..small_config() };
    let model = config.fit_rows(&[train])?;
    let mut test = normal_features(3, C, GRID, 5);
    plant(&mut test, C, GRID, 0, (3, 3), 5.0);
    let plain = PatchCore::from_parts(small_config(), model.bank().clone(), GRID, None)?;
    let test = [tensor(test, 3, C, GRID)];
    let weighted = model.score(&test, (12, 12), ImageScoreRule::Max)?.image_scores;
    let unweighted = plain.score(&test, (12, 12), ImageScoreRule::Max)?.image_scores;
    for (w, u) in weighted.iter().zip(&unweighted) {
        assert!(w.is_finite() && *w >= 0.0 && w <= u, "weighted {w} vs plain {u}");
    }
    assert!(weighted[0] > weighted[1] && weighted[0] > weighted[2], "{weighted:?}");
    Ok(())
}

#[test]
fn scoring_is_deterministic_and_seeded() -> Result<()> {
    let train = [tensor(normal_features(8, C, GRID, 6), 8, C, GRID)];
    let test = [tensor(normal_features(2, C, GRID, 7), 2, C, GRID)];
    let a = small_config().fit_rows(&train)?;
    let b = small_config().fit_rows(&train)?;
    assert_eq!(a.bank().to_vec2::<f32>()?, b.bank().to_vec2::<f32>()?);
    let maps_a = a.anomaly_maps(&test, (12, 12))?.flatten_all()?.to_vec1::<f32>()?;
    let maps_b = b.anomaly_maps(&test, (12, 12))?.flatten_all()?.to_vec1::<f32>()?;
    assert_eq!(maps_a, maps_b);
    let c = PatchCoreConfig { seed: 99, ..small_config() }.fit_rows(&train)?;
    assert_ne!(a.bank().to_vec2::<f32>()?, c.bank().to_vec2::<f32>()?);
    Ok(())
}

#[test]
fn constant_images_give_finite_near_zero_maps() -> Result<()> {
    let train = Tensor::full(0.5f32, (3, C, 4, 4), &Device::Cpu)?;
    let model = small_config().fit_rows(&[train])?;
    // Every patch coincides, so the coreset stops after one patch.
    assert_eq!(model.bank_len(), 1);
    let test = Tensor::full(0.5f32, (1, C, 4, 4), &Device::Cpu)?;
    let scores = model.score(&[test], (8, 8), ImageScoreRule::TopMean { fraction: 0.01 })?;
    let map = scores.maps.flatten_all()?.to_vec1::<f32>()?;
    assert!(map.iter().all(|v| v.is_finite() && v.abs() < 1e-2), "{map:?}");
    assert!(scores.image_scores[0].is_finite());
    let anomalib = PatchCoreConfig { reweight_neighbours: Some(9), ..small_config() };
    let model = anomalib.fit_rows(&[Tensor::full(0.5f32, (3, C, 4, 4), &Device::Cpu)?])?;
    let s = model.score(
        &[Tensor::full(0.5f32, (1, C, 4, 4), &Device::Cpu)?],
        (8, 8),
        ImageScoreRule::Max,
    )?;
    assert!(s.image_scores[0].is_finite());
    Ok(())
}

#[test]
fn one_training_image_is_enough() -> Result<()> {
    let train = tensor(normal_features(1, C, GRID, 8), 1, C, GRID);
    let model = small_config().fit_rows(&[train])?;
    assert_eq!(model.bank_len(), 9);
    let mut test = normal_features(2, C, GRID, 9);
    plant(&mut test, C, GRID, 1, (0, 0), 5.0);
    let scores = model.score(&[tensor(test, 2, C, GRID)], (6, 6), ImageScoreRule::Max)?;
    assert!(scores.image_scores.iter().all(|s| s.is_finite()));
    assert!(scores.image_scores[1] > scores.image_scores[0]);
    Ok(())
}

#[test]
fn mismatched_or_bad_inputs_are_errors() -> Result<()> {
    let train = tensor(normal_features(4, C, GRID, 10), 4, C, GRID);
    let model = small_config().fit_rows(&[train])?;
    let other_grid = Tensor::zeros((1, C, 5, 6), candle_core::DType::F32, &Device::Cpu)?;
    assert!(matches!(model.anomaly_maps(&[other_grid], (6, 6)), Err(Error::Shape { .. })));
    let other_channels = Tensor::zeros((1, C + 1, 6, 6), candle_core::DType::F32, &Device::Cpu)?;
    assert!(matches!(model.anomaly_maps(&[other_channels], (6, 6)), Err(Error::Shape { .. })));
    let ok = Tensor::zeros((1, C, 6, 6), candle_core::DType::F32, &Device::Cpu)?;
    assert!(matches!(
        model.anomaly_maps(std::slice::from_ref(&ok), (0, 6)),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(small_config().fit_rows(&[]), Err(Error::Empty { .. })));
    let bad = PatchCoreConfig { coreset_fraction: 2.0, ..small_config() };
    assert!(matches!(bad.fit_rows(&[ok]), Err(Error::Config { field: "coreset_fraction", .. })));
    Ok(())
}

#[test]
fn models_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<PatchCore>();
    check::<PatchCoreConfig>();
    check::<crate::Error>();
}

#[test]
fn image_scores_follow_the_rule_and_reject_nan() -> Result<()> {
    let maps = Tensor::new(&[[[1.0f32, 4.0], [2.0, 3.0]], [[0.0, 0.0], [0.0, 8.0]]], &Device::Cpu)?;
    assert_eq!(crate::image_scores(&maps, ImageScoreRule::Max)?, vec![4.0, 8.0]);
    assert_eq!(
        crate::image_scores(&maps, ImageScoreRule::TopMean { fraction: 0.5 })?,
        vec![3.5, 4.0]
    );
    let nan = Tensor::new(&[[[1.0f32, f32::NAN]]], &Device::Cpu)?;
    assert!(matches!(
        crate::image_scores(&nan, ImageScoreRule::Max),
        Err(Error::NonFiniteMap { index: 0, pixel: 1, .. })
    ));
    let empty = Tensor::zeros((1, 0, 3), candle_core::DType::F32, &Device::Cpu)?;
    assert!(matches!(crate::image_scores(&empty, ImageScoreRule::Max), Err(Error::Empty { .. })));
    Ok(())
}

/// The devices every device test runs on: the CPU, and CUDA device 0 with the `cuda` feature.
fn devices() -> Result<Vec<Device>> {
    #[allow(unused_mut, reason = "only the cuda feature adds a device")]
    let mut devices = vec![Device::Cpu];
    #[cfg(feature = "cuda")]
    devices.push(Device::new_cuda(0)?);
    Ok(devices)
}

#[test]
fn every_device_agrees_with_the_cpu() -> Result<()> {
    let train_values = normal_features(8, C, GRID, 20);
    let mut test_values = normal_features(2, C, GRID, 21);
    plant(&mut test_values, C, GRID, 1, (2, 3), 5.0);
    let softpatch = crate::SoftPatchConfig {
        outlier_score: crate::OutlierScore::Lof { k: 3 },
        projection_dim: Some(4),
        blur_sigma_px: 1.0,
        ..crate::SoftPatchConfig::jiang2022()
    };
    let mut reference: Option<(Vec<f32>, Vec<f32>)> = None;
    for device in devices()? {
        let train = [Tensor::from_vec(train_values.clone(), (8, C, GRID.0, GRID.1), &device)?];
        let test = [Tensor::from_vec(test_values.clone(), (2, C, GRID.0, GRID.1), &device)?];
        let pc = small_config().fit_rows(&train)?.anomaly_maps(&test, (12, 12))?;
        let sp = softpatch.fit_rows(&train)?.anomaly_maps(&test, (12, 12))?;
        let pc = pc.flatten_all()?.to_vec1::<f32>()?;
        let sp = sp.flatten_all()?.to_vec1::<f32>()?;
        assert!(pc.iter().chain(&sp).all(|v| v.is_finite()), "{device:?}");
        match &reference {
            None => reference = Some((pc, sp)),
            Some((pc_cpu, sp_cpu)) => {
                // Coreset picks may differ in rare near-ties, so compare the maps' maxima.
                let max = |v: &[f32]| v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                assert!(
                    (max(&pc) - max(pc_cpu)).abs() < 1e-2 * max(pc_cpu),
                    "{device:?} patchcore"
                );
                assert!(
                    (max(&sp) - max(sp_cpu)).abs() < 1e-2 * max(sp_cpu),
                    "{device:?} softpatch"
                );
            }
        }
    }
    Ok(())
}
