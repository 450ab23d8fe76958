//! Stage 1 split across jobs (`llb fit --stage1-only --subset k`, then `--from-stage1`), and
//! processes at once on one cache: every cache entry is stored once, by one process, and whole.

use super::pipeline::{files_under, scratch_cache, tiny_benchmark};
use llb_data::DefectKind;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Log filter that shows the store events counted here.
const LOG: &str = "warn,llb_features=debug,llb_submodel=debug";

const K: usize = 3;

/// `llb fit` on the tiny contaminated benchmark in `dir/bench` (generated once per test).
fn fit(dir: &Path, cache: &Path, extra: &[&str]) -> Command {
    let bench = dir.join("bench");
    if !bench.exists() {
        tiny_benchmark(&bench, 21, (56, 128), (10, 2, 4), vec![DefectKind::Stain]);
    }
    let data = format!("mvtec:{}", bench.display());
    let mut command = Command::new(env!("CARGO_BIN_EXE_llb"));
    command
        .args(["fit", "--data", &data, "--category", "tex", "--contamination", "0.2"])
        .args(["-k", &K.to_string(), "--image-size", "56", "--selection", "keep-fraction(0.8)"])
        .args(["--cache", cache.to_str().unwrap()])
        .args(extra)
        .env("RUST_LOG", LOG)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    command
}

fn run(command: &mut Command, what: &str) -> String {
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{what} failed:\n{stderr}");
    stderr
}

/// Exit code and stderr of a run expected to fail.
fn failure(output: Output) -> (Option<i32>, String) {
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The `path=` field of every log line with `event`: the key of each entry a process stored.
fn stored(log: &str, event: &str) -> Vec<String> {
    log.lines()
        .filter(|line| line.contains(event))
        .map(|line| {
            let field = line.split(" path=").nth(1).expect("a path field");
            field.split_whitespace().next().unwrap().to_owned()
        })
        .collect()
}

/// K jobs of `--stage1-only --subset k` (each on a cache of its own, as on K machines), then
/// `--from-stage1`: the model folder is byte for byte the one a plain `llb fit` writes, and the
/// assembling fit fits no sub-model. Before the last subset is in, `--from-stage1` exits 2 naming
/// the missing sub-model; `--subset K` exits 2 before any sub-model is fitted.
#[test]
fn stage1_split_into_k_jobs_gives_the_model_folder_of_a_plain_fit() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    let store = tmp.join("stage1-store");
    let store_arg = store.to_str().unwrap();
    let job = |k: usize| {
        let cache = scratch_cache(&tmp.join(format!("job-{k}")));
        let subset = k.to_string();
        let args = ["--stage1-only", "--subset", &subset, "--stage1-dir", store_arg];
        let log = run(&mut fit(tmp, &cache, &args), &format!("subset {k}"));
        assert_eq!(stored(&log, "stored sub-model scores").len(), 1, "one sub-model:\n{log}");
    };
    job(2);
    job(0);
    let assembler = scratch_cache(&tmp.join("assembler"));
    let split = tmp.join("split");
    let from = ["--from-stage1", store_arg, "--out", split.to_str().unwrap()];
    let (code, stderr) = failure(fit(tmp, &assembler, &from).output().unwrap());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("sub-model 1 of {K}")) && stderr.contains(store_arg),
        "{stderr}"
    );
    assert!(!split.exists(), "no model folder from an incomplete store");

    let out_of_range = ["--stage1-only", "--subset", "3", "--stage1-dir", store_arg];
    let (code, stderr) = failure(fit(tmp, &assembler, &out_of_range).output().unwrap());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("subset 3 is out of range") && stderr.contains("K = 3"), "{stderr}");
    assert!(!stderr.contains("stored sub-model scores"), "{stderr}");

    job(1);
    let log = run(&mut fit(tmp, &assembler, &from), "--from-stage1");
    assert!(stored(&log, "stored sub-model scores").is_empty(), "nothing refitted:\n{log}");

    let plain = tmp.join("plain");
    let own = scratch_cache(&tmp.join("plain-cache"));
    run(&mut fit(tmp, &own, &["--out", plain.to_str().unwrap()]), "plain fit");
    let (split, plain) = (files_under(&split), files_under(&plain));
    assert_eq!(split.keys().collect::<Vec<_>>(), plain.keys().collect::<Vec<_>>());
    for name in ["llb.json", "score_table.csv", "purification.csv"] {
        assert!(split.contains_key(Path::new(name)), "{name} missing");
    }
    for (name, bytes) in &plain {
        assert!(&split[name] == bytes, "{} differs from the plain fit's", name.display());
    }
}

