//! `llb experiment`: the paper-style grid behind `cargo xtask reproduce`.

mod manifest;
mod run;

pub(crate) use run::{ExperimentArgs, run};
