//! `llb experiment` on a data set in Real-IAD's layout, built from a tiny generated benchmark:
//! every benchmark image becomes one camera view, five views make one physical sample, and the
//! FUIAD json splits move whole anomalous samples into training.

use super::pipeline::{llb, scratch_cache, tiny_benchmark};
use llb_data::{DefectKind, Sample, read_mvtec};
use std::path::Path;

const VIEWS: usize = 5;
const CATEGORY: &str = "tex";

/// Copies `samples` into `realiad_1024/tex/` as 5-view samples numbered from `first`, and
/// returns their json entries (`OK` samples, or `NG/AK` ones with masks).
fn place(root: &Path, samples: &[Sample], first: usize) -> Vec<serde_json::Value> {
    let mut entries = Vec::new();
    for (i, sample) in samples.iter().enumerate() {
        let (number, view) = (first + i / VIEWS, i % VIEWS + 1);
        let (status, folder) =
            if sample.is_anomalous() { ("NG", "NG/AK".to_string()) } else { ("OK", "OK".into()) };
        let stem = format!("{CATEGORY}_{number:04}_{status}_C{view}_20260101");
        let image = format!("{folder}/S{number:04}/{stem}.png");
        let base = root.join("realiad_1024").join(CATEGORY);
        std::fs::create_dir_all(base.join(&image).parent().unwrap()).unwrap();
        std::fs::copy(&sample.image_path, base.join(&image)).unwrap();
        let mask = sample.mask_path.as_ref().map(|m| {
            let mask = format!("{folder}/S{number:04}/{stem}_mask.png");
            std::fs::copy(m, base.join(&mask)).unwrap();
            mask
        });
        let class = if sample.is_anomalous() { "AK" } else { "OK" };
        entries.push(serde_json::json!({
            "category": CATEGORY, "anomaly_class": class, "image_path": image, "mask_path": mask
        }));
    }
    entries
}

#[test]
fn experiment_runs_on_realiad_fuiad_splits_with_group_aware_purification() {
    let dir = tempfile::tempdir().unwrap();
    let cache = scratch_cache(dir.path());
    let bench = dir.path().join("bench");
    tiny_benchmark(&bench, 11, (56, 192), (20, 10, 20), vec![DefectKind::Stain, DefectKind::Hole]);
    let data = read_mvtec(&bench, CATEGORY).unwrap();
    let (good_test, bad_test): (Vec<Sample>, Vec<Sample>) =
        data.test.iter().cloned().partition(|s| !s.is_anomalous());

    // 4 OK training samples (20 views), 2 OK and 4 NG test samples; the 0.2 split moves one NG
    // sample (5 views) into training: 5 of 25 training images anomalous.
    let root = dir.path().join("realiad");
    let train_ok = place(&root, &data.train, 1);
    let test_ok = place(&root, &good_test, 10);
    let ng = place(&root, &bad_test, 100);
    let splits = [("0.0", 0), ("0.2", VIEWS)];
    for (ratio, moved) in splits {
        let train: Vec<_> = train_ok.iter().chain(&ng[..moved]).cloned().collect();
        let test: Vec<_> = test_ok.iter().chain(&ng[moved..]).cloned().collect();
        let json = serde_json::json!({"meta": {"prefix": ""}, "train": train, "test": test});
        let folder = root.join(format!("realiad_jsons_fuiad_{ratio}"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(format!("{CATEGORY}.json")), json.to_string()).unwrap();
    }

    let backbone = serde_json::json!({
        "encoder": {"kind": "dinov2-vits14", "layers": [3, 5], "image_size_px": 56},
        "detector": {"kind": "patchcore", "coreset_fraction": 0.2, "projection_dim": 64,
            "reweight_neighbours": null, "blur_sigma_px": 2.0, "seed": 0},
        "purify": {
            "stage1": {"partition": {"k": 2, "seed": 0, "mode": "group-aware"},
                "screening_score": {"top-mean": {"fraction": 0.01}}, "batch_size": 16},
            "fusion": "mean", "selection": "keep-fraction(0.8)"},
        "test_score": "max", "calibration_seed": 0
    });
    let manifest = serde_json::json!({
        "name": "realiad-fixture",
        "dataset": {"kind": "realiad", "root": root, "categories": [CATEGORY]},
        "contamination_ratios": [0.0, 0.2], "seeds": [0],
        "backbones": [{"name": "patchcore", "settings": backbone}],
        "ablation_ratios": [], "ablations": []
    });
    let manifest_path = dir.path().join("manifest.json");
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let out = dir.path().join("results");
    llb(&[
        "experiment",
        "--manifest",
        manifest_path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
    ]);

    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("realiad-fixture.json")).unwrap())
            .unwrap();
    let rows = results["rows"].as_array().unwrap();
    let methods: Vec<(f64, &str)> = rows
        .iter()
        .map(|r| (r["contamination_ratio"].as_f64().unwrap(), r["method"].as_str().unwrap()))
        .collect();
    assert_eq!(
        methods,
        [
            (0.0, "patchcore"),
            (0.0, "patchcore+llb(keep-fraction(0.8))"),
            (0.2, "patchcore"),
            (0.2, "patchcore+llb(keep-fraction(0.8))")
        ]
    );
    for row in rows {
        let alpha = row["contamination_ratio"].as_f64().unwrap();
        // The split's own contamination, read from its hidden labels.
        let (n_train, n_anomalous) = if alpha == 0.0 { (20, 0) } else { (25, 5) };
        assert_eq!(
            (row["n_train"].as_u64(), row["n_train_anomalous"].as_u64()),
            (Some(n_train), Some(n_anomalous))
        );
        assert_eq!(row["n_test"].as_u64(), Some(if alpha == 0.0 { 30 } else { 25 }));
        for key in ["i_auroc", "p_aupro"] {
            let v = row[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {row}"));
            assert!((0.0..=1.0).contains(&v), "{key} = {v}");
        }
        if row["method"].as_str().unwrap().contains("+llb") {
            // keep-fraction(0.8) keeps ⌊0.8·N⌋ images.
            assert_eq!(row["n_kept"].as_u64(), Some(n_train * 4 / 5));
        }
    }
}
