//! The benchmark generator's output is pinned by committed checksum lists:
//! - `datasets/benchmark-v1-synthetic.sha256`: `BenchmarkConfig::llb_benchmark_v1()` on synthetic
//!   textures made in code;
//! - `datasets/benchmark-v1.sha256`: the same config on the scikit-image texture photos;
//! - `datasets/benchmark-tables.sha256`: the data behind the committed result tables, i.e. the
//!   data set of the committed run manifest `xtask/manifests/benchmark.json`, on the photos.
//!
//! The photos come from the asset cache (found as `llb` finds it); a missing photo fails the
//! test, naming it. Set `UPDATE_CHECKSUMS=1` to rewrite a list after an intended change of the
//! generator or of the manifest's data set.

use llb_data::{
    BenchmarkConfig, Texture, checksum_tree, generate_benchmark, load_texture, synthetic_texture,
};
use std::path::{Path, PathBuf};

use super::cache::fetched;

/// The category names of benchmark v1, one per texture photo.
const NAMES: [&str; 3] = ["brick", "grass", "gravel"];

fn datasets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets")
}

/// Generates benchmark v1 from `textures` and compares its checksums with the committed `list`.
fn check(textures: &[Texture], list: &str) {
    check_config(textures, &BenchmarkConfig::llb_benchmark_v1(), list);
}

/// Generates `config` from `textures` and compares its checksums with the committed `list`.
fn check_config(textures: &[Texture], config: &BenchmarkConfig, list: &str) {
    let dir = tempfile::tempdir().unwrap();
    generate_benchmark(textures, config, dir.path()).unwrap();
    let got = checksum_tree(dir.path()).unwrap();
    let path = datasets_dir().join(list);
    if std::env::var_os("UPDATE_CHECKSUMS").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap();
    let first_difference = got.lines().zip(expected.lines()).find(|(g, e)| g != e);
    assert!(
        got == expected,
        "{list} differs from the regenerated benchmark ({} vs {} lines; first difference: {first_difference:?}); \
         if the change is intended, rerun with UPDATE_CHECKSUMS=1 and bump the benchmark version",
        got.lines().count(),
        expected.lines().count(),
    );
}

#[test]
fn synthetic_texture_benchmark_matches_the_committed_list() {
    let textures: Vec<Texture> = NAMES
        .iter()
        .zip(1u64..)
        .map(|(name, seed)| synthetic_texture(name, seed, 512, 512))
        .collect();
    check(&textures, "benchmark-v1-synthetic.sha256");
}

/// The three texture photos, from the asset cache.
fn photos() -> Vec<Texture> {
    NAMES
        .iter()
        .map(|n| load_texture(n, &fetched(&format!("images/textures/{n}.png"))).unwrap())
        .collect()
}

#[test]
fn photo_texture_benchmark_matches_the_committed_list() {
    check(&photos(), "benchmark-v1.sha256");
}

/// `llb experiment` generates a `benchmark` data set from the three photos with the manifest's
/// config (`ensure_benchmark`); this pins the bytes the committed tables were computed from.
#[test]
fn the_data_behind_the_committed_tables_matches_its_committed_list() {
    let manifest = datasets_dir().join("../xtask/manifests/benchmark.json");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let dataset = &manifest["dataset"];
    assert_eq!(
        dataset["kind"], "benchmark",
        "the committed tables now come from another kind of data set: pin its bytes here"
    );
    let config: BenchmarkConfig = serde_json::from_value(dataset["config"].clone()).unwrap();
    check_config(&photos(), &config, "benchmark-tables.sha256");
}
