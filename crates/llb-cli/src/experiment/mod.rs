//! `llb experiment`: the paper-style grid behind `cargo xtask reproduce`.

mod dataset;
mod log;
mod manifest;
mod run;

pub(crate) use run::{ExperimentArgs, run};
