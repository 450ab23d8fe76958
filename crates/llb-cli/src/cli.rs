//! Argument parsing, logging set-up and dispatch to the subcommands.

use clap::{Parser, Subcommand};

use crate::fetch_cmd;

/// Noisy-data image anomaly detection: learning-bias purification (arXiv 2508.07441).
#[derive(Debug, Parser)]
#[command(name = "llb", version, about)]
struct Cli {
    /// More detail in error messages and logs (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fetch texture photos, Fashion-MNIST and pretrained weights into the asset cache.
    Fetch(fetch_cmd::FetchArgs),
}

/// Parses the arguments, runs the subcommand and maps errors to exit codes.
pub(crate) fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Fetch(args) => fetch_cmd::run(args, cli.verbose),
    };
    exit_code(result)
}

/// Maps a subcommand's result to an exit code, printing the error chain on failure.
#[allow(clippy::print_stderr, reason = "a command line reports its errors on stderr")]
fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
