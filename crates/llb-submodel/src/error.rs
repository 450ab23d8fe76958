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
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
