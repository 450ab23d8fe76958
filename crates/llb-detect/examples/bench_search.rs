//! PatchCore's exact nearest-neighbour search against faiss (`IndexFlatL2`, exact L2) on the
//! same bank, the same queries and the same thread count, in one run.
//!
//! Run: `cargo xtask bench search [5,20,80 [10]]` (bank images, query images) or
//! `cargo run --release -p llb-detect --example bench_search -- 5,20,80 10`.
//! Shapes: WideResNet50-2 layer2+layer3 aggregated to 1024 channels on a 28×28 grid (PatchCore
//! at 224 px), so a bank of `n` training images holds `784 n` patches (coreset 1.0: the search
//! alone); the queries are the patches of `--queries` test images. Features are uniform in
//! `[0, 1)` from a seeded ChaCha8 stream.
//!
//! The peer: a Python subprocess in a virtual environment outside the repository
//! (`$LLB_CACHE/peers/faiss`, default `~/.cache/llb/peers/faiss`), created and filled with
//! `faiss-cpu` and `numpy` from PyPI on first use; `omp_set_num_threads` = this process's
//! thread count; one warm-up search over all queries (as on our side), then the median of 3.
//! Both sides get the bank and queries as the same f32 bytes, and the run checks that they find
//! the same distances. `LLB_BENCH_PEER=0` skips the peer.
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use llb_detect::{Fit, PatchCoreConfig};
use llb_types::SampleId;

const CHANNELS: usize = 1024;
const SIDE: usize = 28;
const REPS: usize = 3;
const FAISS_VERSION: &str = "1.15.1";

use llb_bench::{load_average, median_secs, peer_off, python, run_json};

const PEER_SCRIPT: &str = r#"
import json, sys, time
import numpy as np, faiss
bank_path, query_path, d, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
faiss.omp_set_num_threads(threads)
bank = np.fromfile(bank_path, dtype="<f4").reshape(-1, d)
queries = np.fromfile(query_path, dtype="<f4").reshape(-1, d)
index = faiss.IndexFlatL2(d); index.add(bank)
index.search(queries, 1)
ts = []
for _ in range(int(sys.argv[5])):
    t = time.perf_counter(); dist, _ = index.search(queries, 1); ts.append(time.perf_counter() - t)
ts.sort()
print(json.dumps({"secs": ts[len(ts) // 2], "faiss": faiss.__version__,
                  "distances": np.sqrt(np.maximum(dist[:, 0], 0)).astype(float).tolist()}))
"#;

fn random_features(n: usize, seed: u64) -> candle_core::Result<Tensor> {
    let values = llb_bench::uniform_values(n * CHANNELS * SIDE * SIDE, seed);
    Tensor::from_vec(values, (n, CHANNELS, SIDE, SIDE), &Device::Cpu)
}

/// Median seconds of faiss's search and its nearest distances, or why the peer was skipped.
fn faiss_peer(
    dir: &Path,
    bank: &[f32],
    queries: &[f32],
    threads: usize,
) -> Result<(f64, String, Vec<f32>), String> {
    let faiss = format!("faiss-cpu=={FAISS_VERSION}");
    let python = python("faiss", &[&faiss, "numpy"], "faiss, numpy")?;
    let write = |name: &str, values: &[f32]| -> Result<PathBuf, String> {
        let path = dir.join(name);
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    };
    let (bank_path, query_path) = (write("bank.f32", bank)?, write("queries.f32", queries)?);
    let args = [
        bank_path.to_string_lossy().into_owned(),
        query_path.to_string_lossy().into_owned(),
        CHANNELS.to_string(),
        threads.to_string(),
        REPS.to_string(),
    ];
    let v = run_json(&python, PEER_SCRIPT, &args, threads)?;
    let secs = v["secs"].as_f64().ok_or("no secs in the peer's output")?;
    let version = v["faiss"].as_str().unwrap_or("?").to_string();
    let distances = v["distances"]
        .as_array()
        .ok_or("no distances in the peer's output")?
        .iter()
        .map(|d| d.as_f64().map(|d| d as f32).ok_or("a non-number distance"))
        .collect::<Result<_, _>>()?;
    Ok((secs, version, distances))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let banks: Vec<usize> = args
        .first()
        .map_or("5,20,80", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let n_queries: usize = args.get(1).map_or(Ok(10), |s| s.parse())?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let peer = !peer_off();
    println!("# bench_search: exact 1-NN, {CHANNELS} channels, {threads} threads");
    println!("load average at start: {}", load_average());
    println!();
    println!(
        "| bank (patches) | queries | llb ms | llb GFLOP/s | faiss ms | faiss GFLOP/s | llb / faiss speed | max |Δd| |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let dir = tempfile::tempdir()?;
    let test = random_features(n_queries, 11)?.permute((0, 2, 3, 1))?.contiguous()?;
    let queries: Vec<f32> = test.flatten_all()?.to_vec1()?;
    let test = test.reshape((queries.len() / CHANNELS, CHANNELS))?;
    let mut version = String::new();
    for &n_bank in &banks {
        let ids: Vec<SampleId> =
            (0..n_bank).map(|i| SampleId::new(format!("train{i:05}"))).collect();
        let config = PatchCoreConfig { coreset_fraction: 1.0, ..PatchCoreConfig::roth2022() };
        let model = config.fit(&ids, &[random_features(n_bank, 10)?])?;
        let bank_len = model.bank_len();
        let (ours, distances) =
            median_secs(1, REPS, || -> Result<Vec<f32>, Box<dyn std::error::Error>> {
                Ok(model.nearest_distances(&test)?.to_vec1::<f32>()?)
            })?;
        let flops = 2.0 * (queries.len() / CHANNELS) as f64 * bank_len as f64 * CHANNELS as f64;
        let rate = |secs: f64| format!("{:.1}", flops / secs / 1e9);
        let peer_cells = if peer {
            let bank: Vec<f32> = model.bank().flatten_all()?.to_vec1()?;
            match faiss_peer(dir.path(), &bank, &queries, threads) {
                Ok((secs, v, theirs)) => {
                    version = v;
                    let max_diff = distances
                        .iter()
                        .zip(&theirs)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0f32, f32::max);
                    [
                        format!("{:.0}", secs * 1e3),
                        rate(secs),
                        format!("{:.2}", secs / ours),
                        format!("{max_diff:.1e}"),
                    ]
                }
                Err(why) => {
                    println!("faiss peer skipped: {why}");
                    ["–".into(), "–".into(), "–".into(), "–".into()]
                }
            }
        } else {
            ["–".into(), "–".into(), "–".into(), "–".into()]
        };
        println!(
            "| {bank_len} | {} | {:.0} | {} | {} |",
            queries.len() / CHANNELS,
            ours * 1e3,
            rate(ours),
            peer_cells.join(" | ")
        );
    }
    println!();
    println!(
        "faiss {version} (`IndexFlatL2`, exact), one warm-up search each, medians of {REPS}; llb: `PatchCore::nearest_distances` (tiled exact search), same bank and query bytes."
    );
    println!("load average at end: {}", load_average());
    Ok(())
}
