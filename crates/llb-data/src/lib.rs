//! `llb-data`: turns folders on disk into samples with explicit, stable ids, and builds the noisy
//! training sets the LLBNAD method is about.
//!
//! Place in the pipeline: first stage. Input: a data set on disk (this crate never downloads;
//! `llb-assets` fetches, the CLI passes paths). Output: [`Dataset`]s of [`Sample`]s for
//! `llb-features` and the crates above, and [`PreparedImage`]s (`[3, H, W]` f32, no tensors).
//!
//! - Readers: [`read_mvtec`], [`read_visa`], [`read_realiad`] / [`read_realiad_json`],
//!   [`read_image_folder`], [`read_fashion_mnist`], [`read_elpv`] (solar cells, with a pool).
//! - Contamination: [`contaminate`] builds the noisy split of a clean data set, drawing anomalies
//!   from [`Dataset::pool`] (test set fixed) or, without a pool, from the test set (FUIAD).
//! - Built-in benchmark: [`generate_benchmark`] writes MVTec-layout categories from texture
//!   photos with synthetic defects and exact masks; [`checksum_tree`] lists what it wrote.
//! - Preprocessing: [`prepare_images`] / [`prepare_masks`] decode, resize and normalise in
//!   parallel, reporting per-sample failures instead of stopping.
//!
//! Invariants: sample ids are unique within a data set (splits and pool), and the splits and the
//! pool are sorted by id; every random choice is seeded from a config and keyed to sample ids;
//! the hidden [`llb_types::Label`] of a training sample is never needed by any model; bad files
//! give errors naming the file, never a panic.

mod benchmark;
mod contamination;
mod error;
#[cfg(test)]
mod fuzz_tests;
mod preprocess;
mod readers;
mod sample;

pub use benchmark::{
    BENCHMARK_V2_TEXTURES, BenchmarkConfig, DefectCatalogueConfig, DefectKind, PixelRect, Texture,
    TexturePhoto, TileSource, checksum_tree, generate_benchmark, load_texture, load_texture_photo,
    render_contact_sheet, synthetic_texture,
};
pub use contamination::{ContaminationConfig, ContaminationReport, anomalies_needed, contaminate};
pub use error::{Error, Result};
pub use preprocess::{
    MAX_IMAGE_BYTES, MAX_IMAGE_EXPANSION, MAX_IMAGE_SIDE_PX, Prepared, PreparedImage, PreparedMask,
    PreprocessConfig, decode_image, load_rgb, prepare_image, prepare_images, prepare_mask,
    prepare_masks,
};
pub use readers::{
    ElpvCell, ElpvCellType, ElpvConfig, ElpvMild, FASHION_MNIST_CLASSES, FashionMnistConfig,
    RealIadSplit, read_elpv, read_elpv_labels, read_fashion_mnist, read_image_folder, read_mvtec,
    read_realiad, read_realiad_json, read_visa, realiad_group,
};
pub use sample::{Dataset, Sample};
