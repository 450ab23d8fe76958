//! `llb experiment`: the paper-style grid behind `cargo xtask reproduce`, whole or in shards.

mod dataset;
mod grid;
mod log;
mod manifest;
mod run;
mod shard;

#[cfg(test)]
pub(crate) use manifest::Manifest;
pub(crate) use run::{ExperimentArgs, run};
