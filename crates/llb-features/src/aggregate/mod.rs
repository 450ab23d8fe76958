//! Patch aggregation of multi-layer CNN feature maps (PatchCore).

mod patchcore;

pub use patchcore::{LocalPooling, PatchAggregator, PatchAggregatorConfig};

#[cfg(test)]
mod tests;
