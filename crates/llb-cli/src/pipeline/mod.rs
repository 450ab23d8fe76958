//! The pipeline behind `fit`, `purify`, `predict`, `eval` and `experiment`: data → cached
//! features → stage 1 → stage 2 → scores and metrics.

mod backbone;
mod context;
mod evaluate;
mod extract;
pub(crate) mod model_dir;
mod quality;
mod settings;
mod source;
mod twostage;

pub(crate) use backbone::{DetectorSettings, FittedDetector};
pub(crate) use context::RunContext;
pub(crate) use evaluate::{Evaluation, evaluate, for_each_scored};
pub(crate) use extract::{Extracted, Extractor, OnBadImage};
pub(crate) use model_dir::ModelCard;
pub(crate) use quality::ScreeningQuality;
#[cfg(test)]
pub(crate) use settings::settings_from_flags;
pub(crate) use settings::{DEFAULT_SELECTION, ModelArgs};
pub(crate) use source::{DataArgs, groups_of};
pub(crate) use twostage::{
    FitSettings, PurifySettings, Screening, TwoStage, calibrate_threshold, fit_final, screen,
    screen_observed,
};
