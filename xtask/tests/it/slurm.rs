//! `cargo xtask reproduce --slurm --submit --shards 3` on a real one-node Slurm: three array
//! tasks and a dependent merge job, whose tables are those of one process running the same
//! manifest.

use super::cluster::{Cluster, run};
use llb_data::{BenchmarkConfig, DefectKind, TileSource, generate_benchmark, synthetic_texture};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The manifest's name: results go to `<out>/results/slurm-tiny.json`.
const NAME: &str = "slurm-tiny";

/// The files `reproduce` renders from `results/<name>.json`.
const RENDERED: [&str; 4] = [
    "results/slurm-tiny.csv",
    "docs/tables/slurm-tiny.md",
    "docs/tables/slurm-tiny-headline.md",
    "docs/tables/slurm-tiny.svg",
];

/// The `llb` executable, built (or found fresh) by cargo: the merge job and the shards run it.
fn llb() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = run(Command::new(cargo).args([
        "build",
        "--locked",
        "--package",
        "llb-cli",
        "--bin",
        "llb",
        "--message-format=json",
    ]))
    .expect("building llb");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|m| m["target"]["name"] == "llb" && m["executable"].is_string())
        .map(|m| PathBuf::from(m["executable"].as_str().unwrap()))
        .expect("cargo reported no llb executable")
}

/// A scratch cache whose `weights/` is the real cache's (DINOv2-S, fetched by `llb fetch`).
fn scratch_cache(dir: &Path) -> PathBuf {
    let real = std::env::var_os("LLB_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/llb")
    });
    let weights = real.join("weights");
    assert!(
        weights.join("dinov2-vits14.safetensors").is_file(),
        "{} has no DINOv2 weights: run `cargo run -p llb-cli -- fetch` first",
        weights.display()
    );
    std::fs::create_dir_all(dir).unwrap();
    std::os::unix::fs::symlink(&weights, dir.join("weights")).unwrap();
    dir.to_path_buf()
}

/// One synthetic texture category (`tex`, 56 px tiles), 1 category × 2 α × 2 seeds = 4 cells of
/// (plain, purified): 8 rows, a few seconds of CPU.
fn tiny_manifest(dir: &Path) -> PathBuf {
    let bench = dir.join("bench");
    let config = BenchmarkConfig {
        seed: 9,
        tile_size_px: 56,
        n_train_good: 10,
        n_test_good: 2,
        n_test_defective: 6,
        defect_kinds: vec![DefectKind::Stain],
        tile_source: TileSource::WholePhoto,
        n_pool_defective: 0,
        defect_catalogue: None,
    };
    generate_benchmark(&[synthetic_texture("tex", 9, 160, 160)], &config, &bench).unwrap();
    let manifest = serde_json::json!({
        "name": NAME,
        "datasets": [{"kind": "mvtec", "root": bench, "categories": ["tex"]}],
        "contamination_ratios": [0.0, 0.2], "seeds": [0, 1],
        "backbones": [{"name": "patchcore", "settings": {
            "encoder": {"kind": "dinov2-vits14", "layers": [3, 5], "image_size_px": 56},
            "detector": {"kind": "patchcore", "coreset_fraction": 0.2, "projection_dim": 32,
                "reweight_neighbours": null, "blur_sigma_px": 2.0, "seed": 0},
            "purify": {
                "stage1": {"partition": {"k": 2, "seed": 0, "mode": "random"},
                    "screening_score": {"top-mean": {"fraction": 0.01}}, "batch_size": 16},
                "fusion": "mean", "selection": "keep-fraction(0.8)"},
            "test_score": "max", "calibration_seed": 0}}],
        "ablation_ratios": [], "ablations": []
    });
    let path = dir.join("manifest.json");
    std::fs::write(&path, manifest.to_string()).unwrap();
    path
}

/// `xtask reproduce <args>` with the shared options, returning its stdout.
fn reproduce(manifest: &Path, out: &Path, llb: &Path, cache: &Path, args: &[&str]) -> String {
    let output = run(Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["reproduce", "--manifest"])
        .arg(manifest)
        .arg("--out")
        .arg(out)
        .arg("--llb")
        .arg(llb)
        .arg("--no-fetch")
        .args(args)
        .env("LLB_CACHE", cache)
        .env("RUST_LOG", "warn"))
    .unwrap_or_else(|e| panic!("xtask reproduce {args:?}: {e:#}"));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The rendered tables of `out` after zeroing every row's wall-clock `fit_seconds` (the one
