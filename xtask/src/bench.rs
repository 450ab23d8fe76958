//! `cargo xtask bench <name>`: benchmarks that are too heavy for the test suite. Each builds a
//! release example once and runs it in a fresh process per configuration (so peak memory is per configuration),
//! collects the one JSON line it prints, and renders a Markdown table.
//!
//! To add a benchmark, write one `fn(&Shell, &[String]) -> anyhow::Result<()>` below and add a
//! line to [`BENCHES`].

use anyhow::{Context, bail};
use serde_json::Value;
use xshell::{Shell, cmd};

/// A benchmark: its subcommand name, a one-line description and the function that runs it.
type Bench = (&'static str, &'static str, fn(&Shell, &[String]) -> anyhow::Result<()>);

/// Every benchmark, by subcommand name.
const BENCHES: &[Bench] = &[
    ("all", "every benchmark below, in order, with default options", all),
    (
        "metrics",
        "exact vs streaming pixel metrics on 256×256 maps [--sizes 250,500,1000] [--bins 1000]",
        metrics,
    ),
];

/// Benchmarks that are crate examples whose own reports (JSON lines or Markdown) are passed
/// through, one after the other: subcommand name, description, package, examples.
const EXAMPLES: &[(&str, &str, &str, &[&str])] = &[
    (
        "data",
        "decode + preprocess throughput on the built-in benchmark (images/s)",
        "llb-data",
        &["bench_data"],
    ),
    (
        "features",
        "DINOv2-S images/s at 224/448 px, batch 1/8, GFLOP/s vs GEMM, onnxruntime peer; then `cnn`",
        "llb-features",
        &["bench_features", "bench_cnn"],
    ),
    (
        "cnn",
        "EfficientNet-Lite0 and WideResNet50-2 images/s, patch aggregation time",
        "llb-features",
        &["bench_cnn"],
    ),
    (
        "detect",
        "PatchCore fit and scoring, 200 training images at 224 px, NN search GFLOP/s vs GEMM",
        "llb-detect",
        &["bench_detect"],
    ),
    (
        "search",
        "PatchCore exact 1-NN search vs faiss IndexFlatL2 at 3 bank sizes [BANK_IMAGES,.. [QUERY_IMAGES]]",
        "llb-detect",
        &["bench_search"],
    ),
    (
        "dinomaly",
        "Dinomaly training step: hand-written CPU pass vs autograd vs PyTorch, 224/112 px [ITERS [SIDES]]",
        "llb-detect",
        &["bench_dinomaly"],
    ),
    (
        "purify",
        "selection purity on synthetic contaminated scores, fusion and selection timings",
        "llb-purify",
        &["synthetic_purity"],
    ),
];

/// Runs every benchmark with its default options.
fn all(sh: &Shell, _args: &[String]) -> anyhow::Result<()> {
    for (name, _, bench) in BENCHES.iter().filter(|(n, _, _)| *n != "all") {
        println!("\n## {name}\n");
        bench(sh, &[])?;
    }
    let mut done = std::collections::BTreeSet::new();
    for (name, _, package, examples) in EXAMPLES {
        println!("\n## {name}\n");
        for example in examples.iter().filter(|e| done.insert(**e)) {
            pass_through(sh, package, example, &[])?;
        }
    }
    Ok(())
}

/// Builds and runs a release example, passing its report through.
fn pass_through(sh: &Shell, package: &str, example: &str, args: &[String]) -> anyhow::Result<()> {
    let executable = build_example(sh, package, example)?;
    let out = cmd!(sh, "{executable} {args...}")
        .read()
        .with_context(|| format!("running {} {}", executable.display(), args.join(" ")))?;
    println!("{out}");
    Ok(())
}

/// Dispatches `cargo xtask bench <name> [options]`.
pub(crate) fn run(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    let name = args.first().map(String::as_str).unwrap_or("");
    if let Some((_, _, package, examples)) = EXAMPLES.iter().find(|(n, ..)| *n == name) {
        for example in *examples {
            pass_through(sh, package, example, &args[1..])?;
        }
        return Ok(());
    }
    match BENCHES.iter().find(|(n, _, _)| *n == name) {
        Some((_, _, bench)) => bench(sh, &args[1..]),
        None => {
            let list: Vec<String> = BENCHES
                .iter()
                .map(|(n, d, _)| format!("  {n}: {d}"))
                .chain(EXAMPLES.iter().map(|(n, d, ..)| format!("  {n}: {d}")))
                .collect();
            bail!("unknown benchmark `{name}`; available:\n{}", list.join("\n"))
        }
    }
}

