//! Times the CNN encoders on the CPU: EfficientNet-Lite0 (real weights, blocks 4 and 10, and
//! the full classifier) and WideResNet50-2 up to layer3 (zero weights: the time does not depend
//! on the values), at 224 × 224, batch 1 and 8, plus PatchCore's patch aggregation.
//!
//! `cargo run --release -p llb-features --example bench_cnn [-- efficientnet-lite0.safetensors]`
//! (default `$LLB_CACHE/weights/efficientnet-lite0.safetensors`, `LLB_CACHE` defaulting to
//! `~/.cache/llb`).

#![allow(clippy::print_stdout, reason = "a benchmark prints its measurements")]

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use llb_features::{
    EfficientNetLite, EfficientNetLiteConfig, EfficientNetLiteEncoder,
    EfficientNetLiteEncoderConfig, Encoder, PatchAggregator, PatchAggregatorConfig, WideResNet,
    WideResNetConfig, WideResNetEncoder,
};

/// Median seconds per call of `f` over `reps` calls after one warm-up call.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    let Ok((secs, ())) = llb_bench::median_secs(1, reps, || {
        f();
        Ok::<_, std::convert::Infallible>(())
    });
    secs
}

fn input(batch: usize) -> Tensor {
    let n = batch * 3 * 224 * 224;
    let v: Vec<f32> = (0..n).map(|i| ((i * 7919 % 251) as f32 / 125.5) - 1.0).collect();
    Tensor::from_vec(v, (batch, 3, 224, 224), &Device::Cpu).expect("input tensor")
}

fn main() -> llb_features::Result<()> {
    let path = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| llb_bench::cache_root().join("weights/efficientnet-lite0.safetensors"));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("threads: {threads}");
    let dev = Device::Cpu;
    let encoder = EfficientNetLiteEncoder::load(
        &path,
        &EfficientNetLiteEncoderConfig::lite0_stride8_16(),
        &dev,
    )?;
    let classifier = EfficientNetLite::load(&path, &EfficientNetLiteConfig::lite0(), true, &dev)?;
    for batch in [1, 8] {
        let x = input(batch);
        let reps = if batch == 1 { 20 } else { 5 };
        let s = time(reps, || {
            encoder.forward(&x).expect("forward");
        });
        println!(
            "efficientnet-lite0 blocks [4,10], 224 px, batch {batch}: {:.1} ms/batch, {:.1} images/s",
            s * 1e3,
            batch as f64 / s
        );
        let s = time(reps, || {
            classifier.forward_logits(&x).expect("logits");
        });
        println!(
            "efficientnet-lite0 full classifier, 224 px, batch {batch}: {:.1} ms/batch, {:.1} images/s",
            s * 1e3,
            batch as f64 / s
        );
    }

    let config = WideResNetConfig::wide_resnet50_2();
    let wrn = WideResNet::new(VarBuilder::zeros(DType::F32, &dev), &config, 3)?;
    let wrn = WideResNetEncoder::from_network(wrn, vec![2, 3])?;
    let agg = PatchAggregator::new(&PatchAggregatorConfig::patchcore_original())?;
    let avg = PatchAggregator::new(&PatchAggregatorConfig::average_pooled(1024))?;
    for batch in [1, 8] {
        let x = input(batch);
        let reps = if batch == 1 { 5 } else { 2 };
        let mut maps = Vec::new();
        let s = time(reps, || {
            maps = wrn.forward(&x).expect("forward");
        });
        println!(
            "wide_resnet50_2 layers [2,3], 224 px, batch {batch}: {:.1} ms/batch, {:.2} images/s",
            s * 1e3,
            batch as f64 / s
        );
        let s = time(reps, || {
            agg.forward(&maps).expect("aggregate");
        });
        println!(
            "patch aggregation (unfold, 1024), WRN layers 2+3, batch {batch}: {:.1} ms/batch",
            s * 1e3
        );
        let s = time(reps, || {
            avg.forward(&maps).expect("aggregate");
        });
        println!(
            "patch aggregation (3x3 average, 1024), WRN layers 2+3, batch {batch}: {:.1} ms/batch",
            s * 1e3
        );
    }
    Ok(())
}
