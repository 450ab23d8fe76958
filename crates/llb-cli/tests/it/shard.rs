//! `llb experiment --shard I/N` and `--merge`: shards running at once on one cache leave whole
//! cache entries, and their merged results are what one process writes.

use super::pipeline::{scratch_cache, tiny_benchmark};
use llb_data::DefectKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A manifest of 1 category × 2 α × 2 seeds = 4 cells of (plain, purified): 8 rows, whose
/// cells all share the test images (overlapping features).
fn manifest(dir: &Path, bench: &Path) -> PathBuf {
    let manifest = serde_json::json!({
        "name": "shards",
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

fn experiment(manifest: &Path, out: &Path, cache: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_llb"));
    command
        .args(["experiment", "--manifest", manifest.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap(), "--cache", cache.to_str().unwrap()])
        .args(extra)
        .env("RUST_LOG", "warn");
    command
}

fn succeeded(output: Output, what: &str) -> serde_json::Value {
    assert!(output.status.success(), "{what} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().expect("llb printed a JSON line")).unwrap()
}

/// The results with every row's wall-clock `fit_seconds` zeroed: the only field that differs
/// between two runs of the same rows.
fn without_seconds(path: &Path) -> serde_json::Value {
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for row in value["rows"].as_array_mut().unwrap() {
        row["fit_seconds"] = 0.0.into();
    }
    value
}

/// Every file under `dir`: no temporary file is left, and every feature entry loads.
fn check_cache_is_whole(cache: &Path) -> usize {
    let mut entries = 0;
    let mut stack = vec![cache.join("features"), cache.join("stage1")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".tmp") {
                panic!("a temporary file is left: {}", path.display());
            } else if name.ends_with(".safetensors") {
                let tensors = candle_core::safetensors::load(&path, &candle_core::Device::Cpu);
                assert!(tensors.is_ok_and(|t| !t.is_empty()), "{} is not whole", path.display());
                entries += 1;
            } else if name.ends_with(".json") {
                let text = std::fs::read_to_string(&path).unwrap();
                let parsed = serde_json::from_str::<serde_json::Value>(&text);
                assert!(parsed.is_ok(), "{} is not whole", path.display());
            }
        }
    }
    entries
}

/// Three shards started at once on one fresh cache compute the 8 rows (each cell once, the
/// shared test images' features by whoever gets there first) and leave only whole entries;
/// `--merge` then writes the same bytes as a plain run that resumes from the same logs, and the
/// same rows (but for wall-clock seconds) as one process on a cache of its own.
#[test]
fn concurrent_shards_merge_to_what_one_process_writes() {
    let dir = tempfile::tempdir().unwrap();
    let bench = dir.path().join("bench");
    tiny_benchmark(&bench, 9, (56, 160), (10, 2, 6), vec![DefectKind::Stain]);
    let manifest = manifest(dir.path(), &bench);
    let shared = scratch_cache(&dir.path().join("shared"));
    let sharded = dir.path().join("sharded");
    let running: Vec<_> = (0..3)
        .map(|i| {
            let shard = format!("{i}/3");
            let mut command = experiment(&manifest, &sharded, &shared, &["--shard", &shard]);
            command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
            command.spawn().unwrap()
        })
        .collect();
    let reports: Vec<_> = running
        .into_iter()
        .enumerate()
        .map(|(i, child)| succeeded(child.wait_with_output().unwrap(), &format!("shard {i}/3")))
        .collect();
    let rows: u64 = reports.iter().map(|r| r["rows"].as_u64().unwrap()).sum();
    let cells: u64 = reports.iter().map(|r| r["cells"].as_u64().unwrap()).sum();
    assert_eq!((cells, rows), (4, 8), "{reports:?}");
    assert!(check_cache_is_whole(&shared) > 0);
    assert!(!sharded.join("shards.json").exists(), "a shard wrote the results");

    let merged = succeeded(
        experiment(&manifest, &sharded, &shared, &["--merge"]).output().unwrap(),
        "merge",
    );
    assert_eq!((merged["rows"].as_u64(), merged["computed"].as_u64()), (Some(8), Some(0)));
    let merged_bytes = std::fs::read(sharded.join("shards.json")).unwrap();

    // A plain run reading the same rows writes the same bytes.
    let resumed = dir.path().join("resumed");
    std::fs::create_dir_all(&resumed).unwrap();
    for i in 0..3 {
        let log = format!("shards.shard-{i}-of-3.rows.jsonl");
        std::fs::copy(sharded.join(&log), resumed.join(&log)).unwrap();
    }
    let plain = succeeded(experiment(&manifest, &resumed, &shared, &[]).output().unwrap(), "run");
    assert_eq!(plain["computed"].as_u64(), Some(0));
    assert!(std::fs::read(resumed.join("shards.json")).unwrap() == merged_bytes);

    // One process on a cache of its own computes the same rows.
    let alone = dir.path().join("alone");
    let own = scratch_cache(&dir.path().join("own"));
    let single = succeeded(experiment(&manifest, &alone, &own, &[]).output().unwrap(), "run");
    assert_eq!(single["computed"].as_u64(), Some(8));
    assert_eq!(
        without_seconds(&alone.join("shards.json")),
        without_seconds(&sharded.join("shards.json"))
    );
}

/// A malformed or out-of-range shard is an input error (exit code 2) that says what `I/N`
/// means; a merge with a shard's rows missing fails naming them.
#[test]
fn bad_shards_and_incomplete_merges_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bench = dir.path().join("bench");
    std::fs::create_dir_all(&bench).unwrap();
    let manifest = manifest(dir.path(), &bench);
    let (out, cache) = (dir.path().join("out"), dir.path().join("cache"));
    for bad in ["3/3", "1-3", "0/0"] {
        let output = experiment(&manifest, &out, &cache, &["--shard", bad]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains(&format!("`{bad}`")) && stderr.contains("0 ≤ I < N"), "{stderr}");
    }
    let output = experiment(&manifest, &out, &cache, &["--merge"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("8 of 8 rows are in no log") && stderr.contains("tex α=0 seed=0"),
        "{stderr}"
    );
}
