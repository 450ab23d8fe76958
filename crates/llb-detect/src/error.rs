//! The error type of `llb-detect`.

use std::path::PathBuf;

/// Everything that can go wrong while fitting, scoring, saving or loading a detector.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A failure of the tensor backend.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A failure reading or writing a file.
    #[error("io error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON model card that cannot be read or written.
    #[error("bad model card {path}: {source}")]
    Json {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// No training features at all (no layers, or zero images).
    #[error("no training data: {what}")]
    Empty {
        /// What was empty.
        what: String,
    },
    /// Too few training images for a step that compares images with each other.
    #[error("{what} needs at least {needed} training images, got {got}")]
    TooFewImages {
        /// The step, e.g. `softpatch outlier scores`.
        what: &'static str,
        /// The minimum number of images.
        needed: usize,
        /// The number given.
        got: usize,
    },
    /// A tensor whose shape is not the expected one.
    #[error("shape mismatch in {what}: expected {expected}, got {got:?}")]
    Shape {
        /// Which tensor.
        what: String,
        /// The expected shape, in words.
        expected: String,
        /// The actual dimensions.
        got: Vec<usize>,
    },
    /// A configuration field with an invalid value.
    #[error("invalid config field {field} = {value}: {reason}")]
    Config {
        /// The field name.
        field: &'static str,
        /// The offending value, printed.
        value: String,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// Features or scores containing NaN or infinity.
    #[error("non-finite values in {what}")]
    NonFinite {
        /// Which tensor.
        what: String,
    },
    /// A sample id given twice in one training set.
    #[error("training sample {id} is given twice")]
    DuplicateId {
        /// The repeated id.
        id: llb_types::SampleId,
    },
    /// An anomaly map holding NaN or ±∞ (either NaN sign), by its index in the scored batch.
    #[error("non-finite anomaly map {index} of the batch: value {value} at pixel {pixel}")]
    NonFiniteMap {
        /// Index of the map in the batch (the caller knows which sample that is).
        index: usize,
        /// The first non-finite value.
        value: f32,
        /// Its flat position in the map.
        pixel: usize,
    },
    /// A saved model whose files do not match each other or this crate.
    #[error("bad saved model {path}: {reason}")]
    BadModel {
        /// The file involved.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The result type of `llb-detect`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