/// Two processes at once on one cache with the same images: a plain `llb fit` (which resumes
/// stage 1 from the cache's `stage1/` folder) and `llb fit --stage1-only` storing all K
/// sub-models into that same folder. Both finish; every feature entry and every sub-model's
/// scores is stored exactly once across the two (the locks make the other process wait and
/// reuse it), every entry loads, and no temporary file is left.
#[test]
#[allow(clippy::print_stderr, reason = "the store counts are this test's report")]
fn two_processes_at_once_store_each_cache_entry_once() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    let cache = scratch_cache(&tmp.join("shared"));
    let store = cache.join("stage1");
    let model = tmp.join("model");
    let mut a = fit(tmp, &cache, &["--out", model.to_str().unwrap()]);
    let mut b = fit(tmp, &cache, &["--stage1-only", "--stage1-dir", store.to_str().unwrap()]);
    let children = [&mut a, &mut b].map(|c| c.stdout(Stdio::piped()).stderr(Stdio::piped()));
    let children: Vec<_> = children.into_iter().map(|c| c.spawn().unwrap()).collect();
    let (summaries, logs): (Vec<serde_json::Value>, Vec<String>) = children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            assert!(output.status.success(), "a concurrent fit failed:\n{stderr}");
            let stdout = String::from_utf8(output.stdout).unwrap();
            (serde_json::from_str(stdout.lines().last().expect("a summary")).unwrap(), stderr)
        })
        .unzip();
    let n_train = summaries[0]["n_train"].as_u64().unwrap() as usize;
    assert_eq!(summaries[1]["n_train"].as_u64(), Some(n_train as u64));
    assert_eq!(summaries[1]["subsets"], serde_json::json!([0, 1, 2]));
    let mut counts: BTreeMap<(&str, String), usize> = BTreeMap::new();
    for log in &logs {
        for event in ["stored feature entry", "stored sub-model scores"] {
            for key in stored(log, event) {
                *counts.entry((event, key)).or_default() += 1;
            }
        }
    }
    let per_event = |event: &str| counts.keys().filter(|(e, _)| *e == event).count();
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "stored: {} feature entries, {} sub-models; stored more than once: {}",
        per_event("stored feature entry"),
        per_event("stored sub-model scores"),
        twice.len()
    );
    assert!(twice.is_empty(), "computed twice: {twice:?}");
    // Only training images are encoded (fit reads no test image): one entry each.
    assert_eq!(per_event("stored feature entry"), n_train, "{counts:?}");
    assert_eq!(per_event("stored sub-model scores"), K, "{counts:?}");
    let mut whole = 0;
    for (path, bytes) in files_under(&cache.join("features")).into_iter().chain(files_under(&store))
    {
        let name = path.to_string_lossy().into_owned();
        assert!(!name.contains(".tmp"), "a temporary file is left: {name}");
        if name.ends_with(".safetensors") {
            let tensors = candle_core::safetensors::load_buffer(&bytes, &candle_core::Device::Cpu);
            assert!(tensors.is_ok_and(|t| !t.is_empty()), "{name} is not whole");
            whole += 1;
        } else if name.ends_with(".json") {
            assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(), "{name}");
            whole += 1;
        }
    }
    assert_eq!(whole, n_train + K, "every stored entry is on disk and whole");
}
