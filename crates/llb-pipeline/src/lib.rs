//! Learning-bias purification (Zhang et al., arXiv 2508.07441) as a library: the method that
//! joins the parts of the other llb crates, from a folder of images to a saved model and its
//! metrics.
//!
//! 1. [`Extractor`]: one frozen-encoder pass per image content, kept in a
//!    [`FeatureCache`](llb_features::FeatureCache) and shared by every sub-model and the final
//!    model ([`Extracted`] holds the features by [`SampleId`](llb_types::SampleId)).
//! 2. [`screen`]: stage 1 (K sub-models from `llb-submodel`, fusion and selection from
//!    `llb-purify`), giving the kept ids; [`screen_submodels`] fits some of the K sub-models in
//!    one job and [`screen_stored`] assembles the others' from a [`Stage1Store`].
//! 3. [`fit_final`]: stage 2, the detector on the kept ids; [`calibrate_threshold`]: an
//!    unsupervised decision threshold.
//! 4. [`OutputFolder`] writes the model folder (`llb.json`, the one [`ModelCard`], and
//!    `detector/`) atomically; [`Model::load`] reads it back and [`Model::check_weights`] refuses
//!    other encoder weights.
//! 5. [`for_each_scored`] scores new images; [`evaluate`] computes the metrics of `llb-metrics`.
//!
//! Settings are plain values ([`FitSettings`]); [`FitSettings::check`] resolves the rules before
//! any image is read. Errors are one [`Error`] enum; [`Error::blames_input`] tells bad input from
//! failures. The crate never prints: progress is reported through `tracing` spans (`extract`,
//! `screening_round`, `stage2`, `calibrate_threshold`, `evaluate`) and events.
//!
//! Invariants: samples travel by id, never by row position, across crates ([`Extracted::subset`]);
//! an image scoring strictly above the card's threshold is anomalous ([`ModelCard::is_anomalous`]);
//! every random choice is seeded by the settings.
//!
//! `examples/fit_predict.rs` fits and predicts on a folder in about 30 lines.

mod backbone;
mod card;
mod error;
mod evaluate;
mod extract;
mod model_dir;
mod quality;
mod settings;
mod twostage;

pub use backbone::{DetectorSettings, EncoderKind, EncoderSettings, FittedDetector};
pub use card::{DecisionsRecord, FORMAT, ModelCard, training_ids_sha256};
pub use error::{Error, Result};
pub use evaluate::{Evaluation, evaluate, for_each_scored};
pub use extract::{Extracted, Extractor, OnBadImage};
pub use llb_results::ScreeningQuality;
pub use llb_submodel::Stage1Store;
pub use model_dir::{CARD_FILE, DETECTOR_DIR, Model, OutputFolder, write_json};
pub use quality::screening_quality;
pub use settings::{DEFAULT_SELECTION, FitSettings, PurifySettings, Rules};
pub use twostage::{
    Screening, TwoStage, calibrate_threshold, fit_final, groups_of, screen, screen_observed,
    screen_stored, screen_submodels,
};
