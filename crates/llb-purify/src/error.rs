//! The crate's error type: one enum, each variant naming the file, sample, model or rule involved.

use llb_types::SampleId;
use std::path::PathBuf;

/// Everything that can go wrong while building score tables, fusing or selecting.
///
/// Downstream rules may return [`Error::Rule`] for failures of their own.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A score table was built with no sample rows.
    #[error("score table has no samples")]
    NoSamples,
    /// A score table was built with no sub-models.
    #[error("score table has no models (need at least 1)")]
    NoModels,
    /// A row does not have one cell per model.
    #[error("sample `{sample_id}` has {got} score cell(s), expected {expected} (one per model)")]
    RaggedRow {
        /// The sample whose row is short or long.
        sample_id: SampleId,
        /// The number of models.
        expected: usize,
        /// The number of cells in the row.
        got: usize,
    },
    /// The same sample id appears twice.
    #[error("sample id `{sample_id}` appears more than once")]
    DuplicateSampleId {
        /// The repeated id.
        sample_id: SampleId,
    },
    /// The same model name appears twice.
    #[error("model name `{model}` appears more than once")]
    DuplicateModel {
        /// The repeated name.
        model: String,
    },
    /// A model name is empty or contains a line break.
    #[error("model name {model:?} is invalid: {reason}")]
    InvalidModelName {
        /// The offending name.
        model: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A raw score is NaN or infinite.
    #[error("score of sample `{sample_id}` under model `{model}` is not finite: {value}")]
    NonFiniteScore {
        /// The sample.
        sample_id: SampleId,
        /// The sub-model.
        model: String,
        /// The offending value.
        value: f32,
    },
    /// A rule produced, or was given, a NaN or infinite fused score.
    #[error("rule `{rule}` gave sample `{sample_id}` a non-finite fused score: {value}")]
    NonFiniteFused {
        /// The fusion rule, or `input` for scores supplied by the caller.
        rule: String,
        /// The sample.
        sample_id: SampleId,
        /// The offending value.
        value: f32,
    },
    /// Two parallel lists have different lengths.
    #[error("{what}: expected {expected} entries, got {got}")]
    LengthMismatch {
        /// What was being built.
        what: &'static str,
        /// The expected length.
        expected: usize,
        /// The actual length.
        got: usize,
    },
    /// An out-of-subset rule met a sample that every model was trained on.
    #[error(
        "rule `{rule}`: sample `{sample_id}` has no out-of-subset model (every model was trained on it)"
    )]
    NoOutOfSubsetModel {
        /// The fusion rule.
        rule: String,
        /// The sample.
        sample_id: SampleId,
    },
    /// A rule parameter is out of range or of the wrong type.
    #[error("rule `{rule}`: parameter `{parameter}` = {value} is invalid, expected {expected}")]
    InvalidParameter {
        /// The rule's base name.
        rule: String,
        /// The parameter's name.
        parameter: &'static str,
        /// The offending value, as text.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// A rule name was not found in a registry.
    #[error("unknown rule `{name}`; known rules: {}", .known.join(", "))]
    UnknownRule {
        /// The name asked for.
        name: String,
        /// The names the registry knows.
        known: Vec<String>,
    },
    /// A rule name was registered twice.
    #[error("rule `{name}` is already registered; known rules: {}", .known.join(", "))]
    DuplicateRule {
        /// The name registered twice.
        name: String,
        /// The names the registry knows.
        known: Vec<String>,
    },
    /// A rule spec such as `trimmed-mean(0.1)` could not be parsed.
    #[error("rule spec {spec:?} is malformed: {reason}")]
    InvalidRuleSpec {
        /// The text given.
        spec: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A selection rule would keep no sample at all.
    #[error("rule `{rule}` keeps no sample out of {n_samples}")]
    EmptySelection {
        /// The selection rule.
        rule: String,
        /// The number of candidate samples.
        n_samples: usize,
    },
    /// A sample has no label in a purity report or histogram.
    #[error("sample `{sample_id}` has no label")]
    MissingLabel {
        /// The unlabeled sample.
        sample_id: SampleId,
    },
    /// A histogram was asked for zero bins.
    #[error("a histogram needs at least 1 bin, got {n_bins}")]
    NoBins {
        /// The number of bins asked for.
        n_bins: usize,
    },
    /// A score CSV file is malformed.
    #[error("{}:{line}: {message}", .path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// The 1-based line where the offending record starts.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A score CSV file lacks the cell of one sample under one model.
    #[error("{}: no score for sample `{sample_id}` under model `{model}`", .path.display())]
    CsvMissingCell {
        /// The file.
        path: PathBuf,
        /// The sample.
        sample_id: SampleId,
        /// The sub-model.
        model: String,
    },
    /// A decisions file names a sample that is not among the scored training samples.
    #[error("{}: sample `{sample_id}` is not a training sample of this fit", .path.display())]
    UnknownDecision {
        /// The decisions file.
        path: PathBuf,
        /// The unknown sample.
        sample_id: SampleId,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A downstream rule failed for a reason of its own.
    #[error("rule `{rule}`: {message}")]
    Rule {
        /// The rule's name.
        rule: String,
        /// What went wrong.
        message: String,
    },
}

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
