//! `llb metrics --image-scores` run as a user would, on files written by the test.

use std::process::Command;

fn llb_metrics(csv: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_llb"))
        .args(["metrics", "--image-scores"])
        .arg(csv)
        .output()
        .expect("running the llb binary")
}

#[test]
fn image_scores_csv_prints_one_json_object() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("scores.csv");
    std::fs::write(&csv, "id,label,score\na,0,0.1\nb,1,0.35\nc,0,0.4\nd,1,0.8\n").unwrap();
    let out = llb_metrics(&csv);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["i_ap", "i_auroc", "i_f1max"]);
    // scikit-learn: roc_auc_score([0,1,0,1], [0.1,0.35,0.4,0.8]) = 0.75.
    assert!((json["i_auroc"].as_f64().unwrap() - 0.75).abs() < 1e-12);
}

#[test]
fn bad_csv_exits_with_2_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("broken.csv");
    std::fs::write(&csv, "id,label,score\na,0,0.1\nb,1,oops\n").unwrap();
    let out = llb_metrics(&csv);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.csv:3"), "{stderr}");
    assert!(out.stdout.is_empty());
}
