//! Dinomaly training-step time at ViT-S dimensions (384 channels, 8 encoder layers, batch 8) on
//! the CPU, in one run: the hand-written CPU pass, candle's autograd on the same weights
//! (the path before it), and PyTorch on CPU (eager, the official code's way), at the token
//! sides given (16 = 224 px, 8 = 112 px), in three alternating rounds with ratios taken within
//! each round; then the scoring time per image at the first side.
//!
//! Run: `cargo xtask bench dinomaly [iterations [sides]]`, e.g. `5 16,8`, or
//! `cargo run --release -p llb-detect --example bench_dinomaly -- 5 16,8`.
//!
//! The peer: `torch` from PyPI in a virtual environment outside the repository
//! (`$LLB_CACHE/peers/torch`), created on first use; `torch.set_num_threads` = this process's
//! thread count; two warm-up steps, then the median of the iterations; its script is
//! `examples/peers/dinomaly_step.py`. AdamW with AMSGrad stands in for StableAdamW (the same
//! element-wise work plus one RMS per tensor). `LLB_BENCH_PEER=0` skips it.
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::time::Instant;

use candle_core::{Device, Tensor};
use llb_detect::{Detector, DinomalyConfig, DinomalyTrainer};
use llb_types::SampleId;

use llb_bench::{load_average, median, peer_off, python, run_json};

const TORCH_VERSION: &str = "2.15.0";
const PEER_SCRIPT: &str = include_str!("peers/dinomaly_step.py");
const N_IMAGES: usize = 16;
const CHANNELS: usize = 384;
const N_LAYERS: usize = 8;
const ROUNDS: usize = 3;

fn list(values: &[f64]) -> String {
    values.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(" / ")
}

/// Deterministic pseudo-features (no unseeded RNG): smooth in space, distinct per layer.
fn features(side: usize) -> candle_core::Result<Vec<Tensor>> {
    (0..N_LAYERS)
        .map(|l| {
            let len = N_IMAGES * CHANNELS * side * side;
            let idx = Tensor::arange(0u32, len as u32, &Device::Cpu)?
                .to_dtype(candle_core::DType::F32)?;
            (idx * (0.37 + 0.01 * l as f64))?.sin()?.reshape((N_IMAGES, CHANNELS, side, side))
        })
        .collect()
}

fn trainer(layers: &[Tensor], iterations: usize) -> llb_detect::Result<DinomalyTrainer> {
    let mut config = DinomalyConfig::llb_cpu();
    config.length = llb_detect::TrainingLength::Iterations(iterations + 1);
    config.batch_size = 8;
    let ids: Vec<SampleId> = (0..N_IMAGES).map(|i| SampleId::new(format!("img{i:03}"))).collect();
    DinomalyTrainer::new(&config, &ids, layers)
}

/// Median seconds per step after one warm-up step.
fn seconds_per_step(
    layers: &[Tensor],
    iterations: usize,
    autograd: bool,
) -> llb_detect::Result<f64> {
    let mut trainer = trainer(layers, iterations)?;
    trainer.use_autograd(autograd);
    trainer.step()?;
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        trainer.step()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[iterations / 2])
}

