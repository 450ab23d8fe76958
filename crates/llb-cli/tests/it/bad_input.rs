//! Bad input a user can give `llb`, through the binary: what it does with each (the rows of the
//! table in `docs/reliability.md`).

use super::pipeline::{scratch_cache, tiny_benchmark};
use llb_data::DefectKind;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `llb`; returns success, the last stdout line parsed as JSON (if any) and stderr.
fn llb(args: &[&str]) -> (bool, Option<serde_json::Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_llb"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let json = stdout.lines().last().and_then(|l| serde_json::from_str(l).ok());
    (out.status.success(), json, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A folder of 8 good training images (from a tiny benchmark in `dir/bench`) plus `extra` files.
fn train_folder(dir: &Path, extra: &[(&str, &[u8])]) -> PathBuf {
    let bench = dir.join("bench");
    tiny_benchmark(&bench, 17, (56, 128), (8, 1, 1), vec![DefectKind::Stain]);
    let folder = dir.join("train");
    std::fs::create_dir_all(&folder).unwrap();
    for entry in std::fs::read_dir(bench.join("tex/train/good")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, folder.join(path.file_name().unwrap())).unwrap();
    }
    for (name, bytes) in extra {
        std::fs::write(folder.join(name), bytes).unwrap();
    }
    folder
}

#[test]
fn corrupt_truncated_and_empty_images_are_skipped_and_named_or_stop_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let cache = scratch_cache(dir.path());
    let train = train_folder(dir.path(), &[]);
    let png = std::fs::read(train.join("000.png")).unwrap();
    let bad: [(&str, &[u8]); 3] = [
        ("zz-empty.png", b""),
        ("zz-truncated.png", &png[..png.len() / 2]),
        ("zz-garbage.png", b"this is not an image"),
    ];
    for (name, bytes) in bad {
        std::fs::write(train.join(name), bytes).unwrap();
    }
    let out = dir.path().join("model");
    let (train, out, cache) =
        (train.to_str().unwrap(), out.to_str().unwrap(), cache.to_str().unwrap());
    let common =
        ["fit", "--train", train, "--out", out, "-k", "2", "--image-size", "56", "--cache", cache];
    let (ok, summary, stderr) = llb(&common);
    assert!(ok, "{stderr}");
    let summary = summary.unwrap();
    assert_eq!(
        (summary["n_train"].as_u64(), summary["n_skipped"].as_u64()),
        (Some(8), Some(3)),
        "{summary}"
    );
    let skipped: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(out).join("skipped_images.json")).unwrap(),
    )
    .unwrap();
    for (name, _) in bad {
        let reason = skipped[name].as_str().unwrap_or_else(|| panic!("{name} not in {skipped}"));
        assert!(reason.contains(name), "{name}: {reason}");
    }
    let (ok, _, stderr) = llb(&[&common[..], &["--on-bad-image", "fail"]].concat());
    assert!(!ok);
    assert!(stderr.contains("zz-") && stderr.contains("--on-bad-image skip"), "{stderr}");
}

#[test]
fn an_empty_folder_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = dir.path().join("model");
    let (ok, _, stderr) =
        llb(&["fit", "--train", empty.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains(&format!("no images found in {}", empty.display())), "{stderr}");
}

/// K larger than the training set, a keep fraction outside (0, 1] and α outside [0, 1) are
/// refused with the value named, and nothing is written.
#[test]
fn settings_out_of_range_are_refused_naming_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let cache = scratch_cache(dir.path());
    let train = train_folder(dir.path(), &[]);
    let data = format!("mvtec:{}", dir.path().join("bench").display());
    let out = dir.path().join("model");
    let (train, out, cache) =
        (train.to_str().unwrap(), out.to_str().unwrap(), cache.to_str().unwrap());
    let base = ["fit", "--out", out, "--image-size", "56", "--cache", cache];
    let cases: [(&[&str], &str); 4] = [
        (&["--train", train, "-k", "20"], "k = 20"),
        (&["--train", train, "--selection", "keep-fraction(1.5)"], "1.5"),
        (&["--train", train, "--selection", "keep-fraction(0)"], "keep_fraction"),
        (&["--data", &data, "--category", "tex", "--contamination", "1.5"], "1.5"),
    ];
    for (args, needle) in cases {
        let (ok, _, stderr) = llb(&[&base[..], args].concat());
        assert!(!ok, "{args:?} was accepted");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!Path::new(out).join("llb.json").exists(), "{args:?} wrote a model");
    }
}

