//! The `llb` command line: the whole pipeline for users with a folder of photos.

#![allow(clippy::print_stdout, reason = "a command line prints its results")]

mod cli;
mod eval_cmd;
mod experiment;
mod fetch_cmd;
mod fit_cmd;
#[cfg(test)]
mod fuzz_tests;
mod metrics_cmd;
mod npy;
mod overlay;
mod pipeline;
mod plot;
mod predict_cmd;
mod review;
mod review_cmd;

fn main() -> std::process::ExitCode {
    cli::main()
}
