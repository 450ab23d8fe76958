//! SoftPatch (Jiang et al., NeurIPS 2022): PatchCore with patch-level noise discrimination
//! before the coreset and soft re-weighting of test distances.

mod algorithm;
mod config;
mod outlier;
#[cfg(test)]
mod tests;

pub use algorithm::SoftPatch;
pub use config::{OutlierScore, SoftPatchConfig};
