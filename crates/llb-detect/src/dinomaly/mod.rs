//! Dinomaly (Guo et al., CVPR 2025): a noisy-bottleneck, linear-attention decoder that
//! reconstructs frozen DINOv2 features; anomalies are where the reconstruction fails.
//!
//! Input: the encoder's block outputs 2..9 as 8 tensors `[N, C, h, w]` (patch tokens only).
//! Output: anomaly maps `[N, H, W]`, higher = more anomalous.

mod config;
mod cpu;
mod file;
mod fused;
mod loss;
mod model;
mod network;
mod optim;
mod rng;
mod train;

#[cfg(test)]
mod tests;

pub use config::{
    BlurPadding, DinomalyConfig, HardMiningConfig, LrSchedule, MapConfig, OptimizerConfig,
    TrainingLength, WeightInit,
};
pub use model::{DinomalyModel, FeatureShape};
pub use train::DinomalyTrainer;
