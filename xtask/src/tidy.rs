//! Tidy checks: the house rules of `docs/style.md` that a machine can check, run as a `#[test]`
//! (so `cargo test --workspace` enforces them) and by `cargo xtask tidy`.

use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates allowed to depend on each internal crate or on a heavy or binary-only external crate.
/// A crate missing from this table may be used by anyone.
const DEPENDENCY_RULES: &[(&str, &[&str])] = &[
    ("llb-types", &["*"]),
    ("llb-metrics", &["llb-pipeline", "llb-cli", "xtask"]),
    ("llb-purify", &["llb-submodel", "llb-pipeline", "llb-cli", "xtask"]),
    ("llb-data", &["llb-pipeline", "llb-cli", "xtask"]),
    ("llb-features", &["llb-detect", "llb-submodel", "llb-pipeline", "llb-cli", "xtask"]),
    ("llb-detect", &["llb-submodel", "llb-pipeline", "llb-cli", "xtask"]),
    ("llb-submodel", &["llb-pipeline", "llb-cli", "xtask"]),
    ("llb-pipeline", &["llb-cli", "xtask"]),
    ("llb-assets", &["llb-cli", "xtask"]),
    ("candle-core", &["llb-features", "llb-detect", "llb-submodel", "llb-pipeline", "llb-cli"]),
    ("candle-nn", &["llb-features", "llb-detect", "llb-submodel", "llb-cli"]),
    ("candle-transformers", &["llb-features", "llb-detect"]),
    ("polars", &["xtask"]),
    ("clap", &["llb-cli", "xtask"]),
    ("indicatif", &["llb-cli", "xtask"]),
    ("tracing-indicatif", &["llb-cli", "xtask"]),
    ("tracing-subscriber", &["llb-cli", "xtask"]),
    ("anyhow", &["llb-cli", "xtask"]),
    ("hf-hub", &["llb-assets", "llb-cli"]),
];

/// SPDX identifiers a dependency may be licensed under (any alternative of an `OR` suffices).
const LICENSE_ALLOW_LIST: &[&str] = &[
    "MIT",
    "Apache-2.0",
    "Apache-2.0 WITH LLVM-exception",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "Zlib",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "CC0-1.0",
    "BSL-1.0",
    "Unlicense",
    "0BSD",
    "MPL-2.0",
    "CDLA-Permissive-2.0",
    "bzip2-1.0.6",
];

const MAX_FILE_BYTES: u64 = 1 << 20;

/// Runs every tidy check and reports all violations at once.
pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let files = tracked_files(root)?;
    check_sources(root, &files, &mut problems)?;
    check_manifests(root, &mut problems)?;
    check_licenses(root, &mut problems)?;
    check_golden_rules(root, &mut problems)?;
    if problems.is_empty() {
        return Ok(());
    }
    bail!("tidy found {} problem(s):\n  {}", problems.len(), problems.join("\n  "))
}

/// Files git knows about (tracked, or new and not ignored).
fn tracked_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("git")
        .args(["ls-files", "--cached", "--others", "--exclude-standard"])
        .current_dir(root)
        .output()
        .context("running git ls-files")?;
    if !out.status.success() {
        bail!("git ls-files failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let list = String::from_utf8(out.stdout).context("git ls-files printed non-UTF-8")?;
    Ok(list.lines().map(|l| root.join(l)).filter(|p| p.is_file()).collect())
}

fn check_sources(root: &Path, files: &[PathBuf], problems: &mut Vec<String>) -> anyhow::Result<()> {
    let banned = [concat!("should", "_panic"), concat!("#[", "ignore")];
    for path in files {
        let rel = path.strip_prefix(root).unwrap_or(path).display().to_string();
        let size = path.metadata().with_context(|| format!("reading metadata of {rel}"))?.len();
        if size > MAX_FILE_BYTES {
            problems.push(format!("{rel}: {size} bytes, over the 1 MiB limit for committed files"));
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "rs" | "md" | "toml" | "yml" | "py" | "sh") {
            continue;
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {rel}"))?;
        if let Some(n) = text.lines().position(|l| l.ends_with(' ') || l.ends_with('\t')) {
            problems.push(format!("{rel}:{}: trailing whitespace", n + 1));
        }
        if ext != "rs" {
            continue;
        }
        if !text.trim_start().starts_with("//!") {
            problems.push(format!("{rel}: does not start with a `//!` module doc"));
        }
        for word in banned {
            if let Some(n) = text.lines().position(|l| l.contains(word)) {
                problems.push(format!(
                    "{rel}:{}: `{word}` is not allowed; assert on `Err` instead",
                    n + 1
                ));
            }
        }
    }
    Ok(())
}

/// The `[dependencies]`-like tables of one manifest: crate name → declaration line.
fn dependency_lines(manifest: &str) -> BTreeMap<String, String> {
    let mut deps = BTreeMap::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line.ends_with("dependencies]");
            continue;
        }
        if !in_deps || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line.split(['=', '.']).next().unwrap_or("").trim().to_string();
        if !name.is_empty() {
            deps.insert(name, line.to_string());
        }
    }
    deps
}

