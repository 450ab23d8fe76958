//! Kills and concurrent runs: `llb fit` and `llb experiment` killed with SIGKILL at points spread
//! over their stages resume to outputs bit-identical to an uninterrupted run, and two `llb fit`
//! processes on one cache at once both give the outputs of a run alone, leaving no partial file.
//!
//! Kill points come from the uninterrupted run's own log: it is run once with debug logging, and
//! each killed run is sent SIGKILL the moment it has printed the n-th of those lines, for n spread
//! evenly over the whole log (feature extraction, each stage-1 sub-model and its scoring, fusion,
//! the final fit, calibration, saving; for `experiment`, every row). Each killed run starts from
//! an empty cache and output folder, and its rerun (same cache, same folder) must finish.

use super::pipeline::{files_under, scratch_cache, tiny_benchmark};
use llb_data::DefectKind;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Kill points per command: the issue asks for at least 20.
const KILL_POINTS: usize = 20;

/// Log filter of every run here: the llb crates at debug level (one line per batch and stage).
const LOG: &str = "warn,llb=debug,llb_features=debug,llb_submodel=debug,llb_detect=debug,\
                   llb_purify=debug,llb_data=debug,llb_pipeline=debug";

/// What a finished run leaves: its summary line and every file of its output folder.
#[derive(Debug, PartialEq)]
struct Outputs {
    summary: serde_json::Value,
    files: BTreeMap<PathBuf, Vec<u8>>,
}

/// A tiny contaminated benchmark shared by every run of this module (read-only).
fn data() -> &'static Path {
    static DATA: OnceLock<tempfile::TempDir> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let kinds = vec![DefectKind::Stain, DefectKind::Hole];
        tiny_benchmark(&dir.path().join("bench"), 13, (56, 128), (12, 4, 8), kinds);
        dir
    })
    .path()
}

fn fit_args(cache: &Path, out: &Path) -> Vec<String> {
    let data = format!("mvtec:{}", data().join("bench").display());
    [
        "fit",
        "--data",
        &data,
        "--category",
        "tex",
        "--contamination",
        "0.25",
        "--out",
        out.to_str().unwrap(),
        "-k",
        "3",
        "--image-size",
        "56",
        "--cache",
        cache.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

/// The experiment manifest: the committed one (so fields added there are kept), cut down to the
/// tiny benchmark, one seed, one backbone at 56 px, two contamination ratios and no ablations.
/// A committed manifest still in the one-`dataset` schema (flat backbones, one
/// `contamination_seed`) is brought to the current one (`datasets`, `seeds`, named backbones).
fn experiment_manifest(dir: &Path) -> PathBuf {
    let committed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../xtask/manifests/benchmark.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(committed).unwrap()).unwrap();
    let m_obj = m.as_object_mut().unwrap();
    m_obj.remove("dataset");
    let legacy_seed = m_obj.remove("contamination_seed");
    m["name"] = "killed".into();
    m["datasets"] = serde_json::json!([
        {"kind": "mvtec", "root": data().join("bench"), "categories": ["tex"]}
    ]);
    m["contamination_ratios"] = serde_json::json!([0.0, 0.25]);
    m["pixel_eval_px"] = serde_json::Value::Null;
    m["ablation_ratios"] = serde_json::json!([]);
    m["ablations"] = serde_json::json!([]);
    // Several seeds would only repeat the same stages.
    let seed = m["seeds"].get(0).cloned().or(legacy_seed).unwrap_or_else(|| 0.into());
    m["seeds"] = serde_json::json!([seed]);
    let first = m["backbones"][0].clone();
    let mut backbone = if first.get("settings").is_some() {
        first
    } else {
        serde_json::json!({"name": "patchcore", "settings": first})
    };
    backbone["settings"]["encoder"]["image_size_px"] = 56.into();
    backbone["settings"]["purify"]["stage1"]["partition"]["k"] = 2.into();
    m["backbones"] = serde_json::json!([backbone]);
    let path = dir.join("manifest.json");
    std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    path
}

fn experiment_args(manifest: &Path, cache: &Path, out: &Path) -> Vec<String> {
    ["experiment", "--manifest", manifest.to_str().unwrap(), "--out", out.to_str().unwrap()]
        .into_iter()
        .chain(["--cache", cache.to_str().unwrap()])
        .map(String::from)
        .collect()
}

fn command(args: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llb"));
    cmd.args(args).env("RUST_LOG", LOG).env("NO_COLOR", "1");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Runs to the end; returns the summary line and the log lines.
fn finish(args: &[String]) -> (serde_json::Value, Vec<String>) {
    let out = command(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "llb {args:?} failed:\n{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let summary = serde_json::from_str(stdout.lines().last().expect("a summary line")).unwrap();
    (summary, stderr.lines().map(str::to_owned).collect())
}

/// Starts a run and sends SIGKILL when it has printed `n_lines` log lines; returns the last
/// line seen, or `None` when the run ended on its own first.
fn kill_after(args: &[String], n_lines: usize) -> Option<String> {
    let mut child = command(args).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = 0;
    let mut last = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        seen += 1;
        if seen == n_lines {
            child.kill().unwrap();
            last = Some(line);
            break;
        }
    }
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let status = child.wait().unwrap();
    match last {
        Some(line) if !status.success() => Some(line),
        _ => None,
    }
}

/// Every file under `dir`, by relative path, with its bytes; `normalise` may edit a file (e.g.
/// to blank wall-clock timings) before it is compared.
fn files(dir: &Path, normalise: &dyn Fn(&Path, Vec<u8>) -> Vec<u8>) -> BTreeMap<PathBuf, Vec<u8>> {
    files_under(dir).into_iter().map(|(rel, bytes)| (rel.clone(), normalise(&rel, bytes))).collect()
}

/// Temporary files (`llb_types::atomic` names) left anywhere under `dir`.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    files(dir, &|_, _| Vec::new())
        .into_keys()
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(llb_types::atomic::is_temp_name)
        })
        .collect()
}

