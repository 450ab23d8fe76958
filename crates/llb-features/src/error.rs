//! The crate's error type: every failure names the file, tensor key, field or value involved.

use std::path::PathBuf;

/// Errors of `llb-features`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A failure of the tensor backend.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A safetensors file could not be parsed or written.
    #[error("{path}: invalid safetensors file: {message}")]
    Safetensors {
        /// The file involved.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// A weight file lacks a tensor the network needs.
    #[error("{path}: missing tensor `{key}`")]
    MissingTensor {
        /// The weight file.
        path: PathBuf,
        /// The checkpoint key that was looked up.
        key: String,
    },

    /// A tensor has another shape than the network expects.
    #[error("{path}: tensor `{key}` has shape {got:?}, expected {expected:?}")]
    TensorShape {
        /// The weight file.
        path: PathBuf,
        /// The checkpoint key.
        key: String,
        /// The shape the network expects.
        expected: Vec<usize>,
        /// The shape found in the file.
        got: Vec<usize>,
    },

    /// An input tensor has a shape the encoder cannot take.
    #[error("bad input shape {got:?}: {expected}")]
    InputShape {
        /// What the encoder wants, in words.
        expected: String,
        /// The shape it was given.
        got: Vec<usize>,
    },

    /// A configuration field holds an invalid value.
    #[error("invalid config field `{field}` = {value}: {reason}")]
    Config {
        /// The field name.
        field: &'static str,
        /// The offending value, formatted.
        value: String,
        /// Why it is rejected.
        reason: String,
    },

    /// An ONNX file could not be decoded or does not hold the expected network.
    #[error("{path}: invalid onnx model: {message}")]
    Onnx {
        /// The ONNX file.
        path: PathBuf,
        /// What went wrong (with the byte offset when decoding failed).
        message: String,
    },

    /// A conversion produced another number of parameters than the architecture has.
    #[error("{path}: converted {got} parameters, expected {expected}")]
    ParameterCount {
        /// The source file.
        path: PathBuf,
        /// The architecture's parameter count.
        expected: usize,
        /// The count found.
        got: usize,
    },

    /// A PyTorch pickle checkpoint is truncated, malformed or uses an unsupported construct.
    #[error("{path}: invalid pytorch checkpoint at byte offset {offset}: {message}")]
    Pickle {
        /// The checkpoint file.
        path: PathBuf,
        /// The byte offset where decoding failed.
        offset: u64,
        /// What went wrong.
        message: String,
    },

    /// A feature-cache entry is unreadable or does not match its key.
    #[error("feature cache entry {path}: {message}")]
    CacheEntry {
        /// The entry file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

impl Error {
    /// Wraps an IO error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
