//! Real data from the llb cache (`$LLB_CACHE`, else `~/.cache/llb`, as `llb` finds it), in the
//! layout `llb fetch` writes. A test fails, naming the missing asset, when the cache lacks it:
//! CI runs `llb fetch` first.

use llb_data::{
    ElpvCellType, ElpvConfig, FashionMnistConfig, read_elpv, read_elpv_labels, read_fashion_mnist,
};
use std::path::{Path, PathBuf};

/// The llb cache folder, found as `llb` finds it.
pub(crate) fn cache_root() -> PathBuf {
    match std::env::var_os("LLB_CACHE").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").expect("neither LLB_CACHE nor HOME is set");
            Path::new(&home).join(".cache/llb")
        }
    }
}

/// `relative` inside the cache; fails naming the asset and the fetch command when it is missing.
pub(crate) fn require_cached(relative: &str, bundle: &str) -> PathBuf {
    let path = cache_root().join(relative);
    assert!(
        path.exists(),
        "{} is missing: the `{bundle}` asset is not in the llb cache; run `llb fetch --only {bundle}` \
         (or `cargo run -p llb-cli -- fetch --only {bundle}`) first",
        path.display()
    );
    path
}

#[test]
fn real_fashion_mnist_gives_the_one_class_protocol_counts() {
    for split in ["train", "t10k"] {
        for kind in ["images-idx3", "labels-idx1"] {
            require_cached(
                &format!("images/fashion-mnist/{split}-{kind}-ubyte.gz"),
                "fashion-mnist",
            );
        }
    }
    let idx = cache_root().join("images/fashion-mnist");
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

#[test]
fn real_elpv_has_the_published_class_counts_and_splits_with_the_v2_preset() {
    let root = require_cached("images/elpv/labels.csv", "elpv").parent().unwrap().to_path_buf();
    let cells = read_elpv_labels(&root).unwrap();
    assert_eq!(cells.len(), 2624);
    for (cell_type, expected) in
        [(ElpvCellType::Mono, [588, 117, 56, 313]), (ElpvCellType::Poly, [920, 178, 50, 402])]
    {
        let mut counts = [0usize; 4];
        for cell in cells.iter().filter(|c| c.cell_type == cell_type) {
            counts[(cell.defect_probability * 3.0).round() as usize] += 1;
        }
        assert_eq!(counts, expected, "{cell_type} cells by defect probability 0, 1/3, 2/3, 1");
        let d = read_elpv(&root, &ElpvConfig::llb_v2(cell_type)).unwrap();
        assert_eq!((d.train.len(), d.test.len(), d.n_test_anomalous()), (300, 200, 100));
        assert_eq!(d.pool.len(), expected[3] - 100);
    }
}
