//! Tidy checks: the house rules of `docs/style.md` that a machine can check, run as a `#[test]`
//! (so `cargo test --workspace` enforces them) and by `cargo xtask tidy`.

use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates allowed to depend on each internal crate or on a heavy or binary-only external crate.
/// A crate missing from this table may be used by anyone. Every internal crate is listed, so a
/// crate named in no list (llb-metrics) depends on no llb crate.
const DEPENDENCY_RULES: &[(&str, &[&str])] = &[
    (
        "llb-types",
        &[
            "llb-purify",
            "llb-data",
            "llb-features",
            "llb-detect",
            "llb-submodel",
            "llb-assets",
            "llb-results",
            "llb-pipeline",
            "llb-cli",
            "xtask",
        ],
    ),
    ("llb-metrics", &["llb-pipeline", "llb-cli", "xtask"]),
    ("llb-purify", &["llb-submodel", "llb-results", "llb-pipeline", "llb-cli", "xtask"]),
    ("llb-data", &["llb-pipeline", "llb-cli", "xtask"]),
    ("llb-features", &["llb-pipeline", "llb-cli", "xtask"]),
    ("llb-detect", &["llb-submodel", "llb-pipeline", "llb-cli", "xtask"]),
    ("llb-submodel", &["llb-pipeline", "llb-cli", "xtask"]),
    ("llb-results", &["llb-pipeline", "llb-cli", "xtask"]),
    ("llb-pipeline", &["llb-cli", "xtask"]),
    ("llb-assets", &["llb-cli", "xtask"]),
    ("llb-bench", &["llb-features", "llb-detect"]),
    ("candle-core", &["llb-features", "llb-detect", "llb-submodel", "llb-pipeline", "llb-cli"]),
    ("candle-nn", &["llb-features", "llb-detect", "llb-submodel", "llb-pipeline", "llb-cli"]),
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

/// The style guide, whose `unsafe_code` rule names the only files that may use `unsafe`.
const STYLE_GUIDE: &str = "docs/style.md";

/// Runs every tidy check and reports all violations at once.
pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let files = tracked_files(root)?;
    check_sources(root, &files, &mut problems)?;
    check_manifests(root, &mut problems)?;
    check_licenses(root, &mut problems)?;
    check_golden_rules(root, &mut problems)?;
    check_unsafe(root, &files, &mut problems)?;
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
            if !dependency_allowed(&krate, &dep) {
                let rule = DEPENDENCY_RULES.iter().find(|(name, _)| *name == dep);
                let allowed = rule.map(|(_, allowed)| allowed.join(", ")).unwrap_or_default();
                problems.push(format!(
                    "{krate}: may not depend on `{dep}` (allowed: {allowed}); see ARCHITECTURE.md"
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

/// `true` when the table lets `krate` depend on `dep`.
fn dependency_allowed(krate: &str, dep: &str) -> bool {
    DEPENDENCY_RULES
        .iter()
        .find(|(name, _)| *name == dep)
        .is_none_or(|(_, allowed)| allowed.contains(&"*") || allowed.contains(&krate))
}

/// The files the style guide allows `unsafe` in: the backticked `.rs` paths of its `unsafe_code`
/// line, braces expanded (`vit/{matmul,kernels}.rs`), relative to `crates/`.
fn unsafe_allow_list(style: &str) -> anyhow::Result<Vec<String>> {
    let line = style
        .lines()
        .find(|l| l.contains("`unsafe_code` is deny"))
        .context("the style guide has no `unsafe_code` rule")?;
    let mut files = Vec::new();
    for span in line.split('`').skip(1).step_by(2).filter(|s| s.ends_with(".rs")) {
        match (span.find('{'), span.find('}')) {
            (Some(open), Some(close)) if open < close => {
                for alternative in span[open + 1..close].split(',') {
                    let (head, tail) = (&span[..open], &span[close + 1..]);
                    files.push(format!("crates/{head}{}{tail}", alternative.trim()));
                }
            }
            _ => files.push(format!("crates/{span}")),
        }
    }
    Ok(files)
}

/// Line numbers (1-based) of `unsafe` blocks, functions, impls, traits and extern blocks, and of
/// `allow(unsafe_code)` / `expect(unsafe_code)` attributes, outside comments and string literals.
fn unsafe_lines(source: &str) -> Vec<usize> {
    let tokens = tokens(source);
    let mut lines = Vec::new();
    for (i, (token, line)) in tokens.iter().enumerate() {
        let next = tokens.get(i + 1).map_or("", |(t, _)| t.as_str());
        let before = |k: usize| i.checked_sub(k).map_or("", |j| tokens[j].0.as_str());
        let keyword = token == "unsafe" && matches!(next, "{" | "fn" | "impl" | "trait" | "extern");
        let attribute =
            token == "unsafe_code" && before(1) == "(" && matches!(before(2), "allow" | "expect");
        if (keyword || attribute) && lines.last() != Some(line) {
            lines.push(*line);
        }
    }
    lines
}

/// Identifiers and single punctuation characters with their line numbers; comments, string
/// literals (plain and raw) and character literals are skipped.
fn tokens(source: &str) -> Vec<(String, usize)> {
    let chars: Vec<char> = source.chars().collect();
    let (mut out, mut line, mut i) = (Vec::new(), 1, 0);
    let at = |j: usize| chars.get(j).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && at(i + 1) == '/') {
                line += usize::from(chars[i] == '\n');
                i += 1;
            }
            i += 2;
        } else if c == 'r' && (at(i + 1) == '"' || (at(i + 1) == '#' && !is_ident(at(i - 1)))) {
            // A raw string: r"…" or r#"…"# (as many hashes as opened it).
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            if at(i + 1 + hashes) != '"' {
                out.push(("r".to_owned(), line));
                i += 1;
                continue;
            }
            i += hashes + 2;
            let close: String =
                std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            while i < chars.len() && !chars[i..].starts_with(&close.chars().collect::<Vec<_>>()) {
                line += usize::from(chars[i] == '\n');
                i += 1;
            }
            i += close.len();
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                line += usize::from(chars[i] == '\n');
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '\'' && (at(i + 2) == '\'' || at(i + 1) == '\\') {
            // A character literal ('x' or '\n'); a lifetime ('a) is left as punctuation.
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if is_ident(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            out.push((chars[start..i].iter().collect(), line));
        } else {
            if !c.is_whitespace() {
                out.push((c.to_string(), line));
            }
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `unsafe` only in the files the style guide allows it in.
fn check_unsafe(root: &Path, files: &[PathBuf], problems: &mut Vec<String>) -> anyhow::Result<()> {
    let style = std::fs::read_to_string(root.join(STYLE_GUIDE))
        .with_context(|| format!("reading {STYLE_GUIDE}"))?;
    let allowed = unsafe_allow_list(&style)?;
    for file in &allowed {
        if !root.join(file).is_file() {
            problems
                .push(format!("{STYLE_GUIDE}: allows `unsafe` in {file}, which does not exist"));
        }
    }
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "rs")) {
        let rel = path.strip_prefix(root).unwrap_or(path).to_string_lossy().replace('\\', "/");
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {rel}"))?;
        let lines = unsafe_lines(&text);
        let Some(first) = lines.first() else { continue };
        if !allowed.contains(&rel) {
            problems.push(format!(
                "{rel}:{first}: `unsafe` outside the files {STYLE_GUIDE} allows it in ({})",
                allowed.join(", ")
            ));
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

    /// The architecture's edges (ARCHITECTURE.md) as the table states them.
    #[test]
    fn dependency_rules_state_the_architecture() {
        let internal = [
            "llb-types",
            "llb-metrics",
            "llb-purify",
            "llb-data",
            "llb-features",
            "llb-detect",
            "llb-submodel",
            "llb-results",
            "llb-pipeline",
            "llb-assets",
            "llb-bench",
        ];
        for dep in internal {
            assert!(!dependency_allowed("llb-metrics", dep), "llb-metrics on {dep}");
            let rule = DEPENDENCY_RULES.iter().find(|(name, _)| *name == dep);
            assert!(rule.is_some(), "{dep} has no rule, so anyone may depend on it");
        }
        assert!(!dependency_allowed("llb-detect", "llb-features"));
        assert!(!dependency_allowed("llb-pipeline", "llb-assets"));
        for dep in ["llb-types", "llb-purify"] {
            assert!(dependency_allowed("llb-results", dep), "llb-results on {dep}");
        }
        for dep in
            internal.iter().filter(|d| !matches!(**d, "llb-pipeline" | "llb-assets" | "llb-bench"))
        {
            assert!(dependency_allowed("llb-pipeline", dep), "llb-pipeline on {dep}");
        }
        for krate in ["llb-pipeline", "llb-cli", "llb-purify", "llb-metrics"] {
            assert!(!dependency_allowed(krate, "llb-bench"), "{krate} on llb-bench");
        }
        assert!(!dependency_allowed("llb-purify", "llb-data"));
        assert!(dependency_allowed("anything", "serde"));
    }

    #[test]
    fn the_unsafe_allow_list_is_read_from_the_style_guide() {
        let line = "- `[workspace.lints.rust]`: `unsafe_code` is deny. Allowed for mmap \
                    (`llb-x/src/a.rs`) and kernels (`llb-y/src/vit/{matmul, kernels}.rs`).";
        assert_eq!(
            unsafe_allow_list(&format!("# Style\n{line}\n")).unwrap(),
            [
                "crates/llb-x/src/a.rs",
                "crates/llb-y/src/vit/matmul.rs",
                "crates/llb-y/src/vit/kernels.rs"
            ]
        );
        assert!(unsafe_allow_list("no rule here").is_err());
        let real = std::fs::read_to_string(crate::project_root().join(STYLE_GUIDE)).unwrap();
        assert!(
            unsafe_allow_list(&real).unwrap().contains(&"crates/llb-types/src/gemm.rs".to_owned())
        );
    }

    fn check_unsafe_lines(source: &str, expected: &[usize]) {
        assert_eq!(unsafe_lines(source), expected, "{source}");
    }

    #[test]
    fn unsafe_uses_are_found_outside_comments_and_strings() {
        check_unsafe_lines("fn f() {\n    unsafe { g() }\n}\n", &[2]);
        check_unsafe_lines("unsafe impl Send for X {}\nunsafe fn h() {}\n", &[1, 2]);
        check_unsafe_lines("#[allow(unsafe_code, reason = \"x\")]\nfn f() {}\n", &[1]);
        check_unsafe_lines("let s = \"unsafe { }\";\n// unsafe { }\n/* unsafe fn */\n", &[]);
        check_unsafe_lines("let s = r#\"unsafe {\"#;\nlet c = '\"';\nunsafe {}\n", &[3]);
        check_unsafe_lines("let csp = \"style-src 'unsafe-inline'\";\nfn unsafe_name() {}\n", &[]);
        check_unsafe_lines("#![deny(unsafe_code)]\nfn f<'a>(x: &'a u8) {}\n", &[]);
    }

    #[test]
    fn dependency_tables_are_parsed() {
        let deps = dependency_lines(
            "[package]\nname = \"x\"\n[dependencies]\nfoo.workspace = true\nbar = \"1\"\n[features]\ncuda = []\n",
        );
        assert_eq!(deps.keys().collect::<Vec<_>>(), ["bar", "foo"]);
    }
}
