//! Renders a benchmark contact sheet: `docs/img/benchmark-contact-sheet.png` (v1) or
//! `docs/img/benchmark-v2-contact-sheet.png` (v2).
//!
//! Usage: `cargo run --release -p llb-data --example contact_sheet -- <v1|v2> <llb cache> <out.png>
//! [cell px] [tiles per folder] [out dir]`, where the cache holds the photos as `llb fetch` lays
//! them out (`images/textures/{brick,grass,gravel}.png`, and for v2 `images/mvtb/{walls-l,roof}.png`).
//! The benchmark is generated with `BenchmarkConfig::llb_benchmark_v1()` or `_v2()` into a
//! temporary folder first (or into `out dir`, kept, when given).

#![allow(clippy::print_stdout, reason = "an example reports to stdout")]

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use llb_data::{
    BENCHMARK_V2_TEXTURES, BenchmarkConfig, generate_benchmark, load_texture_photo,
    render_contact_sheet,
};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage =
        "usage: contact_sheet <v1|v2> <llb cache> <out.png> [cell px] [per folder] [out dir]";
    let version = args.next().ok_or(usage)?;
    let cache = PathBuf::from(args.next().ok_or(usage)?);
    let out = PathBuf::from(args.next().ok_or(usage)?);
    let cell_px: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(112);
    let per_folder: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1);
    let keep = args.next().map(PathBuf::from);
    let (config, photos) = match version.as_str() {
        "v1" => (BenchmarkConfig::llb_benchmark_v1(), &BENCHMARK_V2_TEXTURES[..3]),
        "v2" => (BenchmarkConfig::llb_benchmark_v2(), &BENCHMARK_V2_TEXTURES[..]),
        _ => return Err(usage.into()),
    };
    let textures = photos
        .iter()
        .map(|photo| load_texture_photo(photo, &cache.join(photo.cache_path)))
        .collect::<Result<Vec<_>, _>>()?;
    let work = tempfile::tempdir()?;
    let root = keep.unwrap_or_else(|| work.path().to_path_buf());
    let categories = generate_benchmark(&textures, &config, &root)?;
    let sheet = render_contact_sheet(&root, &categories, cell_px, per_folder)?;
    // Best compression keeps the committed sheet small.
    let file = std::io::BufWriter::new(std::fs::File::create(&out)?);
    let encoder = PngEncoder::new_with_quality(file, CompressionType::Best, FilterType::Adaptive);
    sheet.write_with_encoder(encoder)?;
    println!(
        "wrote {} ({}x{} px, {} bytes)",
        out.display(),
        sheet.width(),
        sheet.height(),
        std::fs::metadata(&out)?.len()
    );
    Ok(())
}
