//! `llb-detect`: anomaly detectors (PatchCore, SoftPatch, Dinomaly) on llb-features.
//!
//! Work in progress: the public API is being built.

mod detector;
mod dinomaly;
mod error;
mod map;
mod patchcore;
mod patches;
mod saved;
mod softpatch;

pub use detector::{Detector, Fit, ImageScoreRule, Scores, image_scores};
pub use dinomaly::{
    BlurPadding, DinomalyConfig, DinomalyModel, DinomalyTrainer, FeatureShape, HardMiningConfig,
    LrSchedule, MapConfig, OptimizerConfig, WeightInit,
};
pub use error::{Error, Result};
pub use patchcore::{PatchCore, PatchCoreConfig};
pub use saved::{
    DetectorState, FORMAT_VERSION, MODEL_CARD_FILE, MODEL_TENSORS_FILE, ModelCard, SavedModel,
    load_detector, model_files,
};
pub use softpatch::{OutlierScore, SoftPatch, SoftPatchConfig};