/// `fit_seconds` (per row) and `seconds` are wall-clock timings: blanked before comparing.
fn without_timings(mut value: serde_json::Value) -> serde_json::Value {
    match &mut value {
        serde_json::Value::Object(map) => {
            for key in ["fit_seconds", "seconds"] {
                if map.contains_key(key) {
                    map.insert(key.into(), serde_json::Value::Null);
                }
            }
            for v in map.values_mut() {
                *v = without_timings(v.take());
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                *v = without_timings(v.take());
            }
        }
        _ => {}
    }
    value
}

fn normalise_experiment(path: &Path, bytes: Vec<u8>) -> Vec<u8> {
    let name = path.to_string_lossy();
    if name.ends_with(".json") {
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        serde_json::to_vec_pretty(&without_timings(v)).unwrap()
    } else if name.ends_with(".jsonl") {
        let lines = String::from_utf8(bytes).unwrap();
        let rows: Vec<serde_json::Value> =
            lines.lines().map(|l| without_timings(serde_json::from_str(l).unwrap())).collect();
        serde_json::to_vec(&rows).unwrap()
    } else {
        bytes
    }
}

/// The summary without the fields that name this run's folders (`out`, `results`, `review`) and
/// `computed`, the rows this invocation computed (a rerun computes only those its killed run had
/// not finished).
fn summary_fields(mut summary: serde_json::Value) -> serde_json::Value {
    for key in ["out", "results", "review", "computed"] {
        summary.as_object_mut().unwrap().remove(key);
    }
    without_timings(summary)
}

/// Asserts that `got` equals `reference`, naming the first file or summary that differs.
fn assert_same(got: &Outputs, reference: &Outputs, what: &str) {
    assert_eq!(
        got.files.keys().collect::<Vec<_>>(),
        reference.files.keys().collect::<Vec<_>>(),
        "{what}"
    );
    for (path, bytes) in &reference.files {
        assert!(got.files[path] == *bytes, "{what}: {path:?} differs");
    }
    assert_eq!(got.summary, reference.summary, "{what}");
}