fn torch_peer(side: usize, iterations: usize, threads: usize) -> Result<(f64, String), String> {
    if peer_off() {
        return Err("skipped (LLB_BENCH_PEER=0)".into());
    }
    let torch = format!("torch=={TORCH_VERSION}");
    let python = python("torch", &[&torch, "numpy"], "torch")?;
    let args = [side, 8, threads, iterations].map(|v| v.to_string());
    let v = run_json(&python, PEER_SCRIPT, &args, threads)?;
    let secs = v["secs"].as_f64().ok_or("no secs in the peer's output")?;
    Ok((secs, v["torch"].as_str().unwrap_or("?").to_string()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iterations: usize = std::env::args().nth(1).map_or(Ok(5), |s| s.parse())?.max(1);
    let sides: Vec<usize> = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "16,8".into())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let threads = candle_core::utils::get_num_threads();
    // Other processes distort timings on a 2-core machine: report the load around the run.
    let load = load_average;
    let load_before = load();
    // The machine's matrix-multiply rate right now: the honest ceiling for this workload.
    let a = Tensor::ones((1024, 1024), candle_core::DType::F32, &Device::Cpu)?;
    a.matmul(&a)?;
    let start = Instant::now();
    for _ in 0..5 {
        a.matmul(&a)?;
    }
    let gemm_gflops = 5.0 * 2.0 * 1024f64.powi(3) / start.elapsed().as_secs_f64() / 1e9;
    // Forward multiply-adds per token: bottleneck 8C², per decoder block 12C² (qkv, proj, MLP)
    // plus 2·C·head_dim for linear attention; training costs about 3 forwards.
    let c = CHANNELS as f64;
    let macs_per_token = 8.0 * c * c + 8.0 * (12.0 * c * c + 2.0 * c * 64.0);

    println!(
        "Dinomaly training step, ViT-S dims (C=384, 8 blocks), batch 8, {threads} threads; \
         {ROUNDS} rounds of (llb, autograd, PyTorch), each the median of {iterations} steps"
    );
    println!();
    println!(
        "| px | llb hand-written (s) | llb autograd (s) | speed-up, per round | PyTorch CPU (s) | llb / PyTorch, per round | llb GFLOP/s (share of GEMM) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut torch_version = None;
    for &side in &sides {
        let layers = features(side)?;
        let (mut fused, mut graph, mut peer) = (Vec::new(), Vec::new(), Vec::new());
        let mut peer_skipped = None;
        // Rounds alternate the three so that a change in the machine's speed (it drifts on
        // this shared host) reaches all of them; ratios are taken within a round.
        for _ in 0..ROUNDS {
            fused.push(seconds_per_step(&layers, iterations, false)?);
            graph.push(seconds_per_step(&layers, iterations, true)?);
            match torch_peer(side, iterations, threads) {
                Ok((secs, version)) => {
                    peer.push(secs);
                    torch_version = Some(version);
                }
                Err(why) => peer_skipped = Some(why),
            }
        }
        let gflop = 3.0 * 2.0 * macs_per_token * (8 * side * side) as f64 / 1e9;
        let speedups: Vec<f64> = graph.iter().zip(&fused).map(|(g, f)| g / f).collect();
        let (peer_secs, ratio) = match peer_skipped {
            Some(why) => (format!("– ({why})"), "–".into()),
            None => {
                let ratios: Vec<f64> = peer.iter().zip(&fused).map(|(p, f)| p / f).collect();
                (
                    format!("{:.3}", median(&peer)),
                    format!("{:.2}× ({})", median(&ratios), list(&ratios)),
                )
            }
        };
        let fused_median = median(&fused);
        println!(
            "| {} | {fused_median:.3} | {:.3} | {:.2}× ({}) | {peer_secs} | {ratio} | {:.0} ({:.0} %) |",
            side * 14,
            median(&graph),
            median(&speedups),
            list(&speedups),
            gflop / fused_median,
            100.0 * gflop / fused_median / gemm_gflops
        );
    }
    if let Some(version) = torch_version {
        println!("\nPeer: torch {version}, eager, AdamW(amsgrad) for StableAdamW.");
    }

    let side = sides[0];
    let px = side * 14;
    let layers = features(side)?;
    let model = trainer(&layers, 1)?.model()?;
    let test: Vec<Tensor> = layers.iter().map(|t| t.narrow(0, 0, 8)).collect::<Result<_, _>>()?;
    model.anomaly_maps(&test, (px, px))?;
    let start = Instant::now();
    let maps = model.anomaly_maps(&test, (px, px))?;
    let per_image = start.elapsed().as_secs_f64() / 8.0;
    let score_gflop = 2.0 * macs_per_token * (side * side) as f64 / 1e9;
    println!();
    println!(
        "score: {per_image:.4} s/image at {px} px (batch 8, maps {:?}), {:.0} GFLOP/s",
        maps.dims(),
        score_gflop / per_image
    );
    println!("f32 matmul 1024^3 at the same time: {gemm_gflops:.0} GFLOP/s");
    println!("load average before: {load_before}; after: {}", load());
    Ok(())
}
