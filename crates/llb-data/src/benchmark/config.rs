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

/// A fixed catalogue of defect types per category (benchmark v2): each category draws, once from
/// (seed, category), between `min_types` and `max_types` distinct kinds of
/// [`BenchmarkConfig::defect_kinds`], each with its appearance fixed (brightness, tint, width,
/// size range, blob shape, cut-paste donor and patch); only placement, orientation and a small
/// jitter change from one defect of a type to the next, so defective training images carry the
/// same defects as the test set, as on a production line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefectCatalogueConfig {
    /// Fewest defect types per category (at least 1).
    pub min_types: usize,
    /// Most defect types per category (at most the number of defect kinds).
    pub max_types: usize,
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
    /// Defective tiles in the contamination pool `pool/<type>/` (masks in
    /// `ground_truth_pool/<type>/`), spread round-robin over the types like the test tiles; 0
    /// writes no pool (benchmark v1).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub n_pool_defective: usize,
    /// A fixed catalogue of recurring defect types per category; `None` draws every defect's
    /// appearance afresh (benchmark v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defect_catalogue: Option<DefectCatalogueConfig>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
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
            n_pool_defective: 0,
            defect_catalogue: None,
        }
    }

    /// `llb benchmark v2`, whose checksums are committed in `datasets/benchmark-v2.sha256`:
    /// seed 2602, 256 px tiles from the whole photo, per category 120 train / 50 test normal /
    /// 60 test defective / 120 pool defective tiles, and a catalogue of 3–4 recurring defect
    /// types per category drawn from 5 kinds. Warp is left out: on grass, gravel and paving a
    /// warp is next to invisible. α = 0.4 needs round(0.4·120/0.6) = 80 pool tiles; 120 leave
    /// each seed its own draw of them. Meant for
    /// [`BENCHMARK_V2_TEXTURES`](crate::BENCHMARK_V2_TEXTURES).
    pub fn llb_benchmark_v2() -> Self {
        Self {
            seed: 2602,
            tile_size_px: 256,
            n_train_good: 120,
            n_test_good: 50,
            n_test_defective: 60,
            defect_kinds: vec![
                DefectKind::ColourShift,
                DefectKind::CutPaste,
                DefectKind::Hole,
                DefectKind::Scratch,
                DefectKind::Stain,
            ],
            tile_source: TileSource::WholePhoto,
            n_pool_defective: 120,
            defect_catalogue: Some(DefectCatalogueConfig { min_types: 3, max_types: 4 }),
        }
    }

    /// Checks the fields.
    ///
    /// # Errors
    /// [`Error::Config`] for tiles under 32 px, no training tiles, no test tiles, an empty or
    /// repeating defect kind list while defective tiles are asked for, or a catalogue whose type
    /// counts are not `1 <= min_types <= max_types <= defect_kinds.len()`.
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
        let n_defective = self.n_test_defective + self.n_pool_defective;
        if kinds.len() != self.defect_kinds.len() || (kinds.is_empty() && n_defective > 0) {
            return Err(Error::config(
                "defect_kinds",
                format!("{:?}", self.defect_kinds),
                "a non-empty list without repeats",
            ));
        }
        if let Some(catalogue) = &self.defect_catalogue {
            let (lo, hi) = (catalogue.min_types, catalogue.max_types);
            if lo == 0 || lo > hi || hi > kinds.len() {
                return Err(Error::config(
                    "defect_catalogue",
                    format!("min_types {lo}, max_types {hi}"),
                    format!("1 <= min_types <= max_types <= {} (the defect kinds)", kinds.len()),
                ));
            }
        }
        Ok(())
    }
}