/// `KILL_POINTS` line numbers spread evenly over the first `n − 1` lines of a log of `n` lines,
/// first and next-to-last included. The last line is the run's final act: on a loaded machine
/// the run can exit before a kill sent after reading it arrives (seen once in CI), so the
/// latest kill comes one line earlier.
fn kill_points(n: usize) -> Vec<usize> {
    assert!(n > KILL_POINTS, "the uninterrupted run logged only {n} lines");
    (0..KILL_POINTS).map(|i| 1 + i * (n - 2) / (KILL_POINTS - 1)).collect()
}

/// Kills a fresh run at every kill point, reruns it to the end, and compares with `reference`.
/// Returns the last log line before each kill.
fn kill_and_resume(
    make_args: &dyn Fn(&Path, &Path) -> Vec<String>,
    reference: &Outputs,
    n_lines: usize,
    normalise: &dyn Fn(&Path, Vec<u8>) -> Vec<u8>,
) -> Vec<String> {
    let mut killed_at = Vec::new();
    for (trial, n) in kill_points(n_lines).into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let cache = scratch_cache(dir.path());
        let out = dir.path().join("out");
        let args = make_args(&cache, &out);
        let last = kill_after(&args, n)
            .unwrap_or_else(|| panic!("kill point {trial} (log line {n}): the run ended first"));
        let (summary, _) = finish(&args);
        let resumed = Outputs { summary: summary_fields(summary), files: files(&out, normalise) };
        assert_eq!(
            resumed.files.keys().collect::<Vec<_>>(),
            reference.files.keys().collect::<Vec<_>>(),
            "kill point {trial} (after `{last}`)"
        );
        for (path, bytes) in &reference.files {
            assert!(
                resumed.files[path] == *bytes,
                "kill point {trial} (after `{last}`): {path:?} differs"
            );
        }
        assert_eq!(resumed.summary, reference.summary, "kill point {trial} (after `{last}`)");
        assert_eq!(temporaries(dir.path()), Vec::<PathBuf>::new(), "kill point {trial}");
        killed_at.push(last);
    }
    killed_at
}

/// Prints where each kill landed (shown with `--nocapture`; `docs/reliability.md` quotes it).
#[allow(clippy::print_stderr, reason = "the kill points are this test's report")]
fn report(command: &str, n_lines: usize, killed_at: &[String]) {
    eprintln!("{command}: {} kills over a {n_lines}-line log, each resumed", killed_at.len());
    for (i, line) in killed_at.iter().enumerate() {
        // Drop the timestamp; keep the level, span path and message.
        let line = line.split_once(' ').map_or(line.as_str(), |(_, rest)| rest.trim_start());
        eprintln!("  kill {i:2}: {}", line.chars().take(160).collect::<String>());
    }
}

/// The uninterrupted `llb fit`: its outputs and log length.
fn fit_reference() -> &'static (Outputs, usize) {
    static REFERENCE: OnceLock<(Outputs, usize)> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let cache = scratch_cache(dir.path());
        let out = dir.path().join("out");
        let (summary, log) = finish(&fit_args(&cache, &out));
        let outputs = Outputs { summary: summary_fields(summary), files: files(&out, &|_, b| b) };
        (outputs, log.len())
    })
}

#[test]
fn fit_killed_at_20_points_resumes_to_identical_outputs() {
    let (reference, n_lines) = fit_reference();
    assert!(reference.files.contains_key(Path::new("llb.json")), "{:?}", reference.files.keys());
    let killed_at = kill_and_resume(&fit_args, reference, *n_lines, &|_, b| b);
    assert_eq!(killed_at.len(), KILL_POINTS);
    report("llb fit", *n_lines, &killed_at);
}