/// A misspelt fusion or selection rule exits 2 naming the rule and the known names, before any
/// image is read: the cache gets no feature and no stage-1 entry, and no output is written.
#[test]
fn a_misspelt_rule_exits_2_naming_the_known_rules_before_any_feature() {
    let dir = tempfile::tempdir().unwrap();
    let cache = scratch_cache(dir.path());
    let train = train_folder(dir.path(), &[]);
    let out = dir.path().join("model");
    let cases: [(&str, &str, &[&str]); 2] = [
        ("--selection", "keep-fractoin(0.8)", &["keep-fraction", "mad"]),
        ("--fusion", "meen", &["mean", "median"]),
    ];
    for (flag, rule, known) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_llb"))
            .args(["fit", "--train", train.to_str().unwrap(), "--out", out.to_str().unwrap()])
            .args(["--cache", cache.to_str().unwrap(), flag, rule])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag} {rule}: {stderr}");
        let rule_name = rule.split('(').next().unwrap();
        assert!(stderr.contains(rule_name), "{flag} {rule}: the rule is not named: {stderr}");
        for name in known {
            assert!(stderr.contains(name), "{flag} {rule}: `{name}` is not listed: {stderr}");
        }
        for computed in ["features", "stage1"] {
            assert!(!cache.join(computed).exists(), "{flag} {rule}: {computed}/ was written");
        }
        assert!(!out.exists(), "{flag} {rule}: {} was written", out.display());
    }
}

/// File names with commas, quotes, line-break-free non-ASCII and spaces survive `scores.csv` and
/// `purification.csv`: both are written by a CSV writer and read back here by a CSV reader.
#[test]
fn awkward_file_names_round_trip_through_the_csv_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let cache = scratch_cache(dir.path());
    let train = train_folder(dir.path(), &[]);
    let names = ["a,b.png", "say \"cheese\".png", "naïve ü 日本.png", "semi;colon, \"both\".png"];
    for (i, name) in names.iter().enumerate() {
        std::fs::rename(train.join(format!("00{i}.png")), train.join(name)).unwrap();
    }
    let (model, predictions) = (dir.path().join("model"), dir.path().join("predictions"));
    let (train_s, cache_s) = (train.to_str().unwrap(), cache.to_str().unwrap());
    let fit = ["fit", "--train", train_s, "--out", model.to_str().unwrap(), "-k", "2"];
    let (ok, _, stderr) = llb(&[&fit[..], &["--image-size", "56", "--cache", cache_s]].concat());
    assert!(ok, "{stderr}");
    let predict = ["predict", "--model", model.to_str().unwrap(), "--input", train_s];
    let (ok, _, stderr) = llb(&[
        &predict[..],
        &["--out", predictions.to_str().unwrap(), "--cache", cache_s],
    ]
    .concat());
    assert!(ok, "{stderr}");
    for (csv, id_col, path_col) in [
        (model.join("purification.csv"), "sample_id", "path"),
        (predictions.join("scores.csv"), "sample_id", "path"),
    ] {
        let mut reader = csv::Reader::from_path(&csv).unwrap();
        let header = reader.headers().unwrap().clone();
        let (i, p) = (
            header.iter().position(|h| h == id_col).unwrap(),
            header.iter().position(|h| h == path_col).unwrap(),
        );
        let rows: Vec<(String, String)> = reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                assert_eq!(r.len(), header.len(), "{}: {r:?}", csv.display());
                (r[i].to_owned(), r[p].to_owned())
            })
            .collect();
        assert_eq!(rows.len(), 8, "{}", csv.display());
        for name in names {
            let (_, path) = rows
                .iter()
                .find(|(id, _)| id == name)
                .unwrap_or_else(|| panic!("{}: no row for {name:?} in {rows:?}", csv.display()));
            assert_eq!(Path::new(path), train.join(name), "{}", csv.display());
        }
    }
}