fn check_manifests(root: &Path, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let mut manifests = vec![("xtask".to_string(), root.join("xtask/Cargo.toml"))];
    for entry in std::fs::read_dir(root.join("crates")).context("listing crates/")? {
        let dir = entry?.path();
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        manifests.push((name, dir.join("Cargo.toml")));
    }
    for (krate, manifest) in manifests {
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        if !text.contains(&format!("name = \"{krate}\"")) {
            problems.push(format!(
                "{}: package name differs from its folder `{krate}`",
                manifest.display()
            ));
        }
        if !text.contains("[lints]\nworkspace = true") {
            problems.push(format!("{krate}: missing `[lints] workspace = true`"));
        }
        for (dep, line) in dependency_lines(&text) {
            if !line.contains("workspace = true") {
                problems.push(format!(
                    "{krate}: dependency `{dep}` must be declared `{dep}.workspace = true`"
                ));
            }
            let Some((_, allowed)) = DEPENDENCY_RULES.iter().find(|(name, _)| *name == dep) else {
                continue;
            };
            if !allowed.contains(&"*") && !allowed.contains(&krate.as_str()) {
                problems.push(format!(
                    "{krate}: may not depend on `{dep}` (allowed: {}); see ARCHITECTURE.md",
                    allowed.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// `true` when an SPDX expression allows use under one of the allowed licences.
fn license_allowed(expr: &str) -> bool {
    let expr = expr.replace(['(', ')'], "");
    expr.split(" OR ")
        .flat_map(|alt| alt.split('/'))
        .any(|alt| alt.split(" AND ").all(|part| LICENSE_ALLOW_LIST.contains(&part.trim())))
}

fn check_licenses(root: &Path, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(root)
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    for pkg in meta["packages"].as_array().into_iter().flatten() {
        if pkg["source"].is_null() {
            continue; // Our own crates.
        }
        let name = pkg["name"].as_str().unwrap_or("?");
        match pkg["license"].as_str() {
            Some(expr) if license_allowed(expr) => {}
            Some(expr) => problems
                .push(format!("dependency {name}: licence `{expr}` is not on the allow-list")),
            None => problems.push(format!("dependency {name}: no licence declared")),
        }
    }
    Ok(())
}

/// Every built-in fusion and selection rule of llb-purify is named in its golden test file.
fn check_golden_rules(root: &Path, problems: &mut Vec<String>) -> anyhow::Result<()> {
    let purify = root.join("crates/llb-purify/src");
    let golden = std::fs::read_to_string(purify.join("tests/golden.rs"))
        .context("reading the purify golden tests")?;
    for file in ["fusion/builtin.rs", "selection/builtin.rs"] {
        let text = std::fs::read_to_string(purify.join(file))
            .with_context(|| format!("reading {file}"))?;
        let names = base_names(&text);
        if names.is_empty() {
            problems.push(format!("crates/llb-purify/src/{file}: no `BASE_NAMES` list found"));
        }
        for name in names {
            if !golden.contains(&format!("\"{name}\"")) && !golden.contains(&format!("\"{name}(")) {
                problems.push(format!(
                    "built-in rule `{name}` has no golden test in llb-purify/src/tests/golden.rs"
                ));
            }
        }
    }
    Ok(())
}

/// The string literals of the `BASE_NAMES` constant in a source file.
fn base_names(source: &str) -> Vec<String> {
    let Some(start) = source.find("BASE_NAMES") else { return Vec::new() };
    let rest = &source[start..];
    let Some(open) = rest.find("= &[") else { return Vec::new() };
    let body = &rest[open + 4..];
    let body = &body[..body.find(']').unwrap_or(body.len())];
    body.split('"').skip(1).step_by(2).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy() {
        if let Err(e) = run(&crate::project_root()) {
            panic!("{e:#}");
        }
    }

    #[test]
    fn license_expressions() {
        assert!(license_allowed("MIT OR Apache-2.0"));
        assert!(license_allowed("(MIT OR Apache-2.0) AND Unicode-3.0"));
        assert!(license_allowed("MIT/Apache-2.0"));
        assert!(!license_allowed("GPL-3.0"));
        assert!(!license_allowed("MIT AND GPL-3.0"));
    }

    #[test]
    fn base_names_are_parsed() {
        let src = "pub const BASE_NAMES: &'static [&'static str] = &[\n    \"mean\",\n    \"max-var\",\n];";
        assert_eq!(base_names(src), ["mean", "max-var"]);
    }

    #[test]
    fn dependency_tables_are_parsed() {
        let deps = dependency_lines(
            "[package]\nname = \"x\"\n[dependencies]\nfoo.workspace = true\nbar = \"1\"\n[features]\ncuda = []\n",
        );
        assert_eq!(deps.keys().collect::<Vec<_>>(), ["bar", "foo"]);
    }
}
