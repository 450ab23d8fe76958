//! Pixel-level metrics over a stream of anomaly maps and ground-truth masks.

mod binned;
mod evaluator;
mod exact;
#[cfg(test)]
mod tests;

pub use binned::{BinnedConfig, BinnedPixelEvaluator};
pub use evaluator::{AUPRO_FPR_LIMIT, PixelEvaluator, PixelMetrics};
pub use exact::ExactPixelEvaluator;
