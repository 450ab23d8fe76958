//! Scoring a test split and computing the metrics of `llb-metrics` on it.

use super::backbone::FittedDetector;
use super::extract::Extracted;
use anyhow::Context;
use candle_core::IndexOp;
use llb_data::{PreprocessConfig, Sample, prepare_mask};
use llb_detect::{Detector, ImageScoreRule};
use llb_metrics::{ExactPixelEvaluator, ImageMetrics, PixelEvaluator, PixelMetrics};
use llb_submodel::select_rows;
use llb_types::SampleId;

/// Image- and pixel-level metrics of one model on one test split.
#[derive(Clone, Debug)]
pub(crate) struct Evaluation {
    /// Test images scored.
    pub(crate) n_test: usize,
    /// Anomalous test images among them.
    pub(crate) n_test_anomalous: usize,
    /// I-AUROC, I-AP, I-F1max.
    pub(crate) image: ImageMetrics,
    /// P-AUROC, P-AP, P-F1max, P-AUPRO at [`Evaluation::pixel_resolution_px`]; `None` when no
    /// test image has a mask.
    pub(crate) pixel: Option<PixelMetrics>,
    /// Side of the square maps and masks the pixel metrics were computed at.
    pub(crate) pixel_resolution_px: usize,
}

/// Scores every image of `features` in batches of 16 and calls `visit(id, image score, map)` per
/// image, in order; `map` is the `[size, size]` anomaly map, row-major.
pub(crate) fn for_each_scored(
    model: &FittedDetector,
    rule: ImageScoreRule,
    features: &Extracted,
    size: usize,
    mut visit: impl FnMut(&SampleId, f32, Vec<f32>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for start in (0..features.ids.len()).step_by(16) {
        let rows: Vec<u32> =
            (start..(start + 16).min(features.ids.len())).map(|r| r as u32).collect();
        let out = model.score(&select_rows(&features.layers, &rows)?, (size, size), rule).map_err(
            |e| {
                let sample = match &e {
                    llb_detect::Error::NonFiniteMap { index, .. } => rows.get(*index),
                    _ => None,
                };
                let e = anyhow::Error::new(e);
                match sample {
                    Some(&row) => {
                        e.context(format!("scoring sample {}", features.ids[row as usize]))
                    }
                    None => e,
                }
            },
        )?;
        for (i, &row) in rows.iter().enumerate() {
            anyhow::ensure!(
                out.image_scores[i].is_finite(),
                "sample {}: image score {} is not finite",
                features.ids[row as usize],
                out.image_scores[i]
            );
            let map: Vec<f32> = out.maps.i(i)?.flatten_all()?.to_vec1()?;
            visit(&features.ids[row as usize], out.image_scores[i], map)?;
        }
    }
    Ok(())
}

/// One anomaly map per test image, in batches, fed to the exact metric evaluators.
///
/// Pixel metrics are computed at `pixel_px` (maps and masks both at that side, the mask cut
/// from the same part of the image as the encoder's input), or at the encoder's input side
/// when `None`, so that models with different input sizes can be compared on one grid.
pub(crate) fn evaluate(
    model: &FittedDetector,
    rule: ImageScoreRule,
    test: &Extracted,
    samples: &[Sample],
    preprocess: &PreprocessConfig,
    pixel_px: Option<u32>,
) -> anyhow::Result<Evaluation> {
    let _span = tracing::info_span!("evaluate", n_samples = test.ids.len()).entered();
    let preprocess = &scaled(preprocess, pixel_px.unwrap_or(preprocess.crop_px));
    let size = preprocess.crop_px as usize;
    let by_id: std::collections::BTreeMap<_, _> = samples.iter().map(|s| (&s.id, s)).collect();
    let has_masks = samples.iter().any(|s| s.mask_path.is_some());
    let mut pixels = ExactPixelEvaluator::new();
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    for_each_scored(model, rule, test, size, |id, score, map| {
        let sample = by_id[id];
        scores.push(score);
        labels.push(sample.is_anomalous());
        if has_masks {
            let mask = match prepare_mask(sample, preprocess)? {
                Some(m) => m.data.iter().map(|&v| v != 0).collect(),
                None => vec![false; size * size],
            };
            pixels
                .add(&map, &mask, size, size)
                .with_context(|| format!("pixel metrics of {}", sample.id))?;
        }
        Ok(())
    })?;
    let image = ImageMetrics::exact(&scores, &labels).context("image metrics")?;
    let pixel = if has_masks { Some(pixels.finish().context("pixel metrics")?) } else { None };
    Ok(Evaluation {
        n_test: scores.len(),
        n_test_anomalous: labels.iter().filter(|&&l| l).count(),
        image,
        pixel,
        pixel_resolution_px: size,
    })
}

/// `preprocess` with its geometry scaled so that the crop is `crop_px` (same field of view).
fn scaled(preprocess: &PreprocessConfig, crop_px: u32) -> PreprocessConfig {
    let ratio = f64::from(crop_px) / f64::from(preprocess.crop_px);
    let resize_px = ((f64::from(preprocess.resize_px) * ratio).round() as u32).max(crop_px);
    PreprocessConfig { resize_px, crop_px, ..preprocess.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_geometry_keeps_the_field_of_view() {
        let base = PreprocessConfig::imagenet(256, 224);
        let half = scaled(&base, 112);
        assert_eq!((half.resize_px, half.crop_px, half.mean), (128, 112, base.mean));
        assert_eq!(scaled(&base, 224), base);
        // Resize never drops below the crop, whatever the rounding.
        let odd = scaled(&PreprocessConfig::imagenet(15, 14), 3);
        assert!(odd.resize_px >= odd.crop_px);
    }
}
