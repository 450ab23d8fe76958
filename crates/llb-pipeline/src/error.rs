//! The pipeline's error type: every failure names the file, sample, rule or stage it concerns,
//! and says whether the input is at fault ([`Error::blames_input`]) or the machine.

use llb_types::SampleId;
use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// What can go wrong between a folder of images and a saved model or its metrics.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A fusion or selection rule that the registries do not know or cannot parse.
    #[error("{kind} rule `{rule}`")]
    Rule {
        /// `fusion` or `selection`.
        kind: &'static str,
        /// The rule as given.
        rule: String,
        /// Why it was refused (the message lists the known names).
        source: Box<llb_purify::Error>,
    },
    /// Settings that cannot work together (the message says which and why).
    #[error("settings: {0}")]
    Settings(String),
    /// An image that could not be read or decoded, with `OnBadImage::Fail`.
    #[error(
        "image {id}: {reason} (`OnBadImage::Skip`, `--on-bad-image skip` on the command line, goes \
         on without it)"
    )]
    BadImage {
        /// The sample.
        id: SampleId,
        /// What went wrong, naming the file.
        reason: String,
    },
    /// No sample of a set has features (all unreadable, or none requested).
    #[error("no features: {0}")]
    NoFeatures(String),
    /// A non-finite image score.
    #[error("sample {id}: image score {score} is not finite")]
    NonFiniteScore {
        /// The sample.
        id: SampleId,
        /// The score.
        score: f32,
    },
    /// A model folder whose card this version cannot read.
    #[error(
        "{}: model card format {found}; this llb reads formats {}",
        path.display(),
        crate::card::READABLE_FORMATS.map(|f| f.to_string()).join(" and ")
    )]
    ModelFormat {
        /// The card.
        path: PathBuf,
        /// The format it declares.
        found: u32,
    },
    /// A model fitted on features of other encoder weights than the ones at hand.
    #[error(
        "model {} was fitted with encoder weights of SHA-256 {model_sha256}, but {} has \
         SHA-256 {weights_sha256}: its scores would come from other features",
        card.display(),
        weights.display()
    )]
    WeightsMismatch {
        /// The model card.
        card: PathBuf,
        /// The weights hash the card records.
        model_sha256: String,
        /// The weights file at hand.
        weights: PathBuf,
        /// Its hash.
        weights_sha256: String,
    },
    /// A file or folder that could not be read or written.
    #[error("{}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A JSON file that could not be parsed, or a value that could not be written as JSON.
    #[error("{}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A failure of one stage, with the stage named.
    #[error("{stage}")]
    Stage {
        /// What was running, e.g. `stage 1 (sub-models)`.
        stage: String,
        /// What failed.
        source: Box<Error>,
    },
    /// Data-set reading or preprocessing.
    #[error(transparent)]
    Data(#[from] llb_data::Error),
    /// Encoders and the feature cache.
    #[error(transparent)]
    Features(#[from] llb_features::Error),
    /// Detector fitting, scoring, saving or loading.
    #[error(transparent)]
    Detect(#[from] llb_detect::Error),
    /// Stage 1 (sub-models and their cache).
    #[error(transparent)]
    Stage1(#[from] llb_submodel::Error),
    /// Fusion, selection or decisions.
    #[error(transparent)]
    Purify(#[from] llb_purify::Error),
    /// Metrics.
    #[error(transparent)]
    Metrics(#[from] llb_metrics::Error),
    /// The tensor backend.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

impl Error {
    /// `true` when the input is at fault (a rule, a setting, an image, a data set, a model folder,
    /// a missing file) rather than the machine: a command line's exit code 2.
    pub fn blames_input(&self) -> bool {
        match self {
            Error::Rule { .. }
            | Error::Settings(_)
            | Error::BadImage { .. }
            | Error::NoFeatures(_)
            | Error::ModelFormat { .. }
            | Error::WeightsMismatch { .. }
            | Error::Json { .. }
            | Error::Data(_)
            | Error::Purify(_)
            | Error::Metrics(_) => true,
            Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            Error::Stage { source, .. } => source.blames_input(),
            Error::Stage1(e) => e.blames_input(),
            _ => false,
        }
    }

    /// This error, as the failure of `stage`.
    pub(crate) fn during(stage: impl Into<String>) -> impl FnOnce(Error) -> Error {
        let stage = stage.into();
        move |e| Error::Stage { stage, source: Box::new(e) }
    }

    /// An IO error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    /// A JSON error on `path`.
    pub(crate) fn json(path: impl Into<PathBuf>) -> impl FnOnce(serde_json::Error) -> Error {
        let path = path.into();
        move |source| Error::Json { path, source }
    }
}
