//! The benchmark generator's output is pinned by committed checksum lists:
//! `datasets/benchmark-v1-synthetic.sha256` (`llb_benchmark_v1()` on synthetic textures made in
//! code), `datasets/benchmark-v1.sha256` (v1 on the scikit-image photos) and
//! `datasets/benchmark-v2.sha256` (`llb_benchmark_v2()` on `BENCHMARK_V2_TEXTURES`: the
//! scikit-image photos and the cropped mvtb-data photos). The photos come from the llb cache; a
//! test fails, naming them, when they are missing. Set `UPDATE_CHECKSUMS=1` to
//! rewrite a list after an intended change of the generator.

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

/// Generates the benchmark from `textures` with `config` and compares its checksums with the
/// committed `list`.
fn check(textures: &[Texture], config: &BenchmarkConfig, list: &str) {
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
    let textures: Vec<Texture> = BENCHMARK_V2_TEXTURES
        .iter()
        .map(|photo| {
            let bundle = if photo.cache_path.contains("mvtb") { "mvtb-photos" } else { "textures" };
            load_texture_photo(photo, &crate::cache::require_cached(photo.cache_path, bundle))
                .unwrap()
        })
        .collect();
    check(&textures, &BenchmarkConfig::llb_benchmark_v2(), "benchmark-v2.sha256");
}
