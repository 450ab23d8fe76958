//! Renders the benchmark contact sheet (`docs/img/benchmark-contact-sheet.png`).
//!
//! Usage: `cargo run --release -p llb-data --example contact_sheet -- <texture dir> <out.png> [cell px]`,
//! where the texture folder holds `brick.png`, `grass.png` and `gravel.png` (scikit-image's
//! CC0 textures, e.g. `$LLB_CACHE/images/textures`). The benchmark is generated with
//! `BenchmarkConfig::llb_benchmark_v1()` into a temporary folder first.

#![allow(clippy::print_stdout, reason = "an example reports to stdout")]

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use llb_data::{BenchmarkConfig, generate_benchmark, load_texture, render_contact_sheet};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: contact_sheet <texture dir> <out.png> [cell px]";
    let texture_dir = PathBuf::from(args.next().ok_or(usage)?);
    let out = PathBuf::from(args.next().ok_or(usage)?);
    let cell_px: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(112);
    let textures = ["brick", "grass", "gravel"]
        .iter()
        .map(|name| load_texture(name, &texture_dir.join(format!("{name}.png"))))
        .collect::<Result<Vec<_>, _>>()?;
    let work = tempfile::tempdir()?;
    let categories =
        generate_benchmark(&textures, &BenchmarkConfig::llb_benchmark_v1(), work.path())?;
    let sheet = render_contact_sheet(work.path(), &categories, cell_px)?;
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
