//! The whole pipeline through the binary: fit with purification on a contaminated tiny
//! benchmark, predict on new images, evaluate on the test split.

use llb_data::{BenchmarkConfig, DefectKind, TileSource, generate_benchmark, synthetic_texture};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The real asset cache (`$LLB_CACHE`, else `~/.cache/llb`), which must hold the DINOv2 weights.
fn asset_cache() -> PathBuf {
    std::env::var_os("LLB_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/llb")
    })
}

/// A scratch cache whose `weights/` points at the real one, so test features stay out of it.
pub(crate) fn scratch_cache(dir: &Path) -> PathBuf {
    let weights = asset_cache().join("weights");
    assert!(
        weights.join("dinov2-vits14.safetensors").is_file(),
        "{} has no DINOv2 weights: run `cargo run -p llb-cli -- fetch` first",
        weights.display()
    );
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::os::unix::fs::symlink(&weights, cache.join("weights")).unwrap();
    cache
}

/// Generates a one-category benchmark (`tex`, whole-photo tiles) into `out` from a synthetic
/// texture photo of `texture_px` pixels, with `(train, good test, defective test)` images.
pub(crate) fn tiny_benchmark(
    out: &Path,
    seed: u64,
    (tile_size_px, texture_px): (u32, u32),
    (n_train_good, n_test_good, n_test_defective): (usize, usize, usize),
    defect_kinds: Vec<DefectKind>,
) {
    let config = BenchmarkConfig {
        seed,
        tile_size_px,
        n_train_good,
        n_test_good,
        n_test_defective,
        defect_kinds,
        tile_source: TileSource::WholePhoto,
        n_pool_defective: 0,
        defect_catalogue: None,
    };
    let texture = synthetic_texture("tex", seed, texture_px, texture_px);
    generate_benchmark(&[texture], &config, out).unwrap();
}

/// Every file under `dir`, by path relative to it, with its bytes.
pub(crate) fn files_under(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(path.strip_prefix(dir).unwrap().to_path_buf(), bytes);
            }
        }
    }
    out
}

pub(crate) fn llb(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_llb"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "llb {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().expect("llb printed a JSON line")).unwrap()
}

#[test]
fn fit_predict_eval_on_a_contaminated_benchmark() {
    let dir = tempfile::tempdir().unwrap();
    let cache = scratch_cache(dir.path());
    let data = dir.path().join("data");
    let kinds = vec![DefectKind::Stain, DefectKind::Hole, DefectKind::CutPaste];
    tiny_benchmark(&data, 5, (112, 256), (16, 6, 12), kinds);
    let (cache, data) = (cache.to_str().unwrap(), format!("mvtec:{}", data.display()));
    let model = dir.path().join("model");
    let model = model.to_str().unwrap();
    let common = ["--cache", cache, "--image-size", "112"];
    let fit = llb(&[
        &[
            "fit",
            "--data",
            &data,
            "--category",
            "tex",
            "--contamination",
            "0.2",
            "--out",
            model,
            "-k",
            "2",
        ][..],
        &["--selection", "keep-fraction(0.8)"],
        &common,
    ]
    .concat());
    // 16 normal + round(0.2·16/0.8) = 4 anomalous training images; the default keeps 80 %.
    assert_eq!(fit["n_train"], 20);
    assert_eq!(fit["n_kept"], 16);
    assert!(fit["threshold"].as_f64().unwrap() > 0.0);
    let purification = std::fs::read_to_string(Path::new(model).join("purification.csv")).unwrap();
    assert_eq!(purification.lines().count(), 1 + 20);
    let purity: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(model).join("purity.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(purity["purity"]["n_anomalous"], 4);
    assert!(purity["screening"]["auroc"].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)));

    let new_images = dir.path().join("data/tex/test/stain");
    let predictions = dir.path().join("predictions");
    let predict = llb(&[
        "predict",
        "--model",
        model,
        "--input",
        new_images.to_str().unwrap(),
        "--out",
        predictions.to_str().unwrap(),
        "--cache",
        cache,
        "--save-maps",
    ]);
    let n = predict["n_images"].as_u64().unwrap() as usize;
    assert!(n > 0);
    let scores = std::fs::read_to_string(predictions.join("scores.csv")).unwrap();
    assert_eq!(scores.lines().count(), 1 + n);
    assert_eq!(std::fs::read_dir(predictions.join("overlays")).unwrap().count(), n);
    assert_eq!(std::fs::read_dir(predictions.join("maps")).unwrap().count(), n);

    let eval = llb(&[
        "eval",
        "--model",
        model,
        "--data",
        &data,
        "--category",
        "tex",
        "--contamination",
        "0.2",
        "--cache",
        cache,
    ]);
    for key in ["i_auroc", "i_ap", "i_f1max", "p_auroc", "p_ap", "p_f1max", "p_aupro"] {
        let v = eval[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {eval}"));
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
    }
    // Stains and holes on a smooth synthetic texture are easy: far above chance.
    assert!(eval["i_auroc"].as_f64().unwrap() > 0.7, "{eval}");
}

/// `--detector dinomaly` through both stages: sub-models and the final model are Dinomaly
/// decoders (1 epoch at 56 px, so the test stays fast), saved, reloaded and used by `predict`.
#[test]
fn fit_and_predict_with_dinomaly_as_the_backbone() {
    let dir = tempfile::tempdir().unwrap();
    let cache = scratch_cache(dir.path());
    let data = dir.path().join("data");
    tiny_benchmark(&data, 7, (56, 128), (12, 2, 4), vec![DefectKind::Stain]);
    let (cache, data) = (cache.to_str().unwrap(), format!("mvtec:{}", data.display()));
    let model = dir.path().join("model");
    let model = model.to_str().unwrap();
    let fit = llb(&[
        "fit",
        "--data",
        &data,
        "--category",
        "tex",
        "--contamination",
        "0.25",
        "--out",
        model,
        "-k",
        "2",
        "--detector",
        "dinomaly",
        "--epochs",
        "1",
        "--image-size",
        "56",
        "--cache",
        cache,
    ]);
    assert_eq!(fit["n_train"], 16);
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(model).join("llb.json")).unwrap())
            .unwrap();
    assert_eq!(card["settings"]["detector"]["kind"], "dinomaly");
    assert_eq!(card["settings"]["detector"]["length"]["epochs"], 1.0);
    assert_eq!(card["settings"]["encoder"]["layers"], serde_json::json!([2, 3, 4, 5, 6, 7, 8, 9]));

    let predictions = dir.path().join("predictions");
    let predict = llb(&[
        "predict",
        "--model",
        model,
        "--input",
        dir.path().join("data/tex/test/stain").to_str().unwrap(),
        "--out",
        predictions.to_str().unwrap(),
        "--cache",
        cache,
    ]);
    assert_eq!(predict["n_images"], 4);
}
