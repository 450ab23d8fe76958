//! The benchmark generator's output for `BenchmarkConfig::llb_benchmark_v1()` is pinned by
//! `datasets/benchmark-v1-synthetic.sha256` (synthetic textures made in code: always checked) and
//! `datasets/benchmark-v1.sha256` (the scikit-image texture photos from the llb cache; the test
//! fails, naming them, when they are missing). Set `UPDATE_CHECKSUMS=1` to
//! rewrite a list after an intended change of the generator.

use llb_data::{
    BenchmarkConfig, Texture, checksum_tree, generate_benchmark, load_texture, synthetic_texture,
};
use std::path::{Path, PathBuf};

/// The category names of benchmark v1, one per texture photo.
const NAMES: [&str; 3] = ["brick", "grass", "gravel"];

fn datasets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets")
}

/// Generates benchmark v1 from `textures` and compares its checksums with the committed `list`.
fn check(textures: &[Texture], list: &str) {
    let dir = tempfile::tempdir().unwrap();
    generate_benchmark(textures, &BenchmarkConfig::llb_benchmark_v1(), dir.path()).unwrap();
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

#[test]
fn photo_texture_benchmark_matches_the_committed_list() {
    let paths: Vec<PathBuf> = NAMES
        .iter()
        .map(|n| crate::cache::require_cached(&format!("images/textures/{n}.png"), "textures"))
        .collect();
    let textures: Vec<Texture> =
        NAMES.iter().zip(&paths).map(|(n, p)| load_texture(n, p).unwrap()).collect();
    check(&textures, "benchmark-v1.sha256");
}
