//! The crate's error type: every variant names the file, field or sample it is about.

use llb_types::SampleId;
use std::path::PathBuf;

/// Errors of `llb-data`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder could not be read or written.
    #[error("io error on {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An image file could not be decoded (unreadable, truncated, unknown format).
    #[error("cannot decode image {path}: {source}")]
    Decode {
        /// The image file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
    /// An image could not be encoded or written.
    #[error("cannot write image {path}: {source}")]
    Encode {
        /// The image file being written.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: image::ImageError,
    },
    /// A folder that must hold images holds none.
    #[error("no images found in {path}")]
    Empty {
        /// The folder searched.
        path: PathBuf,
    },
    /// A split file or layout refers to a file that does not exist.
    #[error("missing file {path} (referenced by {referenced_by})")]
    MissingFile {
        /// The missing file.
        path: PathBuf,
        /// Where the reference came from (a split file and entry, or a layout rule).
        referenced_by: String,
    },
    /// Two samples of one data set got the same id.
    #[error("duplicate sample id {id} (from {origin})")]
    DuplicateId {
        /// The repeated id.
        id: SampleId,
        /// The split file or folder the second occurrence came from.
        origin: PathBuf,
    },
    /// A mask does not have the size of its image.
    #[error(
        "mask {mask} is {mask_width}x{mask_height} px but its image {image} is {image_width}x{image_height} px"
    )]
    MaskSizeMismatch {
        /// The mask file.
        mask: PathBuf,
        /// The image file.
        image: PathBuf,
        /// Mask width in pixels.
        mask_width: u32,
        /// Mask height in pixels.
        mask_height: u32,
        /// Image width in pixels.
        image_width: u32,
        /// Image height in pixels.
        image_height: u32,
    },
    /// A split file (csv, json, idx) is malformed.
    #[error("malformed {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line, entry or field.
        message: String,
    },
    /// A config field has a value outside its domain.
    #[error("invalid config field `{field}` = {value}: {reason}")]
    Config {
        /// The field name as written in the config.
        field: &'static str,
        /// The offending value.
        value: String,
        /// The accepted domain.
        reason: String,
    },
    /// An image is too small for what is asked of it.
    #[error("image {path} is {width}x{height} px, too small: {reason}")]
    TooSmall {
        /// The image (a file, or the name of an in-memory texture).
        path: PathBuf,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Why the size does not suffice.
        reason: String,
    },
    /// A sample cannot be used the way it was asked (e.g. contaminating an already noisy set).
    #[error("sample {id}: {reason}")]
    InvalidSample {
        /// The sample.
        id: SampleId,
        /// What is wrong with it.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an io error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    /// Wraps a config violation.
    pub(crate) fn config(
        field: &'static str,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Self {
        Self::Config { field, value: value.to_string(), reason: reason.into() }
    }

    /// Wraps a malformed-file message.
    pub(crate) fn parse(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Parse { path: path.into(), message: message.into() }
    }
}
