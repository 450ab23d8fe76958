//! `llb --device` run as a user would: `cpu` works, a malformed device is refused by the parser,
//! and in a build without the `cuda` feature `--device cuda` stops with one error saying so
//! (exit code 2, as for other bad input) before the subcommand reads anything.

use std::process::{Command, Output};

fn llb(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_llb")).args(args).output().expect("running the llb binary")
}

/// `llb <device args> metrics --image-scores <csv>` on a small valid CSV.
fn metrics_with(device_args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("scores.csv");
    std::fs::write(&csv, "id,label,score\na,0,0.1\nb,1,0.9\n").unwrap();
    let csv = csv.to_str().unwrap();
    llb(&[device_args, &["metrics", "--image-scores", csv]].concat())
}

#[test]
fn cpu_is_the_default_and_can_be_named_before_or_after_the_subcommand() {
    for out in [metrics_with(&[]), metrics_with(&["--device", "cpu"])] {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["i_auroc"], 1.0);
    }
    // After the subcommand too (a global option): the missing CSV is what fails, not the device.
    let out = llb(&["metrics", "--device", "cpu", "--image-scores", "/no/such/scores.csv"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/no/such/scores.csv"), "{stderr}");
}

#[test]
fn a_malformed_device_is_refused_by_the_parser() {
    for bad in ["gpu", "cuda:x", "cuda:"] {
        let out = metrics_with(&["--device", bad]);
        assert_eq!(out.status.code(), Some(2), "--device {bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("use cpu, cuda or cuda:N"), "--device {bad}: {stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_in_a_build_without_the_feature_is_one_clear_input_error() {
    for device in ["cuda", "cuda:1"] {
        let out = metrics_with(&["--device", device]);
        assert_eq!(out.status.code(), Some(2), "--device {device}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with(&format!("error: --device {device}")), "{stderr}");
        assert!(stderr.contains("built without the `cuda` feature"), "{stderr}");
        // The error comes before the subcommand: nothing was computed or printed.
        assert!(out.stdout.is_empty());
    }
}
