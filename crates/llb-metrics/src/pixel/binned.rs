//! The streaming pixel evaluator: fixed histograms between a given minimum and maximum score,
//! filled image by image, as Real-IAD's evaluator does.

use super::evaluator::{AUPRO_FPR_LIMIT, PixelEvaluator, PixelMetrics, check_image, no_images};
use crate::curve::CurveAccumulator;
use crate::error::{Error, Result};
use crate::image::check_totals;
use crate::regions::Regions;
use serde::{Deserialize, Serialize};

/// Histogram settings of a [`BinnedPixelEvaluator`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinnedConfig {
    /// Number of equal-width score bins between `min_score` and `max_score`.
    pub n_bins: usize,
    /// Lower end of the first bin; lower scores are counted in the first bin.
    pub min_score: f64,
    /// Upper end of the last bin; higher scores are counted in the last bin.
    pub max_score: f64,
}

/// Histogram-based pixel metrics with memory independent of the number of images and pixels.
///
/// Each pixel is counted in one of `n_bins` equal-width bins (scores outside
/// `[min_score, max_score]` in the end bins), in three histograms: normal pixels, anomalous
/// pixels, and anomalous pixels weighted by `1 / size` of their ground-truth region. A region
/// never crosses images, so its size is known when its image is added and one weighted
/// histogram gives PRO exactly as per-region histograms would: memory is `24 × n_bins` bytes
/// plus one image of scratch space, whatever the number of images *and* of regions.
///
/// # Accuracy
/// The binned curves pass through a subset of the exact curves' points (binning is monotone, so
/// every bin edge is an exact threshold), so the binned metrics equal the exact metrics of
/// scores quantised to their bins. Between two bin edges the exact curve stays inside the box
/// the two points span, which bounds the error; [`max_error`](Self::max_error) returns that
/// bound computed from the histograms: `Σ ΔFPR·ΔTPR / 2` for AUROC, `Σ ΔR·(P_max − P_min)`
/// for AP, the largest F1 any point inside a box can reach for F1max (the exact F1max is never
/// below the binned one), and `Σ ΔFPR·ΔPRO / 0.3` over FPR ≤ 0.3 for AUPRO. The bound shrinks
/// as bins get finer and is 0 when no bin mixes scores of both classes that differ.
#[derive(Debug, Clone)]
pub struct BinnedPixelEvaluator {
    config: BinnedConfig,
    scale: f64,
    negatives: Vec<u64>,
    positives: Vec<u64>,
    pro_weights: Vec<f64>,
    n_regions: u64,
    n_images: usize,
    regions: Regions,
}

impl BinnedPixelEvaluator {
    /// An evaluator with empty histograms.
    ///
    /// # Errors
    /// [`Error::InvalidBins`] unless `n_bins ≥ 1` and `min_score < max_score`, both finite, with a
    /// finite difference.
    pub fn new(config: &BinnedConfig) -> Result<Self> {
        let BinnedConfig { n_bins, min_score, max_score } = *config;
        let valid =
            n_bins >= 1 && min_score.is_finite() && max_score.is_finite() && min_score < max_score;
        // The width must be finite and positive too: `-f64::MAX..f64::MAX` overflows to infinity.
        let scale = n_bins as f64 / (max_score - min_score);
        if !valid || !scale.is_finite() || scale <= 0.0 {
            return Err(Error::InvalidBins { n_bins, min_score, max_score });
        }
        Ok(Self {
            config: *config,
            scale,
            negatives: vec![0; n_bins],
            positives: vec![0; n_bins],
            pro_weights: vec![0.0; n_bins],
            n_regions: 0,
            n_images: 0,
            regions: Regions::default(),
        })
    }

    /// The settings this evaluator was built with.
    pub fn config(&self) -> &BinnedConfig {
        &self.config
    }

    /// For each metric, the largest possible distance between the value
    /// [`finish`](PixelEvaluator::finish) returns and the exact (sort-based) value on the same
    /// images; see the type's "Accuracy" section.
    ///
    /// # Errors
    /// As [`finish`](PixelEvaluator::finish).
    pub fn max_error(&self) -> Result<PixelMetrics> {
        Ok(PixelMetrics::from_values(self.walk()?.slack()))
    }

    /// The bin of a finite score: monotone non-decreasing in the score.
    fn bin(&self, score: f32) -> usize {
        let position = ((f64::from(score) - self.config.min_score) * self.scale).floor();
        // `as` saturates, so negative positions land in bin 0.
        (position as usize).min(self.config.n_bins - 1)
    }

    fn walk(&self) -> Result<CurveAccumulator> {
        if self.n_images == 0 {
            return Err(no_images());
        }
        let totals = check_totals(
            "pixels",
            self.positives.iter().sum(),
            self.negatives.iter().sum(),
            self.n_regions,
        )?;
        let mut acc = CurveAccumulator::new(totals, AUPRO_FPR_LIMIT);
        let (mut tp, mut fp, mut pro) = (0u64, 0u64, 0.0f64);
        for bin in (0..self.config.n_bins).rev() {
            tp += self.positives[bin];
            fp += self.negatives[bin];
            pro += self.pro_weights[bin];
            acc.push(tp, fp, pro);
        }
        Ok(acc)
    }
}

impl PixelEvaluator for BinnedPixelEvaluator {
    fn add(&mut self, map: &[f32], mask: &[bool], width: usize, height: usize) -> Result<()> {
        check_image(self.n_images, map, mask, width, height)?;
        self.regions.label(mask, width, height);
        for (p, (&score, &anomalous)) in map.iter().zip(mask).enumerate() {
            let bin = self.bin(score);
            if anomalous {
                self.positives[bin] += 1;
                self.pro_weights[bin] += 1.0 / f64::from(self.regions.size_of(p));
            } else {
                self.negatives[bin] += 1;
            }
        }
        self.n_regions += self.regions.sizes.len() as u64;
        self.n_images += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<PixelMetrics> {
        Ok(PixelMetrics::from_values(self.walk()?.finish()))
    }
}
