//! The `llb` command line: the whole pipeline for users with a folder of photos.

#![allow(clippy::print_stdout, reason = "a command line prints its results")]

mod cli;
mod data_args;
mod eval_cmd;
mod experiment;
mod fetch_cmd;
mod fit_cmd;
#[cfg(test)]
mod fuzz_tests;
mod metrics_cmd;
mod model_args;
mod npy;
mod overlay;
mod plot;
mod predict_cmd;
mod review;
mod review_cmd;
mod run_context;
mod stage1_cmd;

fn main() -> std::process::ExitCode {
    cli::main()
}
