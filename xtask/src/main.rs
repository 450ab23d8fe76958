//! `cargo xtask`: the project's automation, in Rust, with no extra tools to install.
//!
//! Subcommands: `bench <name>` (heavy benchmarks), `ci` (what `.ci/run` runs), `gpu-check`
//! (CUDA build and CPU-vs-GPU parity, on a machine with an NVIDIA GPU), `reproduce`
//! (the paper-style tables), `tidy` (the tidy checks alone).

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "xtask reports to the terminal")]

mod bench;
mod ci;
mod gpu_check;
mod reproduce;
mod tidy;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sh = xshell::Shell::new()?;
    sh.change_dir(project_root());
    match args.first().map(String::as_str) {
        Some("bench") => bench::run(&sh, &args[1..]),
        Some("ci") => ci::run(&sh),
        Some("gpu-check") => gpu_check::run(&sh, &args[1..]),
        Some("reproduce") => reproduce::run(&sh, &args[1..]),
        Some("tidy") => tidy::run(&project_root()),
        _ => {
            eprintln!("usage: cargo xtask <bench|ci|gpu-check|reproduce|tidy>");
            std::process::exit(2)
        }
    }
}

/// The workspace root (the parent of `xtask/`).
pub(crate) fn project_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace root")
        .to_path_buf()
}

/// `cargo build --release <args> --message-format=json`, returning the path of the executable
/// named `name` as cargo reports it (so a custom target folder works).
pub(crate) fn cargo_build_executable(
    sh: &xshell::Shell,
    args: &[&str],
    name: &str,
) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    let out = xshell::cmd!(sh, "cargo build --release {args...} --message-format=json")
        .read()
        .with_context(|| format!("building {name} (cargo build --release {})", args.join(" ")))?;
    for line in out.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if message["target"]["name"] == name
            && let Some(path) = message["executable"].as_str()
        {
            return Ok(path.into());
        }
    }
    anyhow::bail!("cargo built no executable named {name}")
}
