//! Peers: Python packages from PyPI in a virtual environment under the cache
//! (`$LLB_CACHE/peers/NAME`), created on first use.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether the peers are switched off for this run (`LLB_BENCH_PEER=0`).
pub fn peer_off() -> bool {
    std::env::var("LLB_BENCH_PEER").is_ok_and(|v| v == "0")
}

/// The Python of the peer environment `name`, in which `import` succeeds, after installing
/// `packages` (pip requirement strings) into it when it does not yet.
///
/// # Errors
/// Why the environment could not be made ready (the failing command's last line of stderr).
pub fn python(name: &str, packages: &[&str], import: &str) -> Result<PathBuf, String> {
    let venv = crate::cache_root().join("peers").join(name);
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

/// Runs `program args…`, turning a failure into its last line of stderr.
fn run(program: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{} failed: {}", program.display(), last_line(&out.stderr)))
    }
}

fn last_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr).lines().last().unwrap_or("").to_string()
}

/// Runs `python -c script args…` with `threads` OpenMP threads and parses the one JSON value it
/// prints on stdout.
///
/// # Errors
/// The peer could not start, failed (its last line of stderr), or printed no JSON.
pub fn run_json(
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
        return Err(format!("peer failed: {}", last_line(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("peer output: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_json_parses_the_output_and_reports_failures() {
        // `.ci/run` installs python3.
        let python = PathBuf::from("python3");
        let v =
            run_json(&python, "import sys; print('{\"n\": %s}' % sys.argv[1])", &["7".into()], 1)
                .unwrap();
        assert_eq!(v["n"], 7);
        let err = run_json(&python, "raise SystemExit('no peer here')", &[], 1).unwrap_err();
        assert!(err.contains("no peer here"), "{err}");
        let err = run_json(&python, "print('not json')", &[], 1).unwrap_err();
        assert!(err.starts_with("peer output"), "{err}");
    }
}
