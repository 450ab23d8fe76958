//! `cargo xtask gpu-check [--cuda N] [--skip-experiment]`: on a machine with an NVIDIA GPU,
//! builds `llb` and the `gpu_parity` example with `--features cuda` (release, in their own
//! target folder `target/cuda` unless `CARGO_TARGET_DIR` is set), then checks
//!
//! 1. encoder parity and speed: DINOv2-S patch features of one batch (8 × 224 px) on the CPU
//!    and on the GPU, relative L2 error per layer at most 1e-3, images/s on each
//!    (`crates/llb-features/examples/gpu_parity.rs`);
//! 2. the whole pipeline on the GPU: `llb --device cpu experiment` and `llb --device cuda:N
//!    experiment` on a tiny built-in benchmark (one category, α = 0.2, the first backbone of
//!    `xtask/manifests/benchmark.json`), each with its own feature cache, must both finish and
//!    give the same kept count and metrics within [`METRIC_TOLERANCE`];
//!
//! and prints a Markdown summary. Needs `nvidia-smi`, a CUDA toolkit (`nvcc` on `PATH`, or
//! `bash xtask/cuda-toolkit-from-pypi.sh` for one from PyPI) and the fetched assets
//! (`llb fetch`: DINOv2-S weights and texture photos in `$LLB_CACHE`, default `~/.cache/llb`).

use anyhow::{Context, bail, ensure};
use llb_results::ResultRow;
use serde_json::Value;
use std::path::{Path, PathBuf};
use xshell::{Shell, cmd};

/// Largest difference allowed between CPU and GPU image / pixel metrics of the tiny
/// experiment: far above last-bit noise (one flipped pair of 72 moves the image AUROC by
/// 0.014), far below what a wrong kernel or a mixed-device bug gives.
const METRIC_TOLERANCE: f64 = 0.05;

/// The GPU as `nvidia-smi` describes it.
struct Gpu {
    name: String,
    compute_cap: String,
    driver: String,
    memory: String,
}

