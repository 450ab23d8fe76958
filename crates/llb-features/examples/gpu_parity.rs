//! CPU vs CUDA parity and speed of the DINOv2 ViT-S/14 encoder with the real weights: the same
//! batch of 8 images at 224 px through both devices, the patch features of blocks 3, 5 (the
//! pipeline's layers) and 11 (the last) compared, and images/s timed on each.
//!
//! Run: `cargo run --release -p llb-features --features cuda --example gpu_parity` on a machine
//! with an NVIDIA GPU (`cargo xtask gpu-check` does this), or with `-- --cpu-only` for the CPU
//! half alone in any build. Needs `$LLB_CACHE/weights/dinov2-vits14.safetensors` (from
//! `cargo run -p llb-cli --release -- fetch`). Options: `--cuda N` picks GPU N (default 0),
//! `--tolerance T` the largest relative L2 error allowed per layer (default 1e-3).
//!
//! Prints one JSON line on stdout (the numbers) and a readable account on stderr; exits with 1
//! when a layer's relative L2 error exceeds the tolerance or a value is not finite, and with 2
//! when asked for CUDA in a build without the `cuda` feature.

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a check prints its results")]

use candle_core::{Device, Tensor};
use llb_features::{Dinov2Config, Dinov2Encoder, Encoder, ViTConfig};
use std::time::Instant;

/// The example's error type: boxed, as an example is not a library.
type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const SIDE_PX: usize = 224;
const BATCH: usize = 8;
const BLOCKS: [usize; 3] = [3, 5, 11];
/// Timed repetitions per device, after one warm-up batch.
const REPS_CPU: usize = 3;
const REPS_CUDA: usize = 20;

struct Options {
    cpu_only: bool,
    cuda_ordinal: usize,
    tolerance: f64,
}

fn options() -> Result<Options> {
    let mut opts = Options { cpu_only: false, cuda_ordinal: 0, tolerance: 1e-3 };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--cpu-only" => opts.cpu_only = true,
            "--cuda" => opts.cuda_ordinal = value("--cuda")?.parse()?,
            "--tolerance" => opts.tolerance = value("--tolerance")?.parse()?,
            other => {
                return Err(format!(
                    "unknown argument {other} (--cpu-only, --cuda N, --tolerance T)"
                )
                .into());
            }
        }
    }
    Ok(opts)
}

/// A fixed batch `[8, 3, 224, 224]`: smooth colour gradients with a seeded pseudo-random
/// texture, in the range of normalised photos (about -2..2), the same on every run.
fn fixed_batch() -> Result<Tensor> {
    let mut state: u64 = 0x2508_0744_1a2b_3c4d;
    let mut next = || {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut data = Vec::with_capacity(BATCH * 3 * SIDE_PX * SIDE_PX);
    for image in 0..BATCH {
        for channel in 0..3 {
            for y in 0..SIDE_PX {
                for x in 0..SIDE_PX {
                    let ramp =
                        ((x + 2 * y + 37 * image + 71 * channel) % SIDE_PX) as f32 / SIDE_PX as f32;
                    data.push(2.0 * ramp - 1.0 + (next() - 0.5));
                }
            }
        }
    }
    Ok(Tensor::from_vec(data, (BATCH, 3, SIDE_PX, SIDE_PX), &Device::Cpu)?)
}

/// The encoder's layers for `images` on `device`, and the median seconds per batch over
/// `reps` timed runs after one warm-up (each run waits for the device to finish).
fn run_on(
    weights: &std::path::Path,
    images: &Tensor,
    device: &Device,
    reps: usize,
) -> Result<(Vec<Tensor>, f64)> {
    let config = Dinov2Config {
        vit: ViTConfig::dinov2_small(),
        blocks: BLOCKS.to_vec(),
        apply_final_layernorm: false,
    };
    let encoder = Dinov2Encoder::load(weights, &config, device)?;
    let images = images.to_device(device)?;
    let layers = encoder.forward(&images)?;
    device.synchronize()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        let out = encoder.forward(&images)?;
        device.synchronize()?;
        times.push(t.elapsed().as_secs_f64());
        drop(out);
    }
    times.sort_by(f64::total_cmp);
    let layers = layers
        .iter()
        .map(|l| l.to_device(&Device::Cpu))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok((layers, times[times.len() / 2]))
}

