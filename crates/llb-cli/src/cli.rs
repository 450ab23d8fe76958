//! Argument parsing, logging set-up and dispatch to the subcommands.

use clap::{Parser, Subcommand};

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
enum Command {}

/// Parses the arguments, runs the subcommand and maps errors to exit codes.
pub(crate) fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _ = cli.verbose;
    match cli.command {}
}
