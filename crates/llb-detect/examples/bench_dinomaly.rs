//! Seconds per Dinomaly training iteration and per scored image at ViT-S dimensions (384
//! channels, 8 encoder layers, 16×16 tokens: DINOv2-S on 224 px images), batch 8, on the CPU.
//!
//! Run: `cargo run --release -p llb-detect --example bench_dinomaly [iterations] [token side]`
//! (token side 16 is 224 px, 12 is 168 px, 8 is 112 px).
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::time::Instant;

use candle_core::{Device, Tensor};
use llb_detect::{Detector, DinomalyConfig, DinomalyTrainer};
use llb_types::SampleId;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iterations: usize = std::env::args().nth(1).map_or(Ok(5), |s| s.parse())?;
    let side: usize = std::env::args().nth(2).map_or(Ok(16), |s| s.parse())?;
    let (n_images, channels, n_layers) = (16, 384, 8);
    let px = side * 14;
    let device = Device::Cpu;
    // Deterministic pseudo-features (no unseeded RNG): smooth in space, distinct per layer.
    let layers: Vec<Tensor> = (0..n_layers)
        .map(|l| {
            let len = n_images * channels * side * side;
            let idx =
                Tensor::arange(0u32, len as u32, &device)?.to_dtype(candle_core::DType::F32)?;
            (idx * (0.37 + 0.01 * l as f64))?.sin()?.reshape((n_images, channels, side, side))
        })
        .collect::<Result<_, _>>()?;

    // Other processes distort timings on a 2-core machine: report the load around the run.
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string();
    let load_before = load();
    // The machine's matrix-multiply rate right now: the honest ceiling for this workload.
    let a = Tensor::ones((1024, 1024), candle_core::DType::F32, &device)?;
    a.matmul(&a)?;
    let start = Instant::now();
    for _ in 0..5 {
        a.matmul(&a)?;
    }
    let gemm_gflops = 5.0 * 2.0 * 1024f64.powi(3) / start.elapsed().as_secs_f64() / 1e9;
    // Forward multiply-adds per token: bottleneck 8C², per decoder block 12C² (qkv, proj, MLP)
    // plus 2·C·head_dim for linear attention; training costs about 3 forwards.
    let c = channels as f64;
    let macs_per_token = 8.0 * c * c + 8.0 * (12.0 * c * c + 2.0 * c * 64.0);
    let train_gflop = 3.0 * 2.0 * macs_per_token * (8 * side * side) as f64 / 1e9;
    let score_gflop = 2.0 * macs_per_token * (side * side) as f64 / 1e9;

    let mut config = DinomalyConfig::llb_cpu();
    config.length = llb_detect::TrainingLength::Iterations(iterations + 1);
    config.batch_size = 8;
    let ids: Vec<SampleId> = (0..n_images).map(|i| SampleId::new(format!("img{i:03}"))).collect();
    let mut trainer = DinomalyTrainer::new(&config, &ids, &layers)?;
    trainer.step()?; // warm-up: allocations, first-touch
    let start = Instant::now();
    for _ in 0..iterations {
        trainer.step()?;
    }
    let per_iter = start.elapsed().as_secs_f64() / iterations as f64;

    let model = trainer.model();
    let test: Vec<Tensor> = layers.iter().map(|t| t.narrow(0, 0, 8)).collect::<Result<_, _>>()?;
    model.anomaly_maps(&test, (px, px))?;
    let start = Instant::now();
    let maps = model.anomaly_maps(&test, (px, px))?;
    let per_image = start.elapsed().as_secs_f64() / 8.0;

    println!(
        "dinomaly ViT-S dims (C=384, 8 layers, {side}x{side} tokens = {px} px), batch 8, {} threads",
        candle_core::utils::get_num_threads()
    );
    println!(
        "train: {per_iter:.3} s/iteration (mean of {iterations}), ~{train_gflop:.0} GFLOP, {:.0} GFLOP/s",
        train_gflop / per_iter
    );
    println!(
        "score: {per_image:.4} s/image (batch 8, maps {:?}), ~{score_gflop:.1} GFLOP, {:.0} GFLOP/s",
        maps.dims(),
        score_gflop / per_image
    );
    println!("f32 matmul 1024^3 at the same time: {gemm_gflops:.0} GFLOP/s");
    println!("load average before: {load_before}; after: {}", load());
    Ok(())
}
