//! `llb experiment`: the paper-style grid behind `cargo xtask reproduce`.

mod dataset;
mod log;
mod manifest;
mod run;

#[cfg(test)]
pub(crate) use manifest::Manifest;
pub(crate) use run::{ExperimentArgs, run};
