//! The library route: `crates/llb-pipeline/examples/fit_predict.rs` (the method in about 30
//! lines of library code) gives the model and the scores that `llb fit` + `llb predict` give on
//! the same folders with their default options, bit for bit.

use super::pipeline::{files_under, llb, scratch_cache, tiny_benchmark};
use llb_data::DefectKind;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The example's executable: `cargo test --workspace` builds every example next to the test
/// binaries (`target/<profile>/examples/`).
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/it-…");
    let binary = profile_dir.join("examples").join("fit_predict");
    assert!(
        binary.is_file(),
        "{} is missing: run the tests with `cargo test --workspace` (or build it with `cargo \
         build -p llb-pipeline --example fit_predict`)",
        binary.display()
    );
    binary
}

#[test]
fn the_library_example_fits_and_scores_as_llb_fit_and_predict() {
    let dir = tempfile::tempdir().unwrap();
    let cache = scratch_cache(dir.path());
    let data = dir.path().join("data");
    tiny_benchmark(&data, 11, (128, 256), (12, 3, 3), vec![DefectKind::Stain]);
    let train = data.join("tex/train");
    let test = data.join("tex/test");
    let (cli_model, lib_model) = (dir.path().join("cli-model"), dir.path().join("lib-model"));
    let predictions = dir.path().join("predictions");
    let path = |p: &Path| p.to_str().unwrap().to_string();
    llb(&["fit", "--train", &path(&train), "--out", &path(&cli_model), "--cache", &path(&cache)]);
    let predict = llb(&[
        "predict",
        "--model",
        &path(&cli_model),
        "--input",
        &path(&test),
        "--out",
        &path(&predictions),
        "--cache",
        &path(&cache),
    ]);

    let out = Command::new(example_binary())
        .args([&train, &test, &lib_model, &cache])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "fit_predict failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let library: Vec<(String, String, String)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let mut fields = line.rsplitn(3, ',');
            let anomalous = fields.next().unwrap().to_string();
            let score = fields.next().unwrap().to_string();
            (fields.next().unwrap().to_string(), score, anomalous)
        })
        .collect();

    // The same model: the card and every detector file, byte for byte.
    let (cli_files, lib_files) = (files_under(&cli_model), files_under(&lib_model));
    for (name, bytes) in &lib_files {
        assert!(cli_files.get(name) == Some(bytes), "{name:?} differs from `llb fit`'s");
    }
    assert!(lib_files.contains_key(Path::new("llb.json")), "{:?}", lib_files.keys());
    assert!(lib_files.keys().any(|p| p.starts_with("detector")), "{:?}", lib_files.keys());

    // The same scores (shortest round-trip decimals, so equal text is equal bits) and verdicts.
    let mut csv = csv::Reader::from_path(predictions.join("scores.csv")).unwrap();
    let cli: Vec<(String, String, String)> = csv
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), r[2].to_string(), (&r[3] == "anomalous").to_string())
        })
        .collect();
    assert_eq!(cli.len(), predict["n_images"].as_u64().unwrap() as usize);
    assert_eq!(cli.len(), 6, "3 good and 3 defective test images");
    assert_eq!(library, cli);
}
