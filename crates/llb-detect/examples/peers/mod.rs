//! Peers for the benchmarks (their scripts sit beside this file): Python packages from PyPI in a
//! virtual environment under the cache (`$LLB_CACHE/peers/NAME`), created on first use, never
//! in CI or the repository.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The asset cache's root: `$LLB_CACHE`, else `~/.cache/llb`.
pub(crate) fn cache_root() -> PathBuf {
    std::env::var_os("LLB_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/llb"),
        PathBuf::from,
    )
}

/// The Python of the peer environment `name`, in which `import` succeeds, after installing
/// `packages` (pip requirement strings) into it when it does not yet.
pub(crate) fn python(name: &str, packages: &[&str], import: &str) -> Result<PathBuf, String> {
    let venv = cache_root().join("peers").join(name);
    let python = venv.join("bin").join("python");
    let ready = |p: &Path| {
        Command::new(p)
            .args(["-c", &format!("import {import}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ready(&python) {
        return Ok(python);
    }
    let run = |program: &Path, args: &[&str]| -> Result<(), String> {
        let out = Command::new(program)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(format!("{} failed: {}", program.display(), err.lines().last().unwrap_or("")))
        }
    };
    let venv_arg = venv.to_string_lossy();
    run(Path::new("python3"), &["-m", "venv", &venv_arg])?;
    let mut args = vec!["-m", "pip", "install", "--quiet"];
    args.extend_from_slice(packages);
    run(&python, &args)?;
    if ready(&python) {
        Ok(python)
    } else {
        Err(format!("`import {import}` fails in {}", venv.display()))
    }
}

/// Runs `python script args…` with `threads` OpenMP threads and parses the one JSON line it
/// prints.
pub(crate) fn run_json(
    python: &Path,
    script: &str,
    args: &[String],
    threads: usize,
) -> Result<serde_json::Value, String> {
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .env("OMP_NUM_THREADS", threads.to_string())
        .output()
        .map_err(|e| format!("cannot run the peer: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("peer failed: {}", err.lines().last().unwrap_or("")));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("peer output: {e}"))
}
