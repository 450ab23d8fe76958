//! `llb-detect`: anomaly detectors (PatchCore, SoftPatch, Dinomaly) on cached encoder features.
//!
//! Place in the pipeline: input is cached encoder features (`llb-features`), one `[N, C, h, w]`
//! f32 tensor per encoder layer; output is anomaly maps `[N, H, W]` and image scores (higher =
//! more anomalous). The same detectors are the stage-1 sub-models (`llb-submodel`) and the
//! stage-2 final model.
//!
//! - [`Fit`] (a configuration) and [`Detector`] (a fitted model) are the interface;
//!   [`Detector::score`] adds image scores by an [`ImageScoreRule`].
//! - [`PatchCoreConfig`] / [`PatchCore`]: memory bank of training patches, greedy k-center
//!   coreset on a seeded random projection, blocked exact nearest-neighbour search.
//! - [`SoftPatchConfig`] / [`SoftPatch`]: PatchCore with patch-level denoising before the
//!   coreset ([`OutlierScore`]: kNN distance or LOF) and soft re-weighting of test distances.
//! - [`DinomalyConfig`] / [`DinomalyModel`]: Dinomaly's noisy bottleneck and linear-attention
//!   decoder trained to reconstruct the frozen encoder's features (hard-mined cosine loss,
//!   StableAdamW); [`DinomalyTrainer`] trains step by step with bit-identical resume from
//!   checkpoints. Maps: per-group `1 − cos` summed, bilinear upsampling with
//!   `align_corners = true`, Gaussian blur with configurable radius and padding.
//! - [`BankProvenance`]: the training image and grid cell behind each memory-bank patch, saved
//!   with the model; [`PatchCore::nearest_training_patches`] names the training patch a test
//!   image's most anomalous patch was compared with.
//! - [`ModelCard`] / [`SavedModel`]: save and load (safetensors + JSON with encoder, weights
//!   checksum, preprocessing and threshold); [`load_detector`] loads any kind.
//!
//! Invariants:
//! - Every random choice (projection, coreset start) comes from the configuration's `seed`.
//! - Scoring is deterministic, and a loaded model scores bit-identically to the saved one.
//! - Bad input (empty, misshapen, non-finite features; invalid configs; damaged files) is a typed
//!   [`Error`], never a panic or a NaN score.
//! - Memory-bank maps: patch scores `[N, h, w]`, bilinear upsampling to `(H, W)`
//!   (`align_corners = false`), Gaussian blur σ = `blur_sigma_px` with radius `round(4σ)` and
//!   reflect padding (scipy's `mode="reflect"`), applied as one separable linear operator.
//!
//! Differences from the reference PatchCore: the image score is the [`ImageScoreRule`] applied
//! to the upsampled, blurred map (the reference takes the maximum of the raw patch grid); with
//! `reweight_neighbours = Some(b)` that score is multiplied by the paper's weight
//! `1 − softmax(d)₀` computed at the most anomalous raw patch, over the distances from that
//! patch to its nearest bank patch and that bank patch's `b − 1` nearest bank neighbours.

mod detector;
mod dinomaly;
mod error;
mod map;
mod order;
#[cfg(test)]
mod order_tests;
mod patchcore;
mod patches;
mod saved;
mod softpatch;

pub use detector::{Detector, Fit, ImageScoreRule, Scores, image_scores};
pub use dinomaly::{
    BlurPadding, DinomalyConfig, DinomalyModel, DinomalyTrainer, FeatureShape, HardMiningConfig,
    LrSchedule, MapConfig, OptimizerConfig, TrainingLength, WeightInit,
};
pub use error::{Error, Result};
pub use patchcore::{
    BankProvenance, BankSampling, NearestTrainingPatch, PROVENANCE_FILE, PatchCore,
    PatchCoreConfig, PatchScore, PatchSource,
};
pub use saved::{
    DetectorState, FORMAT_VERSION, MODEL_CARD_FILE, MODEL_TENSORS_FILE, ModelCard, SavedModel,
    load_detector, model_files,
};
pub use softpatch::{OutlierScore, SoftPatch, SoftPatchConfig};
