//! The `llb` command line: the whole pipeline for users with a folder of photos.

#![allow(clippy::print_stdout, reason = "a command line prints its results")]

mod cli;
mod fetch_cmd;

fn main() -> std::process::ExitCode {
    cli::main()
}