/// Max abs error, relative L2 error `‖b − a‖ / ‖a‖` and whether every value is finite.
fn compare(reference: &Tensor, other: &Tensor) -> Result<(f64, f64, bool)> {
    let a = reference.flatten_all()?.to_vec1::<f32>()?;
    let b = other.flatten_all()?.to_vec1::<f32>()?;
    if a.len() != b.len() {
        return Err(format!("shapes differ: {:?} vs {:?}", reference.dims(), other.dims()).into());
    }
    let (mut max_abs, mut diff2, mut norm2, mut finite) = (0f64, 0f64, 0f64, true);
    for (&x, &y) in a.iter().zip(&b) {
        finite &= x.is_finite() && y.is_finite();
        let d = f64::from(y) - f64::from(x);
        max_abs = max_abs.max(d.abs());
        diff2 += d * d;
        norm2 += f64::from(x) * f64::from(x);
    }
    Ok((max_abs, (diff2 / norm2.max(f64::MIN_POSITIVE)).sqrt(), finite))
}

#[cfg(feature = "cuda")]
fn cuda_device(ordinal: usize) -> Result<Device> {
    Ok(Device::new_cuda(ordinal)?)
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_ordinal: usize) -> Result<Device> {
    eprintln!(
        "gpu_parity: this build has no CUDA support: rebuild with `--features cuda` (or pass \
         --cpu-only for the CPU half alone)"
    );
    std::process::exit(2)
}

fn main() -> Result<()> {
    let opts = options()?;
    let weights = llb_bench::cache_root().join("weights").join("dinov2-vits14.safetensors");
    if !weights.is_file() {
        return Err(format!(
            "missing {}: run `cargo run -p llb-cli --release -- fetch` first",
            weights.display()
        )
        .into());
    }
    let cuda = if opts.cpu_only { None } else { Some(cuda_device(opts.cuda_ordinal)?) };
    let images = fixed_batch()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    eprintln!("gpu_parity: DINOv2-S blocks {BLOCKS:?}, batch {BATCH} at {SIDE_PX} px, f32");
    let (cpu_layers, cpu_secs) = run_on(&weights, &images, &Device::Cpu, REPS_CPU)?;
    let cpu_ips = BATCH as f64 / cpu_secs;
    eprintln!("  cpu ({threads} threads): {:.1} ms/batch, {cpu_ips:.2} images/s", cpu_secs * 1e3);
    let mut json = serde_json::json!({
        "model": "dinov2-vits14",
        "blocks": BLOCKS,
        "batch": BATCH,
        "side_px": SIDE_PX,
        "cpu_threads": threads,
        "cpu_ms_per_batch": cpu_secs * 1e3,
        "cpu_images_per_s": cpu_ips,
        "tolerance_rel_l2": opts.tolerance,
    });
    let mut failed = Vec::new();
    for (block, layer) in BLOCKS.iter().zip(&cpu_layers) {
        if !layer.flatten_all()?.to_vec1::<f32>()?.iter().all(|v| v.is_finite()) {
            failed.push(format!("block {block}: CPU features are not finite"));
        }
    }
    if let Some(device) = &cuda {
        let (cuda_layers, cuda_secs) = run_on(&weights, &images, device, REPS_CUDA)?;
        let cuda_ips = BATCH as f64 / cuda_secs;
        eprintln!(
            "  cuda:{}: {:.2} ms/batch, {cuda_ips:.1} images/s ({:.1}x the CPU)",
            opts.cuda_ordinal,
            cuda_secs * 1e3,
            cuda_ips / cpu_ips
        );
        let mut layers = Vec::new();
        for ((block, cpu), gpu) in BLOCKS.iter().zip(&cpu_layers).zip(&cuda_layers) {
            let (max_abs, rel_l2, finite) = compare(cpu, gpu)?;
            eprintln!(
                "  block {block} {:?}: max abs {max_abs:.3e}, relative L2 {rel_l2:.3e}",
                cpu.dims()
            );
            if !finite || rel_l2 > opts.tolerance {
                failed.push(format!(
                    "block {block}: relative L2 {rel_l2:.3e} > {:.1e} or not finite",
                    opts.tolerance
                ));
            }
            layers.push(serde_json::json!({
                "block": block,
                "shape": cpu.dims(),
                "max_abs": max_abs,
                "rel_l2": rel_l2,
                "finite": finite,
            }));
        }
        json["cuda_ordinal"] = opts.cuda_ordinal.into();
        json["cuda_ms_per_batch"] = (cuda_secs * 1e3).into();
        json["cuda_images_per_s"] = cuda_ips.into();
        json["speedup"] = (cuda_ips / cpu_ips).into();
        json["tf32"] = candle_core::cuda::gemm_reduced_precision_f32().into();
        json["layers"] = layers.into();
    }
    json["pass"] = failed.is_empty().into();
    println!("{json}");
    if failed.is_empty() {
        Ok(())
    } else {
        for f in &failed {
            eprintln!("gpu_parity: FAIL {f}");
        }
        std::process::exit(1)
    }
}