#[test]
fn experiment_killed_at_20_points_resumes_to_identical_results() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = experiment_manifest(dir.path());
    let cache = scratch_cache(dir.path());
    let out = dir.path().join("out");
    let (summary, log) = finish(&experiment_args(&manifest, &cache, &out));
    let reference =
        Outputs { summary: summary_fields(summary), files: files(&out, &normalise_experiment) };
    assert_eq!(reference.summary["rows"], 4, "2 ratios × (baseline, purified)");
    let make_args = |cache: &Path, out: &Path| experiment_args(&manifest, cache, out);
    let killed_at = kill_and_resume(&make_args, &reference, log.len(), &normalise_experiment);
    assert_eq!(killed_at.len(), KILL_POINTS);
    report("llb experiment", log.len(), &killed_at);
}

#[test]
fn two_fits_on_one_cache_at_once_give_the_outputs_of_a_fit_alone() {
    let (reference, _) = fit_reference();
    let dir = tempfile::tempdir().unwrap();
    let cache = scratch_cache(dir.path());
    let outs = [dir.path().join("out-a"), dir.path().join("out-b")];
    let children: Vec<_> =
        outs.iter().map(|out| command(&fit_args(&cache, out)).spawn().unwrap()).collect();
    let (mut n_encoded, mut n_reused) = (0, 0);
    for (child, out) in children.into_iter().zip(&outs) {
        let result = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(result.status.success(), "concurrent fit into {} failed:\n{stderr}", out.display());
        let stdout = String::from_utf8(result.stdout).unwrap();
        let summary = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        let got = Outputs { summary: summary_fields(summary), files: files(out, &|_, b| b) };
        assert_same(&got, reference, &format!("{} against the fit alone", out.display()));
        for line in stderr.lines() {
            if line.contains("encoded batch") {
                n_encoded += line.rsplit("n=").next().unwrap().trim().parse::<usize>().unwrap();
            }
            n_reused += usize::from(line.contains("reusing cached sub-model scores"));
        }
    }
    // The locks make the work happen once: each of the 16 training images is encoded by one
    // process, and each of the 3 sub-models is fitted by one and reused by the other.
    assert_eq!((n_encoded, n_reused), (16, 3));
    assert_eq!(temporaries(dir.path()), Vec::<PathBuf>::new(), "no partial file remains");
}

/// A full disk, simulated with a file-size limit (`ulimit -f`: writes past 8 KiB fail with
/// EFBIG as they would with ENOSPC; the signal that would kill the process is ignored): `llb fit`
/// stops with an error naming the file it could not write and leaves no partial file, and a
/// rerun with room completes to the outputs of an uninterrupted run.
#[test]
fn a_full_disk_stops_fit_naming_the_file_and_a_rerun_completes() {
    let (reference, _) = fit_reference();
    let dir = tempfile::tempdir().unwrap();
    let cache = scratch_cache(dir.path());
    let out = dir.path().join("out");
    let args = fit_args(&cache, &out);
    let limited = Command::new("sh")
        .arg("-c")
        .arg("ulimit -f 16 && trap '' XFSZ && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_llb"))
        .args(&args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&limited.stderr);
    assert!(!limited.status.success(), "the limited run succeeded:\n{stderr}");
    assert!(
        stderr.contains("File too large") && stderr.contains(&*cache.to_string_lossy()),
        "{stderr}"
    );
    assert_eq!(temporaries(dir.path()), Vec::<PathBuf>::new(), "no partial file remains");
    let (summary, _) = finish(&args);
    let resumed = Outputs { summary: summary_fields(summary), files: files(&out, &|_, b| b) };
    assert_same(&resumed, reference, "the rerun against an uninterrupted run");
}

