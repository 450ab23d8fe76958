//! The built-in benchmark: MVTec-layout categories cut from texture photos, with synthetic
//! defects of several kinds and exact masks.

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
pub use config::{BenchmarkConfig, DefectKind, TileSource};
pub use contact_sheet::render_contact_sheet;
pub use generator::generate_benchmark;
pub use texture::{Texture, load_texture, synthetic_texture};
