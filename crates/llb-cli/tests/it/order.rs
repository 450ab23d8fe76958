//! Results that depend on the set of images, not on row order or names: purification that keeps
//! everything equals the plain fit bit for bit, and `llb experiment` reuses exactly the rows
//! whose full settings did not change.

use super::pipeline::{llb, scratch_cache, tiny_benchmark};
use llb_data::DefectKind;
use std::path::Path;

/// The final model's tensors, as bytes.
fn model_bytes(model: &Path) -> Vec<u8> {
    let dir = model.join("detector");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no tensors in {}", dir.display());
    files.iter().flat_map(|f| std::fs::read(f).unwrap()).collect()
}

/// Regression test for the row-order artefact of the first benchmark tables (issue "Evidence
/// that purification works"): stage 2 received the kept images in fused-score order and
/// PatchCore's coreset started from a row position, so `keep-fraction(1.0)` differed from the
/// plain fit by up to 9 I-AUROC points. Both must now give the same model, bit for bit.
#[test]
fn keeping_every_image_equals_the_plain_fit_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let cache = scratch_cache(dir.path());
    let data = dir.path().join("data");
    tiny_benchmark(&data, 3, (56, 160), (14, 2, 6), vec![DefectKind::Stain, DefectKind::Hole]);
    let (cache, data) = (cache.to_str().unwrap(), format!("mvtec:{}", data.display()));
    let fit = |out: &Path, extra: &[&str]| {
        let out = out.to_str().unwrap();
        let args = [
            &["fit", "--data", &data, "--category", "tex", "--contamination", "0.25"][..],
            &["--out", out, "--cache", cache, "--image-size", "56", "-k", "3"],
            extra,
        ]
        .concat();
        llb(&args)
    };
    let plain = dir.path().join("plain");
    let all = dir.path().join("keep-all");
    fit(&plain, &["--no-purify"]);
    let kept = fit(&all, &["--selection", "keep-fraction(1.0)"]);
    assert_eq!(kept["n_kept"], kept["n_train"]);
    assert!(model_bytes(&plain) == model_bytes(&all), "keep-fraction(1.0) != --no-purify");
}

/// An unchanged manifest reuses every row; editing the selection rule recomputes exactly the
/// purified rows (the baselines' settings did not change), and the results list only the
/// current manifest's rows.
#[test]
fn experiment_rows_are_keyed_by_their_full_settings() {
    let dir = tempfile::tempdir().unwrap();
    let cache = scratch_cache(dir.path());
    let bench = dir.path().join("bench");
    tiny_benchmark(&bench, 9, (56, 160), (10, 2, 6), vec![DefectKind::Stain]);
    let backbone = |selection: &str| {
        serde_json::json!({"name": "patchcore", "settings": {
            "encoder": {"kind": "dinov2-vits14", "layers": [3, 5], "image_size_px": 56},
            "detector": {"kind": "patchcore", "coreset_fraction": 0.2, "projection_dim": 32,
                "reweight_neighbours": null, "blur_sigma_px": 2.0, "seed": 0},
            "purify": {
                "stage1": {"partition": {"k": 2, "seed": 0, "mode": "random"},
                    "screening_score": {"top-mean": {"fraction": 0.01}}, "batch_size": 16},
                "fusion": "mean", "selection": selection},
            "test_score": "max", "calibration_seed": 0}})
    };
    let run = |selection: &str| {
        let manifest = serde_json::json!({
            "name": "keys",
            "dataset": {"kind": "mvtec", "root": bench, "categories": ["tex"]},
            "contamination_ratios": [0.0, 0.2], "seeds": [0, 1],
            "backbones": [backbone(selection)], "ablation_ratios": [], "ablations": []
        });
        let path = dir.path().join("manifest.json");
        std::fs::write(&path, manifest.to_string()).unwrap();
        let out = dir.path().join("results");
        llb(&[
            "experiment",
            "--manifest",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
        ])
    };
    // 1 category × 2 α × 2 seeds × (plain, purified) = 8 rows.
    let first = run("keep-fraction(0.8)");
    assert_eq!((first["rows"].as_u64(), first["computed"].as_u64()), (Some(8), Some(8)));
    let again = run("keep-fraction(0.8)");
    assert_eq!((again["rows"].as_u64(), again["computed"].as_u64()), (Some(8), Some(0)));
    let edited = run("keep-fraction(0.6)");
    assert_eq!((edited["rows"].as_u64(), edited["computed"].as_u64()), (Some(8), Some(4)));
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("results/keys.json")).unwrap(),
    )
    .unwrap();
    let methods: std::collections::BTreeSet<&str> =
        results["rows"].as_array().unwrap().iter().map(|r| r["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["patchcore", "patchcore+llb(keep-fraction(0.6))"].into());
}
