//! Decode + preprocess throughput on the built-in benchmark (images per second at 256 px).
//!
//! Usage: `cargo run --release -p llb-data --example bench_data -- [--textures DIR] [--out DIR]`.
//! Textures default to `$LLB_CACHE/images/textures/{brick,grass,gravel}.png` when present and to
//! the synthetic stand-ins otherwise; `--out` keeps the generated benchmark (else a temporary
//! folder). Prints one JSON object per measurement on stdout: the generation time, then
//! `prepare_images` (decode, RGB, resize, centre crop, normalise; rayon over all cores) for three
//! geometries (256 px tiles kept, centre-cropped to 224, resized to 224), the median of 5 timed
//! passes after one warm-up pass.

#![allow(clippy::print_stdout, reason = "an example reports to stdout")]

use llb_data::{
    BenchmarkConfig, PreprocessConfig, Sample, Texture, generate_benchmark, load_texture,
    prepare_images, read_mvtec, synthetic_texture,
};
use std::path::{Path, PathBuf};
use std::time::Instant;

const NAMES: [&str; 3] = ["brick", "grass", "gravel"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut texture_dir, mut out) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--textures" => texture_dir = args.next().map(PathBuf::from),
            "--out" => out = args.next().map(PathBuf::from),
            other => {
                return Err(format!(
                    "unknown argument {other}; usage: bench_data [--textures DIR] [--out DIR]"
                )
                .into());
            }
        }
    }
    let texture_dir = texture_dir.or_else(|| {
        let dir = PathBuf::from(std::env::var_os("LLB_CACHE")?).join("images/textures");
        NAMES.iter().all(|n| dir.join(format!("{n}.png")).is_file()).then_some(dir)
    });
    let (textures, source) = match &texture_dir {
        Some(dir) => (load(dir)?, "photos"),
        None => (
            NAMES.iter().zip(1u64..).map(|(n, s)| synthetic_texture(n, s, 512, 512)).collect(),
            "synthetic",
        ),
    };
    let temp = tempfile::tempdir()?;
    let root = out.unwrap_or_else(|| temp.path().to_path_buf());
    let config = BenchmarkConfig::llb_benchmark_v1();
    let start = Instant::now();
    let categories = generate_benchmark(&textures, &config, &root)?;
    let generate_s = start.elapsed().as_secs_f64();
    println!(
        r#"{{"bench":"generate_benchmark","textures":"{source}","categories":{},"seconds":{generate_s:.3}}}"#,
        categories.len()
    );

    let mut samples: Vec<Sample> = Vec::new();
    for category in &categories {
        let d = read_mvtec(&root, category)?;
        samples.extend(d.train);
        samples.extend(d.test);
    }
    let threads = rayon::current_num_threads();
    for (resize_px, crop_px) in [(256, 256), (256, 224), (224, 224)] {
        let preprocess = PreprocessConfig::imagenet(resize_px, crop_px);
        let failures = prepare_images(&samples, &preprocess)?.failures.len();
        let mut seconds: Vec<f64> = (0..5)
            .map(|_| {
                let start = Instant::now();
                let prepared = prepare_images(&samples, &preprocess);
                std::hint::black_box(prepared.map(|p| p.items.len()).unwrap_or(0));
                start.elapsed().as_secs_f64()
            })
            .collect();
        seconds.sort_by(f64::total_cmp);
        let median = seconds[2];
        println!(
            r#"{{"bench":"decode_preprocess","image_px":{},"resize_px":{resize_px},"crop_px":{crop_px},"n_images":{},"failures":{failures},"threads":{threads},"median_seconds":{median:.4},"images_per_s":{:.1}}}"#,
            config.tile_size_px,
            samples.len(),
            samples.len() as f64 / median
        );
    }
    Ok(())
}

fn load(dir: &Path) -> Result<Vec<Texture>, llb_data::Error> {
    NAMES.iter().map(|n| load_texture(n, &dir.join(format!("{n}.png")))).collect()
}
