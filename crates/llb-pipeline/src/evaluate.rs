//! Scoring a test split and computing the metrics of `llb-metrics` on it.

use crate::backbone::FittedDetector;
use crate::error::{Error, Result};
use crate::extract::Extracted;
use candle_core::IndexOp;
use llb_data::{PreprocessConfig, Sample, prepare_mask};
use llb_detect::{Detector, ImageScoreRule};
use llb_metrics::{ExactPixelEvaluator, ImageMetrics, PixelEvaluator, PixelMetrics};
use llb_types::SampleId;

/// Image- and pixel-level metrics of one model on one test split.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// Test images scored.
    pub n_test: usize,
    /// Anomalous test images among them.
    pub n_test_anomalous: usize,
    /// I-AUROC, I-AP, I-F1max.
    pub image: ImageMetrics,
    /// P-AUROC, P-AP, P-F1max, P-AUPRO at [`Evaluation::pixel_resolution_px`]; `None` when no
    /// test image has a mask.
    pub pixel: Option<PixelMetrics>,
    /// Side of the square maps and masks the pixel metrics were computed at.
    pub pixel_resolution_px: usize,
}

/// Scores every image of `features` in batches of 16 and calls `visit(id, image score, map)` per
/// image, in order; `map` is the `[size, size]` anomaly map, row-major.
///
/// # Errors
/// A scoring failure or a non-finite score (naming the sample), or whatever `visit` returns.
pub fn for_each_scored<E: From<Error>>(
    model: &FittedDetector,
    rule: ImageScoreRule,
    features: &Extracted,
    size: usize,
    mut visit: impl FnMut(&SampleId, f32, Vec<f32>) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    for ids in features.ids.chunks(16) {
        let batch = features.subset(ids)?;
        let out = model.score(&batch.layers, (size, size), rule).map_err(|e| {
            let sample = match &e {
                llb_detect::Error::NonFiniteMap { index, .. } => ids.get(*index),
                _ => None,
            };
            match sample {
                Some(id) => Error::during(format!("scoring sample {id}"))(e.into()),
                None => e.into(),
            }
        })?;
        for (i, id) in ids.iter().enumerate() {
            let score = out.image_scores[i];
            if !score.is_finite() {
                return Err(Error::NonFiniteScore { id: id.clone(), score }.into());
            }
            let map: Vec<f32> =
                out.maps.i(i).and_then(|m| m.flatten_all()?.to_vec1()).map_err(Error::from)?;
            visit(id, score, map)?;
        }
    }
    Ok(())
}

/// One anomaly map per test image, in batches, fed to the exact metric evaluators.
///
/// Pixel metrics are computed at `pixel_px` (maps and masks both at that side, the mask cut
/// from the same part of the image as the encoder's input), or at the encoder's input side
/// when `None`, so that models with different input sizes can be compared on one grid.
pub fn evaluate(
    model: &FittedDetector,
    rule: ImageScoreRule,
    test: &Extracted,
    samples: &[Sample],
    preprocess: &PreprocessConfig,
    pixel_px: Option<u32>,
) -> Result<Evaluation> {
    let _span = tracing::info_span!("evaluate", n_samples = test.ids.len()).entered();
    let preprocess = &scaled(preprocess, pixel_px.unwrap_or(preprocess.crop_px));
    let size = preprocess.crop_px as usize;
    let by_id: std::collections::BTreeMap<_, _> = samples.iter().map(|s| (&s.id, s)).collect();
    let has_masks = samples.iter().any(|s| s.mask_path.is_some());
    let mut pixels = ExactPixelEvaluator::new();
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    for_each_scored::<Error>(model, rule, test, size, |id, score, map| {
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
                .map_err(|e| Error::during(format!("pixel metrics of {}", sample.id))(e.into()))?;
        }
        Ok(())
    })?;
    let image = ImageMetrics::exact(&scores, &labels)
        .map_err(|e| Error::during("image metrics")(e.into()))?;
    let pixel = if has_masks {
        Some(pixels.finish().map_err(|e| Error::during("pixel metrics")(e.into()))?)
    } else {
        None
    };
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