/// field that measures the machine, not the method) and rendering again.
fn tables_without_seconds(manifest: &Path, out: &Path, llb: &Path) -> Vec<(String, Vec<u8>)> {
    let json = out.join(format!("results/{NAME}.json"));
    let mut results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for row in results["rows"].as_array_mut().unwrap() {
        row["fit_seconds"] = 0.0.into();
    }
    std::fs::write(&json, serde_json::to_vec_pretty(&results).unwrap()).unwrap();
    reproduce(manifest, out, llb, out, &["--render-only"]);
    let mut files: Vec<_> =
        RENDERED.iter().map(|f| (f.to_string(), std::fs::read(out.join(f)).unwrap())).collect();
    files.push(("json".into(), std::fs::read(json).unwrap()));
    files
}

#[test]
fn slurm_array_and_merge_job_render_the_tables_of_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&dir.path().join("slurm"))
        .unwrap_or_else(|e| panic!("cannot start a one-node Slurm cluster: {e:#}"));
    let llb = llb();
    let manifest = tiny_manifest(dir.path());

    let sharded = dir.path().join("sharded");
    let cache = scratch_cache(&dir.path().join("cache-sharded"));
    let mut submit = Command::new(env!("CARGO_BIN_EXE_xtask"));
    submit
        .args(["reproduce", "--manifest"])
        .arg(&manifest)
        .arg("--out")
        .arg(&sharded)
        .arg("--llb")
        .arg(&llb)
        .args(["--no-fetch", "--slurm", "--shards", "3", "--submit"])
        .env("LLB_CACHE", &cache)
        .env("SLURM_CONF", &cluster.conf)
        .env("RUST_LOG", "warn");
    let output = run(&mut submit).unwrap_or_else(|e| panic!("submitting: {e:#}{}", cluster.logs()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("xtask printed a JSON line")).unwrap();
    let (array, merge) =
        (report["array_job"].as_str().unwrap(), report["merge_job"].as_str().unwrap());
    let job_logs = || {
        let dir = sharded.join("results/slurm");
        let mut text = String::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.path().extension().is_some_and(|e| e == "out") {
                let body = std::fs::read_to_string(entry.path()).unwrap_or_default();
                text.push_str(&format!("\n--- {}\n{body}", entry.path().display()));
            }
        }
        text
    };
    let timeout = Duration::from_secs(300);
    let merge_state =
        cluster.wait(merge, timeout).unwrap_or_else(|e| panic!("{e:#}{}", job_logs()));
    let array_states = cluster.job_states(array).unwrap();
    assert_eq!(
        (array_states.join(" "), merge_state.join(" ")),
        ("COMPLETED COMPLETED COMPLETED".to_owned(), "COMPLETED".to_owned()),
        "array job {array}, merge job {merge}{}{}",
        job_logs(),
        cluster.logs()
    );
    for file in RENDERED {
        assert!(sharded.join(file).is_file(), "the merge job rendered no {file}{}", job_logs());
    }
    for i in 0..3 {
        let log = sharded.join(format!("results/{NAME}.shard-{i}-of-3.rows.jsonl"));
        assert!(log.is_file(), "shard {i} wrote no log{}", job_logs());
    }

    // One process, on a cache of its own, with the same manifest.
    let single = dir.path().join("single");
    let own = scratch_cache(&dir.path().join("cache-single"));
    reproduce(&manifest, &single, &llb, &own, &[]);
    let (a, b) = (
        tables_without_seconds(&manifest, &sharded, &llb),
        tables_without_seconds(&manifest, &single, &llb),
    );
    for ((name, sharded), (_, single)) in a.iter().zip(&b) {
        assert!(
            sharded == single,
            "{name} differs:\n{}\n---\n{}",
            String::from_utf8_lossy(sharded),
            String::from_utf8_lossy(single)
        );
    }
    drop(cluster);
}
