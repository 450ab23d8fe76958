//! The built-in benchmark: MVTec-layout categories cut from texture photos, with synthetic
//! defects of several kinds and exact masks; version 2 adds a recurring defect catalogue per
//! category and a contamination pool.

mod catalogue;
mod checksum;
mod config;
mod contact_sheet;
mod defects;
mod generator;
mod math;
mod texture;

#[cfg(test)]
mod tests;

pub use checksum::checksum_tree;
pub use config::{BenchmarkConfig, DefectCatalogueConfig, DefectKind, TileSource};
pub use contact_sheet::render_contact_sheet;
pub use generator::generate_benchmark;
pub use texture::{
    BENCHMARK_V2_TEXTURES, PixelRect, Texture, TexturePhoto, load_texture, load_texture_photo,
    synthetic_texture,
};
