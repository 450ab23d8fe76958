//! PatchCore and SoftPatch timing on random features of a real encoder's shape, beside the
//! machine's GEMM rate measured in the same process.
//!
//! Run: `cargo run --release -p llb-detect --example bench_detect -- [wrn|dinov2] [n_train]
//! [n_test] [coreset_fraction] [softpatch]` (defaults: `wrn 200 10 0.1`, no SoftPatch).
//! `wrn 20 10 1.0` builds the same bank size as the default (15 680 patches) without the
//! coreset loop, to time the search alone.
//! Shapes: `wrn` is WideResNet50-2 layer2+layer3 aggregated to 1024 channels on a 28×28 grid
//! (PatchCore's encoder at 224 px); `dinov2` is DINOv2-S with two 384-channel layers on a 16×16
//! grid (224 px, patch 14). Features are uniform in `[0, 1)` from a seeded ChaCha8 stream, so
//! the coreset has no structure to exploit: a worst case for the greedy k-center loop.
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::time::Instant;

use candle_core::{Device, Tensor};
use llb_detect::{Detector, Fit, ImageScoreRule, PatchCoreConfig, SoftPatchConfig};
use llb_types::SampleId;

const IMAGE_SIZE_PX: (usize, usize) = (224, 224);

fn random_features(n: usize, c: usize, side: usize, seed: u64) -> candle_core::Result<Tensor> {
    let values = llb_bench::uniform_values(n * c * side * side, seed);
    Tensor::from_vec(values, (n, c, side, side), &Device::Cpu)
}

/// Best-of-3 GFLOP/s of an `n³` f32 matrix product with candle on the CPU.
fn gemm_rate(n: usize) -> candle_core::Result<f64> {
    let a = random_features(1, 1, n, 1)?.reshape((n, n))?;
    let b = random_features(1, 1, n, 2)?.reshape((n, n))?;
    let _ = a.matmul(&b)?; // warm-up
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        let c = a.matmul(&b)?;
        let _ = c.get(0)?.get(0)?.to_scalar::<f32>()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(2.0 * (n as f64).powi(3) / best / 1e9)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let shape = args.first().map_or("wrn", String::as_str);
    let n_train: usize = args.get(1).map_or(Ok(200), |s| s.parse())?;
    let n_test: usize = args.get(2).map_or(Ok(10), |s| s.parse())?;
    let coreset_fraction: f64 = args.get(3).map_or(Ok(0.1), |s| s.parse())?;
    let with_softpatch = args.get(4).is_some_and(|s| s == "softpatch");
    let (channels, side) = match shape {
        "wrn" => (1024, 28),
        "dinov2" => (768, 16),
        other => return Err(format!("unknown shape {other}: use wrn or dinov2").into()),
    };
    println!("threads: {}", std::thread::available_parallelism().map_or(0, |n| n.get()));
    println!("gemm: candle f32 matmul 2048^3: {:.1} GFLOP/s (best of 3)", gemm_rate(2048)?);

    let train = [random_features(n_train, channels, side, 10)?];
    let ids: Vec<SampleId> = (0..n_train).map(|i| SampleId::new(format!("train{i:05}"))).collect();
    let test = [random_features(n_test, channels, side, 11)?];
    println!(
        "features: train [{n_train}, {channels}, {side}, {side}], test [{n_test}, {channels}, {side}, {side}]"
    );

    let config = PatchCoreConfig { coreset_fraction, ..PatchCoreConfig::roth2022() };
    let start = Instant::now();
    let model = config.fit(&ids, &train)?;
    let fit_s = start.elapsed().as_secs_f64();
    let bank = model.bank_len();
    println!(
        "patchcore fit (coreset {} of {} patches, projection {:?}): {fit_s:.2} s, bank {bank}",
        config.coreset_fraction,
        n_train * side * side,
        config.projection_dim
    );

    let _ = model.patch_scores(&[test[0].narrow(0, 0, 1)?])?; // warm-up
    let start = Instant::now();
    let _ = model.patch_scores(&test)?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    let search_s = start.elapsed().as_secs_f64();
    let flops = 2.0 * (n_test * side * side) as f64 * bank as f64 * channels as f64;
    println!(
        "patchcore nearest-neighbour search: {n_test} images in {search_s:.3} s ({:.1} ms/image), {:.1} GFLOP/s",
        1e3 * search_s / n_test as f64,
        flops / search_s / 1e9
    );
    let start = Instant::now();
    let scores = model.score(&test, IMAGE_SIZE_PX, ImageScoreRule::Max)?;
    let score_s = start.elapsed().as_secs_f64();
    println!(
        "patchcore score (search + {}x{} maps + blur + max): {:.1} ms/image",
        IMAGE_SIZE_PX.0,
        IMAGE_SIZE_PX.1,
        1e3 * score_s / n_test as f64
    );
    assert_eq!(scores.image_scores.len(), n_test);

    if with_softpatch {
        let config = SoftPatchConfig::jiang2022();
        let start = Instant::now();
        let model = config.fit(&ids, &train)?;
        println!(
            "softpatch fit (lof k=6, noise 0.15, coreset 0.1): {:.2} s, dropped {}, bank {}",
            start.elapsed().as_secs_f64(),
            model.n_dropped(),
            model.bank_len()
        );
    }
    Ok(())
}