/// Runs the check.
pub(crate) fn run(sh: &Shell, args: &[String]) -> anyhow::Result<()> {
    let mut ordinal = 0usize;
    let mut experiment = true;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--cuda" => ordinal = rest.next().context("--cuda needs a GPU number")?.parse()?,
            "--skip-experiment" => experiment = false,
            other => bail!(
                "unknown option {other}; usage: cargo xtask gpu-check [--cuda N] [--skip-experiment]"
            ),
        }
    }
    let gpu = nvidia_gpu(sh, ordinal)?;
    let nvcc = nvcc_release(sh)?;
    let compute_cap =
        std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| gpu.compute_cap.replace('.', ""));
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| crate::project_root().join("target").join("cuda"), PathBuf::from);
    eprintln!(
        "gpu-check: {} (compute {}, driver {}), nvcc {nvcc}; building into {}",
        gpu.name,
        gpu.compute_cap,
        gpu.driver,
        target_dir.display()
    );
    let _env = (
        sh.push_env("CUDA_COMPUTE_CAP", &compute_cap),
        sh.push_env("CARGO_TARGET_DIR", &target_dir),
        sh.push_env("LD_LIBRARY_PATH", library_path()),
    );
    let llb = build(sh, &["-p", "llb-cli", "--bin", "llb"], "llb")?;
    let parity = build(sh, &["-p", "llb-features", "--example", "gpu_parity"], "gpu_parity")?;

    let device = format!("cuda:{ordinal}");
    let ordinal_arg = ordinal.to_string();
    let out = cmd!(sh, "{parity} --cuda {ordinal_arg}")
        .ignore_status()
        .output()
        .with_context(|| format!("running {}", parity.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .with_context(|| format!("gpu_parity printed no JSON line (exit {:?})", out.status))?;

    let comparison = experiment.then(|| tiny_experiment(sh, &llb, &device));
    let rows = comparison.as_ref().and_then(|c| c.as_ref().ok());
    println!("{}", summary(&gpu, &nvcc, &device, &report, rows));
    ensure!(out.status.success() && report["pass"] == true, "encoder parity failed (see above)");
    if let Some(rows) = comparison.transpose()? {
        let worst = rows.iter().map(|r| r.worst_gap()).fold(0.0, f64::max);
        ensure!(
            rows.iter().all(|r| r.n_kept.0 == r.n_kept.1) && worst <= METRIC_TOLERANCE,
            "the experiment differs between cpu and {device} (largest metric gap {worst:.4})"
        );
    }
    Ok(())
}

/// The GPU `ordinal` from `nvidia-smi`, or why this machine cannot run the check.
fn nvidia_gpu(sh: &Shell, ordinal: usize) -> anyhow::Result<Gpu> {
    require_nvidia_smi(std::env::var_os("PATH"))?;
    let index = ordinal.to_string();
    let out = cmd!(
        sh,
        "nvidia-smi --id={index} --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader"
    )
    .read()
    .with_context(|| format!("nvidia-smi found no GPU {ordinal}"))?;
    let fields: Vec<&str> = out.trim().split(',').map(str::trim).collect();
    let [name, compute_cap, driver, memory] = fields[..] else {
        bail!("unexpected nvidia-smi output: {out}");
    };
    Ok(Gpu {
        name: name.to_owned(),
        compute_cap: compute_cap.to_owned(),
        driver: driver.to_owned(),
        memory: memory.to_owned(),
    })
}

/// Fails, saying what the check needs, when no folder of `path` (a `PATH` value) holds
/// `nvidia-smi`.
fn require_nvidia_smi(path: Option<std::ffi::OsString>) -> anyhow::Result<()> {
    if find_in(path, "nvidia-smi").is_none() {
        bail!(
            "cargo xtask gpu-check needs a machine with an NVIDIA GPU and a CUDA toolkit: \
             `nvidia-smi` is not on PATH here (no NVIDIA driver). The CPU-only build needs \
             neither; see docs/GUIDE.md, section GPU."
        );
    }
    Ok(())
}

/// `nvcc`'s release (e.g. `13.4`), or how to get a toolkit.
fn nvcc_release(sh: &Shell) -> anyhow::Result<String> {
    if find_in(std::env::var_os("PATH"), "nvcc").is_none() {
        bail!(
            "cargo xtask gpu-check needs a CUDA toolkit: `nvcc` is not on PATH. Install one \
             (or from PyPI: `eval \"$(bash xtask/cuda-toolkit-from-pypi.sh /opt/cuda-pip)\"`)"
        );
    }
    let version = cmd!(sh, "nvcc --version").read()?;
    version
        .split("release ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .map(str::to_owned)
        .with_context(|| format!("no release in `nvcc --version`: {version}"))
}

/// The first `program` in the folders of `path` (a `PATH` value).
fn find_in(path: Option<std::ffi::OsString>, program: &str) -> Option<PathBuf> {
    std::env::split_paths(&path?).map(|dir| dir.join(program)).find(|p| p.is_file())
}

/// `LD_LIBRARY_PATH` with the toolkit's libraries first (`$CUDA_HOME/lib64`, where the PyPI
/// script links cuBLAS, cuRAND, NVRTC and the runtime), so the built binaries find them.
fn library_path() -> String {
    let old = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
    match std::env::var("CUDA_HOME") {
        Ok(home) if !old.split(':').any(|d| d == format!("{home}/lib64")) => {
            format!("{home}/lib64{}{old}", if old.is_empty() { "" } else { ":" })
        }
        _ => old,
    }
}

/// `cargo build --release --features cuda <selection>`, returning the executable named `name`.
fn build(sh: &Shell, selection: &[&str], name: &str) -> anyhow::Result<PathBuf> {
    crate::cargo_build_executable(sh, &[&["--features", "cuda"], selection].concat(), name)
}

/// One result row of the tiny experiment on both devices: (cpu, cuda) pairs.
struct RowPair {
    method: String,
    n_kept: (u64, u64),
    n_kept_anomalous: (u64, u64),
    metrics: Vec<(&'static str, f64, f64)>,
    fit_seconds: (f64, f64),
}

impl RowPair {
    /// The largest |cpu − gpu| over the metrics; infinite when one is not a number.
    fn worst_gap(&self) -> f64 {
        let gap = |a: f64, b: f64| if (a - b).is_nan() { f64::INFINITY } else { (a - b).abs() };
        self.metrics.iter().map(|&(_, a, b)| gap(a, b)).fold(0.0, f64::max)
    }
}

/// How a compared metric is read from a result row.
type ReadMetric = fn(&ResultRow) -> Option<f64>;

/// The compared metrics: their names in the result rows, and how to read them.
const METRICS: [(&str, ReadMetric); 4] = [
    ("i_auroc", |r| Some(r.i_auroc)),
    ("i_ap", |r| Some(r.i_ap)),
    ("p_auroc", |r| r.p_auroc),
    ("p_aupro", |r| r.p_aupro),
];

/// Runs the tiny experiment on the CPU and on `device`, each in a scratch cache that shares the
/// fetched assets but computes its own features, and pairs up the result rows.
fn tiny_experiment(sh: &Shell, llb: &Path, device: &str) -> anyhow::Result<Vec<RowPair>> {
    let root = crate::project_root();
    let manifest_path = root.join("xtask").join("manifests").join("benchmark.json");
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let manifest = tiny_manifest(serde_json::from_str(&text)?)?;
    let assets = std::env::var_os("LLB_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/llb"),
        PathBuf::from,
    );
    ensure!(
        assets.join("weights").join("dinov2-vits14.safetensors").is_file(),
        "{} holds no DINOv2-S weights: run `cargo run --release -p llb-cli -- fetch` first",
        assets.display()
    );
    let scratch = sh.create_temp_dir()?;
    let manifest_file = scratch.path().join("gpu-check.json");
    std::fs::write(&manifest_file, serde_json::to_string_pretty(&manifest)?)?;
    let mut results = Vec::new();
    for dev in ["cpu", device] {
        let cache = scratch.path().join(format!("cache-{}", dev.replace(':', "-")));
        std::fs::create_dir_all(&cache)?;
        // The fetched assets are shared; features, generated images and stage-1 tables are not.
        for shared in ["weights", "images", "raw"] {
            if assets.join(shared).exists() {
                std::os::unix::fs::symlink(assets.join(shared), cache.join(shared))?;
            }
        }
        let out = scratch.path().join(format!("out-{}", dev.replace(':', "-")));
        eprintln!("gpu-check: llb --device {dev} experiment (tiny benchmark)");
        cmd!(
            sh,
            "{llb} --device {dev} experiment --manifest {manifest_file} --out {out} --cache {cache}"
        )
        .env("RUST_LOG", "warn")
        .run()
        .with_context(|| format!("llb experiment on {dev}"))?;
        let text = std::fs::read_to_string(out.join("gpu-check.json"))?;
        let file: llb_results::Results<Value> =
            serde_json::from_str(&text).with_context(|| format!("parsing the results of {dev}"))?;
        results.push(file.rows);
    }
    let (cpu, gpu) = (&results[0], &results[1]);
    ensure!(cpu.len() == gpu.len(), "{} rows on the CPU, {} on {device}", cpu.len(), gpu.len());
    Ok(cpu
        .iter()
        .zip(gpu)
        .map(|(a, b)| RowPair {
            method: a.method.clone(),
            n_kept: (a.n_kept as u64, b.n_kept as u64),
            n_kept_anomalous: (a.n_kept_anomalous as u64, b.n_kept_anomalous as u64),
            metrics: METRICS
                .iter()
                .filter_map(|&(name, get)| Some((name, get(a)?, get(b).unwrap_or(f64::NAN))))
                .collect(),
            fit_seconds: (a.fit_seconds, b.fit_seconds),
        })
        .collect())
}

/// The committed benchmark manifest cut down to one category, α = 0.2, the first backbone at
/// 112 px, few images and no ablations: a couple of minutes on a CPU.
fn tiny_manifest(mut manifest: Value) -> anyhow::Result<Value> {
    manifest["name"] = "gpu-check".into();
    manifest["datasets"] = Value::Array(vec![manifest["datasets"][0].clone()]);
    let dataset = &mut manifest["datasets"][0];
    ensure!(
        dataset["kind"] == "benchmark",
        "the benchmark manifest's first data set is no longer `benchmark`"
    );
    let first = dataset["categories"][0].clone();
    dataset["categories"] = Value::Array(vec![first]);
    let config = &mut dataset["config"];
    config["tile_size_px"] = 128.into();
    config["n_train_good"] = 24.into();
    config["n_test_good"] = 8.into();
    config["n_test_defective"] = 16.into();
    config["n_pool_defective"] = 8.into();
    manifest["contamination_ratios"] = serde_json::json!([0.2]);
    manifest["seeds"] = serde_json::json!([0]);
    let backbone = manifest["backbones"][0].clone();
    manifest["backbones"] = Value::Array(vec![backbone]);
    manifest["backbones"][0]["settings"]["encoder"]["image_size_px"] = 112.into();
    manifest["ablation_ratios"] = serde_json::json!([]);
    manifest["ablations"] = serde_json::json!([]);
    Ok(manifest)
}

/// The Markdown report.
fn summary(
    gpu: &Gpu,
    nvcc: &str,
    device: &str,
    report: &Value,
    rows: Option<&Vec<RowPair>>,
) -> String {
    // `rows` is None when the experiment was skipped or failed (its error follows the summary).
    let f = |key: &str, digits: usize| {
        report[key].as_f64().map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
    };
    let mut md = format!(
        "## gpu-check\n\n{} ({}, compute capability {}, driver {}), CUDA toolkit {nvcc}, \
         candle 0.11.1, f32 (TF32 {}).\n\n",
        gpu.name,
        gpu.memory,
        gpu.compute_cap,
        gpu.driver,
        if report["tf32"] == true { "on" } else { "off" }
    );
    md += "### DINOv2-S, batch 8 at 224 px\n\n| device | ms/batch | images/s |\n|---|---|---|\n";
    md += &format!(
        "| cpu ({} threads) | {} | {} |\n",
        report["cpu_threads"],
        f("cpu_ms_per_batch", 1),
        f("cpu_images_per_s", 2)
    );
    md += &format!(
        "| {device} | {} | {} |\n\nspeed-up: {}x\n\n",
        f("cuda_ms_per_batch", 2),
        f("cuda_images_per_s", 1),
        f("speedup", 1)
    );
    let tolerance = report["tolerance_rel_l2"].as_f64().unwrap_or(1e-3);
    md += &format!(
        "| block | shape | max abs error | relative L2 | within {tolerance:e} |\n|---|---|---|---|---|\n"
    );
    for layer in report["layers"].as_array().into_iter().flatten() {
        let rel = layer["rel_l2"].as_f64().unwrap_or(f64::NAN);
        md += &format!(
            "| {} | {} | {:.2e} | {rel:.2e} | {} |\n",
            layer["block"],
            layer["shape"],
            layer["max_abs"].as_f64().unwrap_or(f64::NAN),
            if rel <= tolerance && layer["finite"] == true { "yes" } else { "**no**" }
        );
    }
    if let Some(rows) = rows {
        md += &format!(
            "\n### llb experiment, tiny benchmark (cpu / {device})\n\n\
             | method | kept | kept anomalous | metrics | fit s |\n|---|---|---|---|---|\n"
        );
        for r in rows {
            let metrics: Vec<String> =
                r.metrics.iter().map(|(m, a, b)| format!("{m} {a:.4} / {b:.4}")).collect();
            md += &format!(
                "| {} | {} / {} | {} / {} | {} | {:.1} / {:.1} |\n",
                r.method,
                r.n_kept.0,
                r.n_kept.1,
                r.n_kept_anomalous.0,
                r.n_kept_anomalous.1,
                metrics.join(", "),
                r.fit_seconds.0,
                r.fit_seconds.1
            );
        }
        let worst = rows.iter().map(RowPair::worst_gap).fold(0.0, f64::max);
        md += &format!("\nlargest metric gap {worst:.4} (allowed {METRIC_TOLERANCE})\n");
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tiny_manifest_keeps_the_schema_and_shrinks_the_grid() {
        let path = crate::project_root().join("xtask/manifests/benchmark.json");
        let full: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let tiny = tiny_manifest(full.clone()).unwrap();
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&tiny), keys(&full));
        assert_eq!(tiny["datasets"].as_array().unwrap().len(), 1);
        assert_eq!(tiny["datasets"][0]["categories"].as_array().unwrap().len(), 1);
        assert_eq!(tiny["seeds"], serde_json::json!([0]));
        assert_eq!(tiny["backbones"].as_array().unwrap().len(), 1);
        assert_eq!(tiny["backbones"][0]["settings"]["encoder"]["image_size_px"], 112);
        assert_eq!(tiny["ablations"], serde_json::json!([]));
    }

    #[test]
    fn without_nvidia_smi_the_check_refuses_and_says_why() {
        let dir = tempfile_dir();
        let err = require_nvidia_smi(Some(dir.clone().into_os_string())).unwrap_err().to_string();
        assert!(err.contains("needs a machine with an NVIDIA GPU and a CUDA toolkit"), "{err}");
        assert!(require_nvidia_smi(None).is_err());
        // The same folder with an `nvidia-smi` in it passes.
        std::fs::write(dir.join("nvidia-smi"), "").unwrap();
        require_nvidia_smi(Some(dir.clone().into_os_string())).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_summary_flags_a_layer_over_the_tolerance_and_a_metric_gap() {
        // Shaped like gpu_parity's JSON line; the values are made up for the test.
        let report = serde_json::json!({
            "cpu_threads": 16, "cpu_ms_per_batch": 500.0, "cpu_images_per_s": 16.0,
            "cuda_ms_per_batch": 5.0, "cuda_images_per_s": 1600.0, "speedup": 100.0,
            "tf32": false, "tolerance_rel_l2": 1e-3, "pass": false,
            "layers": [
                {"block": 3, "shape": [8, 384, 16, 16], "max_abs": 1e-5, "rel_l2": 2e-6, "finite": true},
                {"block": 11, "shape": [8, 384, 16, 16], "max_abs": 0.5, "rel_l2": 2e-2, "finite": true},
            ],
        });
        let gpu = Gpu {
            name: "GPU".into(),
            compute_cap: "9.0".into(),
            driver: "580".into(),
            memory: "1 MiB".into(),
        };
        let rows = vec![RowPair {
            method: "patchcore".into(),
            n_kept: (18, 18),
            n_kept_anomalous: (1, 1),
            metrics: vec![("i_auroc", 0.975, 1.0)],
            fit_seconds: (0.1, 0.2),
        }];
        let md = summary(&gpu, "13.4", "cuda:0", &report, Some(&rows));
        assert!(md.contains("| 3 | [8,384,16,16] | 1.00e-5 | 2.00e-6 | yes |"), "{md}");
        assert!(md.contains("| 11 | [8,384,16,16] | 5.00e-1 | 2.00e-2 | **no** |"), "{md}");
        assert!(md.contains("| patchcore | 18 / 18 | 1 / 1 | i_auroc 0.9750 / 1.0000 |"), "{md}");
        assert!(md.contains("largest metric gap 0.0250"), "{md}");
        assert!((rows[0].worst_gap() - 0.025).abs() < 1e-12);
        let nan = RowPair {
            metrics: vec![("i_auroc", 0.9, f64::NAN)],
            ..rows.into_iter().next().unwrap()
        };
        assert_eq!(nan.worst_gap(), f64::INFINITY);
    }

    /// An empty folder of this test's own.
    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-gpu-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
