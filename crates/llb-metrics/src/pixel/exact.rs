//! The exact pixel evaluator: keeps one integer key per pixel and sorts them all at the end.

use super::evaluator::{AUPRO_FPR_LIMIT, PixelEvaluator, PixelMetrics, check_image, no_images};
use crate::curve::CurveAccumulator;
use crate::error::Result;
use crate::image::check_totals;
use crate::ranking::{order_key, positive_key, walk_sorted};
use crate::regions::Regions;

/// Sort-based pixel metrics: the reference values, with ties handled as scikit-learn does.
///
/// Memory grows with the number of pixels: 4 bytes per normal pixel and 8 per anomalous pixel
/// (about 260 MB for 1,000 maps of 256×256). [`finish`](PixelEvaluator::finish) sorts them,
/// `O(n log n)`. For large evaluations use [`BinnedPixelEvaluator`](crate::BinnedPixelEvaluator).
#[derive(Debug, Clone, Default)]
pub struct ExactPixelEvaluator {
    negatives: Vec<u32>,
    positives: Vec<u64>,
    n_regions: u64,
    n_images: usize,
    regions: Regions,
}

impl ExactPixelEvaluator {
    /// An evaluator with no images.
    pub fn new() -> Self {
        Self::default()
    }
}

impl PixelEvaluator for ExactPixelEvaluator {
    fn add(&mut self, map: &[f32], mask: &[bool], width: usize, height: usize) -> Result<()> {
        check_image(self.n_images, map, mask, width, height)?;
        self.regions.label(mask, width, height);
        for (p, (&score, &anomalous)) in map.iter().zip(mask).enumerate() {
            if anomalous {
                self.positives.push(positive_key(score, self.regions.size_of(p)));
            } else {
                self.negatives.push(order_key(score));
            }
        }
        self.n_regions += self.regions.sizes.len() as u64;
        self.n_images += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<PixelMetrics> {
        if self.n_images == 0 {
            return Err(no_images());
        }
        let totals = check_totals(
            "pixels",
            self.positives.len() as u64,
            self.negatives.len() as u64,
            self.n_regions,
        )?;
        self.negatives.sort_unstable();
        self.positives.sort_unstable();
        let mut acc = CurveAccumulator::new(totals, AUPRO_FPR_LIMIT);
        walk_sorted(&self.negatives, &self.positives, &mut acc);
        Ok(PixelMetrics::from_values(acc.finish()))
    }
}
