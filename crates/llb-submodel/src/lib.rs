//! Stage 1 of learning-bias purification (arXiv 2508.07441): cut the training set into K blocks,
//! fit one sub-model per block, and score every training sample with every sub-model.
//!
//! Place in the pipeline: takes precomputed frozen features (from `llb-features`) of the
//! training samples and any [`llb_detect::Fit`] detector; produces a [`llb_purify::ScoreTable`]
//! that `llb-purify` fuses and filters.
//!
//! Main items: [`Partition`] (seeded random or group-aware blocks), [`run_stage1`] with its
//! [`Stage1Config`] and [`TrainingSet`], [`Stage1Output`]; [`run_stage1_observed`] also shows
//! every anomaly map to a [`MapObserver`]. [`fit_submodels`] fits a chosen subset of the K
//! sub-models into a store folder, so K jobs can share stage 1, and [`run_stage1_stored`] with
//! [`Stage1Store::Complete`] assembles their table.
//!
//! Invariants:
//! - ids travel with their scores; the partition does not depend on the input order;
//! - every sample is scored by every sub-model, and each cell records whether the sub-model was
//!   fitted on that sample (in-subset), so "out-of-subset only" fusion is possible;
//! - a resumed run, or one assembled from sub-models fitted in separate jobs, gives the same
//!   table as an uninterrupted one.

mod error;
mod observer;
mod partition;
mod resume;
mod stage1;
#[cfg(test)]
mod tests;

pub use error::{Error, Result};
pub use observer::MapObserver;
pub use partition::{Partition, PartitionConfig, PartitionMode};
pub use stage1::{
    Stage1Config, Stage1Output, Stage1Store, TrainingSet, fit_submodels, run_stage1,
    run_stage1_observed, run_stage1_stored,
};
