//! Real data from `$LLB_CACHE` (as `llb fetch` lays it out), checked only when present.

use llb_data::{FashionMnistConfig, read_fashion_mnist};
use std::path::Path;

#[test]
fn real_fashion_mnist_gives_the_one_class_protocol_counts() {
    let Some(cache) = std::env::var_os("LLB_CACHE") else { return };
    let idx = Path::new(&cache).join("images/fashion-mnist");
    if !idx.join("t10k-labels-idx1-ubyte.gz").is_file() {
        return;
    }
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
