//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in stage 1.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The partition cannot be built (bad `k`, duplicate ids).
    #[error("partition: {0}")]
    Partition(String),
    /// Features and ids disagree (count, layers).
    #[error("training features: {0}")]
    Features(String),
    /// Fitting or scoring sub-model `block` failed.
    #[error("sub-model {block}: {source}")]
    Detector {
        /// Index of the sub-model (0-based).
        block: usize,
        /// The detector's error.
        #[source]
        source: llb_detect::Error,
    },
    /// A sub-model produced a non-finite score.
    #[error("sub-model {block} gave a non-finite score ({score}) to sample `{sample}`")]
    NonFinite {
        /// Index of the sub-model (0-based).
        block: usize,
        /// The sample.
        sample: llb_types::SampleId,
        /// The score.
        score: f32,
    },
    /// The score table could not be built.
    #[error(transparent)]
    Purify(#[from] llb_purify::Error),
    /// Reading or writing the resume cache failed.
    #[error("stage-1 cache {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A resume-cache file is not what this run wrote.
    #[error("stage-1 cache {path}: {message}")]
    Cache {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A complete stage-1 store ([`Stage1Store::Complete`](crate::Stage1Store::Complete)) lacks
    /// the scores of one sub-model: it was never fitted into that folder, or for other images or
    /// settings (entries are keyed by content and settings).
    #[error(
        "stage-1 store {}: no scores of sub-model {subset} of {k} for these images and settings \
         (fit that subset into this folder first)",
        dir.display()
    )]
    MissingSubmodel {
        /// The missing sub-model (0-based subset index).
        subset: usize,
        /// Number of sub-models K.
        k: usize,
        /// The store's folder for this training set and settings.
        dir: PathBuf,
    },
    /// A subset index that is not below K.
    #[error("subset {subset} is out of range: stage 1 has K = {k} subsets, numbered 0 to {}", k.saturating_sub(1))]
    SubsetOutOfRange {
        /// The index asked for.
        subset: usize,
        /// Number of sub-models K.
        k: usize,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    /// `true` when the caller's input is at fault (a subset index, a store folder lacking a
    /// sub-model) rather than the machine or the detector.
    pub fn blames_input(&self) -> bool {
        matches!(self, Error::MissingSubmodel { .. } | Error::SubsetOutOfRange { .. })
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
