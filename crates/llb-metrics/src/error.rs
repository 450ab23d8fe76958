//! The crate's error type: every degenerate or malformed input is one of these, never a panic
//! or a NaN metric.

/// Why a metric could not be computed.
///
/// Messages are lower-case and name the offending input (`what`), the image index for pixel
/// evaluators, and the value or shape that was wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No scores at all.
    #[error("{what}: no scores given")]
    Empty {
        /// Which input was empty (e.g. `image scores`, `anomaly map 3`).
        what: String,
    },
    /// Two inputs that must have one entry per item differ in length.
    #[error("{what}: expected {expected} entries, got {got}")]
    LengthMismatch {
        /// Which input has the wrong length.
        what: String,
        /// The length implied by the other inputs.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// An anomaly map or its mask does not hold `width × height` values.
    #[error("image {image}: {what} has {got} values, expected {width}×{height} = {}", width * height)]
    ShapeMismatch {
        /// Index of the image in the order it was added (0-based).
        image: usize,
        /// `anomaly map` or `mask`.
        what: &'static str,
        /// Declared width in pixels.
        width: usize,
        /// Declared height in pixels.
        height: usize,
        /// Number of values given.
        got: usize,
    },
    /// A score is NaN or infinite.
    #[error("{what}: score at index {index} is {value}, expected a finite number")]
    NonFinite {
        /// Which input holds the bad score.
        what: String,
        /// Position of the score in that input.
        index: usize,
        /// The offending value.
        value: f32,
    },
    /// Every item is normal, so recall (and AUROC, AP, F1max, AUPRO) is undefined.
    #[error("{what}: no anomalous items among {n_items}; the metrics are undefined")]
    NoPositives {
        /// Which evaluation (`image scores`, `pixels`).
        what: String,
        /// How many items there were.
        n_items: u64,
    },
    /// Every item is anomalous, so the false-positive rate is undefined.
    #[error("{what}: no normal items among {n_items}; the metrics are undefined")]
    NoNegatives {
        /// Which evaluation (`image scores`, `pixels`).
        what: String,
        /// How many items there were.
        n_items: u64,
    },
    /// The histogram settings of the streaming evaluator are unusable.
    #[error(
        "binned evaluator: need n_bins >= 1 and finite min_score < max_score, got n_bins = {n_bins}, min_score = {min_score}, max_score = {max_score}"
    )]
    InvalidBins {
        /// Requested number of bins.
        n_bins: usize,
        /// Lower end of the score range.
        min_score: f64,
        /// Upper end of the score range.
        max_score: f64,
    },
}

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks that every score is finite, naming the input and position of the first bad one.
pub(crate) fn check_finite(what: impl FnOnce() -> String, scores: &[f32]) -> Result<()> {
    match scores.iter().position(|s| !s.is_finite()) {
        None => Ok(()),
        Some(index) => Err(Error::NonFinite { what: what(), index, value: scores[index] }),
    }
}
