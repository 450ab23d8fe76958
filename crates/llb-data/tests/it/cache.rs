//! Real data from the asset cache (as `llb fetch` lays it out). The cache is found the way `llb`
//! finds it, and a missing asset fails the test, naming it: CI fetches every asset first, so a
//! test here never passes having tested nothing.

use llb_data::{FashionMnistConfig, read_fashion_mnist};
use std::path::PathBuf;

/// The asset cache `llb` uses: `$LLB_CACHE` when set and non-empty, else `$HOME/.cache/llb`
/// (the rule of `llb_assets::AssetCache::from_env`).
pub(crate) fn asset_cache() -> PathBuf {
    match std::env::var_os("LLB_CACHE").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").filter(|v| !v.is_empty()).expect("HOME is set");
            PathBuf::from(home).join(".cache").join("llb")
        }
    }
}

/// The fetched file `relative` (to the cache); fails naming it and the fix when it is missing.
pub(crate) fn fetched(relative: &str) -> PathBuf {
    let path = asset_cache().join(relative);
    assert!(
        path.is_file(),
        "{} is missing: this test needs the fetched assets; run `cargo run -p llb-cli -- fetch` \
         (or set LLB_CACHE to the cache that holds them)",
        path.display()
    );
    path
}

#[test]
fn real_fashion_mnist_gives_the_one_class_protocol_counts() {
    for split in ["train", "t10k"] {
        for kind in ["images-idx3", "labels-idx1"] {
            fetched(&format!("images/fashion-mnist/{split}-{kind}-ubyte.gz"));
        }
    }
    let idx = asset_cache().join("images/fashion-mnist");
    let out = tempfile::tempdir().unwrap();
    let config = FashionMnistConfig { normal_class: 7, contamination_ratio: 0.1, seed: 0 };
    let d = read_fashion_mnist(&idx, out.path(), &config).unwrap();
    assert_eq!(d.category, "fashion-mnist-sneaker");
    // 6,000 sneakers per training split, round(0.1 · 6000 / 0.9) = 667 others mixed in.
    assert_eq!((d.train.len(), d.n_train_anomalous()), (6667, 667));
    assert_eq!((d.test.len(), d.n_test_anomalous()), (10_000, 9000));
    let report = d.contamination.unwrap();
    assert!((report.achieved_ratio - 667.0 / 6667.0).abs() < 1e-12);
}