/// Builds `<package>`'s example `<example>` in release mode and returns its executable.
fn build_example(sh: &Shell, package: &str, example: &str) -> anyhow::Result<std::path::PathBuf> {
    crate::cargo_build_executable(sh, &["--quiet", "-p", package, "--example", example], example)
}

/// Runs a built example in a fresh process and parses the last line it prints as JSON.
fn run_example(sh: &Shell, executable: &std::path::Path, args: &[String]) -> anyhow::Result<Value> {
    let out = cmd!(sh, "{executable} {args...}")
        .read()
        .with_context(|| format!("running {} {}", executable.display(), args.join(" ")))?;
    let line =
        out.lines().last().with_context(|| format!("{} printed nothing", executable.display()))?;
    serde_json::from_str(line)
        .with_context(|| format!("{} printed non-JSON: {line}", executable.display()))
}

/// Value of `--name value` in `args`, or `default`.
fn option<'a>(args: &'a [String], name: &str, default: &'a str) -> anyhow::Result<&'a str> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => {
            args.get(i + 1).map(String::as_str).with_context(|| format!("{name} needs a value"))
        }
    }
}

/// A Markdown table; every row must have as many cells as `header`.
fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n|{}\n", header.join(" | "), "---|".repeat(header.len()));
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

fn number(report: &Value, key: &str) -> anyhow::Result<f64> {
    report[key].as_f64().with_context(|| format!("benchmark report lacks `{key}`: {report}"))
}

/// `cargo xtask bench metrics`: exact vs binned pixel evaluators on 256×256 maps.
fn metrics(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    let sizes: Vec<usize> = option(args, "--sizes", "250,500,1000")?
        .split(',')
        .map(|s| s.trim().parse().with_context(|| format!("--sizes: `{s}` is not a count")))
        .collect::<anyhow::Result<_>>()?;
    let bins = option(args, "--bins", "1000")?.to_string();
    let executable = build_example(sh, "llb-metrics", "bench_metrics")?;
    let mut rows = Vec::new();
    for n_maps in sizes {
        let run = |mode: &str| {
            let args = [mode.to_string(), n_maps.to_string(), bins.clone()];
            run_example(sh, &executable, &args)
        };
        let (exact, binned) = (run("exact")?, run("binned")?);
        let cell = |v: f64, digits: usize| format!("{v:.digits$}");
        let mut row = vec![n_maps.to_string()];
        for report in [&exact, &binned] {
            row.push(cell(number(report, "eval_seconds")?, 3));
            row.push(cell(number(report, "peak_rss_mib")?, 1));
        }
        row.push(cell(number(&binned, "eval_seconds")? / number(&exact, "eval_seconds")?, 3));
        row.push(cell(number(&binned, "peak_rss_mib")? / number(&exact, "peak_rss_mib")?, 4));
        for key in ["p_auroc", "p_aupro"] {
            row.push(format!("{:.1e}", (number(&binned, key)? - number(&exact, key)?).abs()));
            row.push(format!("{:.1e}", number(&binned, &format!("{key}_max_error"))?));
        }
        rows.push(row);
    }
    let header = [
        "maps",
        "exact s",
        "exact peak MiB",
        &format!("binned({bins}) s"),
        "binned peak MiB",
        "time ratio",
        "memory ratio",
        "P-AUROC binned − exact (abs)",
        "P-AUROC bound",
        "P-AUPRO binned − exact (abs)",
        "P-AUPRO bound",
    ];
    println!("{}", render_table(&header, &rows));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_render_as_markdown() {
        let table = render_table(&["a", "b"], &[vec!["1".into(), "2".into()]]);
        assert_eq!(table, "| a | b |\n|---|---|\n| 1 | 2 |\n");
    }

    #[test]
    fn options_take_the_next_argument() {
        let args: Vec<String> = ["--bins", "64"].map(String::from).to_vec();
        assert_eq!(option(&args, "--bins", "1000").unwrap(), "64");
        assert_eq!(option(&args, "--sizes", "10").unwrap(), "10");
        assert!(option(&args[..1], "--bins", "1000").is_err());
    }

    #[test]
    fn unknown_benchmarks_list_the_known_ones() {
        let sh = Shell::new().unwrap();
        let err = run(&sh, &["nope".into()]).unwrap_err().to_string();
        assert!(err.contains("metrics") && err.contains("dinomaly"), "{err}");
    }
}
