//! Generator → reader → contamination → preprocessing, through the public API only.

use llb_data::{
    BenchmarkConfig, ContaminationConfig, DefectKind, PreprocessConfig, TileSource, contaminate,
    generate_benchmark, prepare_images, prepare_masks, read_mvtec, synthetic_texture,
};

#[test]
fn benchmark_category_goes_through_contamination_and_preprocessing() {
    let dir = tempfile::tempdir().unwrap();
    let config = BenchmarkConfig {
        seed: 3,
        tile_size_px: 64,
        n_train_good: 12,
        n_test_good: 4,
        n_test_defective: 12,
        defect_kinds: vec![DefectKind::Scratch, DefectKind::Hole, DefectKind::Warp],
        tile_source: TileSource::DisjointHalves,
        n_pool_defective: 0,
        defect_catalogue: None,
    };
    let textures = [synthetic_texture("tex", 9, 96, 160)];
    generate_benchmark(&textures, &config, dir.path()).unwrap();
    let clean = read_mvtec(dir.path(), "tex").unwrap();
    let noisy =
        contaminate(clean, &ContaminationConfig { contamination_ratio: 0.25, seed: 1 }).unwrap();
    assert_eq!((noisy.train.len(), noisy.n_train_anomalous()), (16, 4));
    assert_eq!((noisy.test.len(), noisy.n_test_anomalous()), (12, 8));

    let preprocess = PreprocessConfig::imagenet(64, 56);
    let images = prepare_images(&noisy.train, &preprocess).unwrap();
    assert!(images.failures.is_empty());
    assert_eq!(images.items.len(), 16);
    assert!(
        images
            .items
            .iter()
            .all(|p| p.data.len() == 3 * 56 * 56 && p.data.iter().all(|v| v.is_finite()))
    );
    let ids: Vec<_> = images.items.iter().map(|p| p.id.clone()).collect();
    let expected: Vec<_> = noisy.train.iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids, expected);

    let masks = prepare_masks(&noisy.test, &preprocess).unwrap();
    assert!(masks.failures.is_empty());
    assert_eq!(masks.items.len(), 12);
    let defect_pixels = |i: usize| masks.items[i].data.iter().filter(|&&m| m == 1).count();
    for (i, sample) in noisy.test.iter().enumerate() {
        assert_eq!(defect_pixels(i) > 0, sample.is_anomalous(), "{}", sample.id);
    }
}
