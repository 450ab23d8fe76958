//! The benchmark generator's output is pinned by committed checksum lists:
//! - `datasets/benchmark-v1-synthetic.sha256`: `BenchmarkConfig::llb_benchmark_v1()` on synthetic
//!   textures made in code;
//! - `datasets/benchmark-v1.sha256`: the same config on the scikit-image texture photos;
//! - `datasets/benchmark-v2.sha256`: `llb_benchmark_v2()` on `BENCHMARK_V2_TEXTURES` (the
//!   scikit-image photos and the cropped mvtb-data photos);
//! - `datasets/benchmark-tables.sha256`: the data behind the committed result tables, i.e. every
//!   `benchmark` data set of the committed run manifest `xtask/manifests/benchmark.json`.
//!
//! The photos come from the llb cache (found as `llb` finds it); a test fails, naming the bundle,
//! when they are missing. Set `UPDATE_CHECKSUMS=1` to rewrite a list after an intended change of
//! the generator or of the manifest's data sets.

use llb_data::{
    BENCHMARK_V2_TEXTURES, BenchmarkConfig, Texture, checksum_tree, generate_benchmark,
    load_texture, load_texture_photo, synthetic_texture,
};
use std::path::{Path, PathBuf};

/// The category names of benchmark v1, one per texture photo.
const NAMES: [&str; 3] = ["brick", "grass", "gravel"];

fn datasets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets")
}

/// Generates the benchmark from `textures` with `config` and its checksum list.
fn generate(textures: &[Texture], config: &BenchmarkConfig) -> String {
    let dir = tempfile::tempdir().unwrap();
    generate_benchmark(textures, config, dir.path()).unwrap();
    checksum_tree(dir.path()).unwrap()
}

/// Generates the benchmark from `textures` with `config` and compares its checksums with the
/// committed `list`.
fn check(textures: &[Texture], config: &BenchmarkConfig, list: &str) {
    compare(&generate(textures, config), list);
}

/// Compares a checksum list with the committed `list` (rewriting it under `UPDATE_CHECKSUMS`).
fn compare(got: &str, list: &str) {
    let path = datasets_dir().join(list);
    if std::env::var_os("UPDATE_CHECKSUMS").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap();
    let first_difference = got.lines().zip(expected.lines()).find(|(g, e)| g != e);
    assert!(
        got == expected,
        "{list} differs from the regenerated benchmark ({} vs {} lines; first difference: {first_difference:?}); \
         if the change is intended, rerun with UPDATE_CHECKSUMS=1 (see datasets/README.md) and bump \
         the benchmark version if the generator changed",
        got.lines().count(),
        expected.lines().count(),
    );
}

/// The photos of a texture set as `llb experiment` loads them: `v1` is the first three of
/// `BENCHMARK_V2_TEXTURES`, `v2` all five.
fn texture_set(set: &str) -> Vec<Texture> {
    let n = match set {
        "v1" => 3,
        "v2" => BENCHMARK_V2_TEXTURES.len(),
        other => panic!("unknown benchmark texture set `{other}`: teach this test its photos"),
    };
    BENCHMARK_V2_TEXTURES[..n]
        .iter()
        .map(|photo| {
            let bundle = if photo.cache_path.contains("mvtb") { "mvtb-photos" } else { "textures" };
            load_texture_photo(photo, &crate::cache::require_cached(photo.cache_path, bundle))
                .unwrap()
        })
        .collect()
}

#[test]
fn synthetic_texture_benchmark_matches_the_committed_list() {
    let textures: Vec<Texture> = NAMES
        .iter()
        .zip(1u64..)
        .map(|(name, seed)| synthetic_texture(name, seed, 512, 512))
        .collect();
    check(&textures, &BenchmarkConfig::llb_benchmark_v1(), "benchmark-v1-synthetic.sha256");
}

#[test]
fn photo_texture_benchmark_matches_the_committed_list() {
    let paths: Vec<PathBuf> = NAMES
        .iter()
        .map(|n| crate::cache::require_cached(&format!("images/textures/{n}.png"), "textures"))
        .collect();
    let textures: Vec<Texture> =
        NAMES.iter().zip(&paths).map(|(n, p)| load_texture(n, p).unwrap()).collect();
    check(&textures, &BenchmarkConfig::llb_benchmark_v1(), "benchmark-v1.sha256");
}

#[test]
fn photo_texture_benchmark_v2_matches_the_committed_list() {
    check(&texture_set("v2"), &BenchmarkConfig::llb_benchmark_v2(), "benchmark-v2.sha256");
}

/// `llb experiment` generates each `benchmark` data set of a manifest from its texture set with
/// its config (`ensure_benchmark`); this pins the bytes the committed tables were computed from.
/// The manifest is read loosely (a `datasets` list, or the older single `dataset`; other kinds
/// are skipped, their bytes are pinned by the asset checksums), so regenerating the list after a
/// manifest change is one command (`datasets/README.md`). With one benchmark data set the list is
/// that data set's `checksum_tree`; with several, each one's lines are prefixed `<index>/`, its
/// position in `datasets`.
#[test]
fn the_data_behind_the_committed_tables_matches_its_committed_list() {
    let path = datasets_dir().join("../xtask/manifests/benchmark.json");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let datasets = match (&manifest["datasets"], &manifest["dataset"]) {
        (serde_json::Value::Array(list), _) => list.clone(),
        (_, single @ serde_json::Value::Object(_)) => vec![single.clone()],
        _ => panic!("{} has neither `datasets` nor `dataset`", path.display()),
    };
    let benchmarks: Vec<(usize, &serde_json::Value)> =
        datasets.iter().enumerate().filter(|(_, d)| d["kind"] == "benchmark").collect();
    assert!(
        !benchmarks.is_empty(),
        "{} has no benchmark data set: pin the bytes of its data sets here instead",
        path.display()
    );
    let mut got = String::new();
    for &(index, dataset) in &benchmarks {
        let config: BenchmarkConfig = serde_json::from_value(dataset["config"].clone())
            .unwrap_or_else(|e| panic!("datasets[{index}].config of {}: {e}", path.display()));
        let set = dataset["textures"].as_str().unwrap_or("v1");
        let list = generate(&texture_set(set), &config);
        if benchmarks.len() == 1 {
            got.push_str(&list);
        } else {
            for line in list.lines() {
                let (sum, file) = line.split_once("  ").expect("sha256sum line");
                got.push_str(&format!("{sum}  {index}/{file}\n"));
            }
        }
    }
    compare(&got, "benchmark-tables.sha256");
}
