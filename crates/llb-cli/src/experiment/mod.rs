//! `llb experiment`: the paper-style grid behind `cargo xtask reproduce`, whole or in shards.

mod dataset;
mod grid;
mod log;
mod manifest;
mod run;
mod shard;

pub(crate) use run::{ExperimentArgs, run};
