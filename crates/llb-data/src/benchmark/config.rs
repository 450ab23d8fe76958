//! Benchmark configuration and defect kinds.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// A kind of synthetic defect; its folder name is the snake_case name (`cut_paste`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefectKind {
    /// A thin curved line (quadratic Bézier, 1–3.5 px wide), lighter or darker than the surface.
    Scratch,
    /// A rectangle or irregular patch copied from another texture, or from another place of the
    /// same texture turned by a multiple of 90° with a brightness change.
    CutPaste,
    /// An irregular blob, darkened and tinted, with a soft interior edge.
    Stain,
    /// A small irregular dark hole, lighter towards its rim.
    Hole,
    /// A region whose brightness or colour balance changes.
    ColourShift,
    /// A small local swirl or bulge of the surface.
    Warp,
}

impl DefectKind {
    /// Every kind, in folder-name order.
    pub const ALL: [DefectKind; 6] = [
        DefectKind::ColourShift,
        DefectKind::CutPaste,
        DefectKind::Hole,
        DefectKind::Scratch,
        DefectKind::Stain,
        DefectKind::Warp,
    ];

    /// The test / ground-truth folder name.
    pub fn folder_name(self) -> &'static str {
        match self {
            Self::Scratch => "scratch",
            Self::CutPaste => "cut_paste",
            Self::Stain => "stain",
            Self::Hole => "hole",
            Self::ColourShift => "colour_shift",
            Self::Warp => "warp",
        }
    }
}

/// Where in the photo training and test tiles are cropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TileSource {
    /// Training tiles from the top half (rows `0..H/2`), test tiles from the bottom half: test
    /// normals are never seen, but any difference between the halves (lighting, scale) is a
    /// train/test shift, and contamination moves bottom-half tiles into training.
    DisjointHalves,
    /// Every tile from anywhere in the photo: train and test normals share one distribution,
    /// like photos of one product, and crops may overlap.
    WholePhoto,
}

/// What the generator writes, per category (one category per texture).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkConfig {
    /// Seed of every random choice (crops, flips, defect kinds, shapes and strengths).
    pub seed: u64,
    /// Side of the square tiles written (RGB PNG) and of their masks.
    pub tile_size_px: u32,
    /// Normal tiles in `train/good`.
    pub n_train_good: usize,
    /// Normal tiles in `test/good`.
    pub n_test_good: usize,
    /// Defective tiles in `test/<kind>`, spread round-robin over `defect_kinds`.
    pub n_test_defective: usize,
    /// Defect kinds used; must be non-empty and without repeats.
    pub defect_kinds: Vec<DefectKind>,
    /// Where training and test tiles come from.
    pub tile_source: TileSource,
}

impl BenchmarkConfig {
    /// `llb benchmark v1`, the set whose checksums are committed in `datasets/benchmark-v1*.sha256`:
    /// seed 2508, 256 px tiles, 60 train / 30 test normal / 42 defective tiles (7 of each of the
    /// 6 kinds) per category.
    pub fn llb_benchmark_v1() -> Self {
        Self {
            seed: 2508,
            tile_size_px: 256,
            n_train_good: 60,
            n_test_good: 30,
            n_test_defective: 42,
            defect_kinds: DefectKind::ALL.to_vec(),
            tile_source: TileSource::DisjointHalves,
        }
    }

    /// Checks the fields.
    ///
    /// # Errors
    /// [`Error::Config`] for tiles under 32 px, no training tiles, no test tiles, or an empty or
    /// repeating defect kind list while defective tiles are asked for.
    pub fn validate(&self) -> Result<()> {
        if self.tile_size_px < 32 {
            return Err(Error::config("tile_size_px", self.tile_size_px, "at least 32"));
        }
        if self.n_train_good == 0 {
            return Err(Error::config("n_train_good", self.n_train_good, "at least 1"));
        }
        if self.n_test_good + self.n_test_defective == 0 {
            return Err(Error::config(
                "n_test_defective",
                self.n_test_defective,
                "at least 1 test tile in all",
            ));
        }
        let mut kinds = self.defect_kinds.clone();
        kinds.sort();
        kinds.dedup();
        if kinds.len() != self.defect_kinds.len() || (kinds.is_empty() && self.n_test_defective > 0)
        {
            return Err(Error::config(
                "defect_kinds",
                format!("{:?}", self.defect_kinds),
                "a non-empty list without repeats",
            ));
        }
        Ok(())
    }
}