/// Copies the folder `from` to `to` (files and sub-folders).
fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_folder(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Starts `args` with its log discarded, sends SIGKILL after `delay` and waits; `true` when the
/// kill stopped it (it had not finished first).
fn kill_at(args: &[String], delay: std::time::Duration) -> bool {
    let mut cmd = command(args);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    std::thread::sleep(delay);
    let _ = child.kill();
    !child.wait().unwrap().success()
}

/// `llb fit` replacing a model (seed 1) with another (seed 0), killed with SIGKILL at 16 moments
/// spread from the start of its final fit to a third past its end (calibration, saving, the old
/// folder moved aside, the new one renamed into place), timed from the replacing run's own log:
/// the model folder then holds the old model or the new one, whole, and `llb predict` reads it.
///
/// Log lines cannot place these kills: the last stages take milliseconds, less than the lag of
/// reading the log through a pipe, so kills are timed instead.
#[test]
fn fit_killed_while_replacing_a_model_leaves_the_old_or_the_new_one_whole() {
    let dir = tempfile::tempdir().unwrap();
    let cache = scratch_cache(dir.path());
    let (old_out, new_out) = (dir.path().join("old"), dir.path().join("new"));
    let with_seed_1 = |out: &Path| [fit_args(&cache, out), vec!["--seed".into(), "1".into()]];
    finish(&with_seed_1(&old_out).concat());
    let old = files(&old_out, &|_, b| b);
    finish(&fit_args(&cache, &new_out));
    let new = files(&new_out, &|_, b| b);
    assert_ne!(old.get(Path::new("llb.json")), new.get(Path::new("llb.json")));
    // One uninterrupted replacement, its log read as it comes: when stage 2 starts, when it ends.
    let timing = dir.path().join("timing");
    copy_folder(&old_out, &timing);
    let started = std::time::Instant::now();
    let mut child = command(&fit_args(&cache, &timing)).spawn().unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines().map(Result::unwrap);
    let stage2 = lines
        .map(|line| (line, started.elapsed()))
        .find(|(line, _)| line.contains("stage2"))
        .map(|(_, at)| at)
        .expect("a stage2 line in the log");
    assert!(child.wait_with_output().unwrap().status.success());
    let end = started.elapsed();
    assert_eq!(files(&timing, &|_, b| b), new, "the uninterrupted replacement");
    let (mut n_old, mut n_new, mut n_killed) = (0, 0, 0);
    for i in 0..16u32 {
        let trial = dir.path().join(format!("trial-{i}"));
        let out = trial.join("model");
        copy_folder(&old_out, &out);
        // From well before stage 2 to a third past the uninterrupted end: the timing run may
        // have shared the cores with other tests and the trials not (or the reverse), so the
        // window is wide enough that some kills land whatever the load (a CI run once had all
        // 16 finish before a window starting at 0.9 × the stage-2 time).
        let (from, to) = (stage2.mul_f64(0.3), end.mul_f64(1.33));
        let delay = from + (to - from).mul_f64(f64::from(i) / 15.0);
        n_killed += usize::from(kill_at(&fit_args(&cache, &out), delay));
        let current = llb_pipeline::OutputFolder::current(&out);
        let got = files(&current, &|_, b| b);
        match (got == old, got == new) {
            (true, _) => n_old += 1,
            (_, true) => n_new += 1,
            _ => panic!("killed after {delay:?}: {} holds neither model whole", current.display()),
        }
        let predictions = trial.join("predictions");
        let images = data().join("bench/tex/test");
        let predict: Vec<String> = [
            "predict",
            "--model",
            out.to_str().unwrap(),
            "--input",
            images.to_str().unwrap(),
            "--out",
            predictions.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec();
        finish(&predict);
        std::fs::remove_dir_all(&trial).unwrap();
    }
    report_replacements(n_old, n_new, n_killed);
    // At least one kill landed before the process ended, and the folder was whole every time.
    assert!(n_killed > 0, "every run finished before its kill: old {n_old}, new {n_new}");
}

/// Prints what the kills left (shown with `--nocapture`).
#[allow(clippy::print_stderr, reason = "the outcome counts are this test's report")]
fn report_replacements(n_old: usize, n_new: usize, n_killed: usize) {
    eprintln!(
        "llb fit replacing a model: {n_killed} of 16 runs killed; old model {n_old}, new {n_new}"
    );
}
