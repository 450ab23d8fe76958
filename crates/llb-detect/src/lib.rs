//! `llb-detect`: anomaly detectors (PatchCore, SoftPatch, Dinomaly) on llb-features.
//!
//! Work in progress: the public API is being built.

mod detector;
mod dinomaly;
mod error;

pub use detector::{Detector, Fit, ImageScoreRule};
pub use dinomaly::{
    BlurPadding, DinomalyConfig, DinomalyModel, DinomalyTrainer, FeatureShape, HardMiningConfig, LrSchedule,
    MapConfig, OptimizerConfig, WeightInit,
};
pub use error::{Error, Result};
