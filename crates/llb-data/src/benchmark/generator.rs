//! Writes the benchmark: one MVTec-layout category per texture.

use super::catalogue::{self, DefectType};
use super::config::{BenchmarkConfig, DefectKind};
use super::defects;
use super::math::{Tile, tile_rng};
use super::texture::{Region, Texture, check_texture, crop_tile};
use crate::error::{Error, Result};
use rand::Rng;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Generator streams: one independent random stream per kind of tile.
const STREAM_TRAIN: u64 = 1;
const STREAM_TEST_GOOD: u64 = 2;
const STREAM_TEST_DEFECT: u64 = 3;
const STREAM_POOL_DEFECT: u64 = 4;

/// One file-writing job.
enum Job {
    Good {
        region: Region,
        stream: u64,
        index: usize,
        path: PathBuf,
    },
    Defect {
        /// Index into the category's defect kinds (and its catalogue, when there is one).
        slot: usize,
        stream: u64,
        index: usize,
        kind_index: usize,
        image: PathBuf,
        mask: PathBuf,
    },
}

/// Generates the benchmark under `out_dir`: for every texture, a category folder
/// `<name>/train/good/NNN.png`, `<name>/test/good/NNN.png`, `<name>/test/<kind>/NNN.png` and
/// `<name>/ground_truth/<kind>/NNN_mask.png` (the MVTec AD layout, read back by
/// [`read_mvtec`](crate::read_mvtec)), plus, when `n_pool_defective > 0`, the contamination pool
/// `<name>/pool/<kind>/NNN.png` with masks `<name>/ground_truth_pool/<kind>/NNN_mask.png`
/// (read into [`Dataset::pool`](crate::Dataset::pool)).
///
/// With a [`defect_catalogue`](BenchmarkConfig::defect_catalogue) (benchmark v2), each category
/// draws its own 3–4 recurring defect types once (see
/// [`DefectCatalogueConfig`](crate::DefectCatalogueConfig)) and defective tile `i` (test or pool)
/// gets type `i % n_types`; cut-paste patches come from the type's fixed donor.
///
/// Tiles are `tile_size_px`² RGB PNG files; masks are 8-bit grey PNG files, 255 = defect.
/// With [`TileSource::DisjointHalves`](crate::TileSource::DisjointHalves), training tiles come from the top half of each texture and test tiles from the bottom half
/// (see [`Texture`]); defective tile `i` gets kind `defect_kinds[i % len]`. Cut-paste takes its
/// patch from another texture (half the time, when there is one) or from another place of the
/// same texture's bottom half. Each tile has its own generator seeded from (seed, texture name,
/// tile kind, index), so the output is byte-identical for the same inputs, whatever the thread
/// count; it returns the sorted category names.
///
/// # Errors
/// - [`Error::Config`] for an invalid config, an invalid texture name or a repeated name;
/// - [`Error::TooSmall`] for a texture smaller than `tile_size_px` wide or `2·tile_size_px` tall;
/// - [`Error::Io`], [`Error::Encode`] when writing fails.
pub fn generate_benchmark(
    textures: &[Texture],
    config: &BenchmarkConfig,
    out_dir: &Path,
) -> Result<Vec<String>> {
    let _span = tracing::info_span!(
        "generate_benchmark",
        n_categories = textures.len(),
        seed = config.seed
    )
    .entered();
    config.validate()?;
    if textures.is_empty() {
        return Err(Error::config("textures", "[]", "at least one texture"));
    }
    let mut names: Vec<String> = textures.iter().map(|t| t.name.clone()).collect();
    names.sort();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::config("texture name", &w[0], "unique across textures"));
    }
    for texture in textures {
        check_texture(texture, config.tile_size_px, config.tile_source)?;
    }
    for (t_index, texture) in textures.iter().enumerate() {
        let catalogue = catalogue::draw(config, textures, t_index);
        let kinds: Vec<DefectKind> = match &catalogue {
            Some(types) => types.iter().map(|t| t.kind).collect(),
            None => config.defect_kinds.clone(),
        };
        tracing::debug!(category = %texture.name, ?kinds, "defect types");
        let jobs = jobs(&texture.name, &kinds, config, out_dir);
        for dir in jobs.iter().filter_map(|j| job_paths(j).0.parent().map(Path::to_path_buf)) {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        let mask_dirs = jobs
            .iter()
            .filter_map(|j| job_paths(j).1.and_then(Path::parent).map(Path::to_path_buf));
        for dir in mask_dirs {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        let tiles = Tiles { textures, t_index, config, catalogue: catalogue.as_deref() };
        jobs.par_iter().try_for_each(|job| tiles.run(job))?;
        tracing::debug!(category = %texture.name, n_files = jobs.len(), "wrote category");
    }
    Ok(names)
}

fn job_paths(job: &Job) -> (&Path, Option<&Path>) {
    match job {
        Job::Good { path, .. } => (path, None),
        Job::Defect { image, mask, .. } => (image, Some(mask)),
    }
}

fn jobs(name: &str, kinds: &[DefectKind], config: &BenchmarkConfig, out_dir: &Path) -> Vec<Job> {
    let cat = out_dir.join(name);
    let mut jobs = Vec::new();
    for index in 0..config.n_train_good {
        let path = cat.join(format!("train/good/{index:03}.png"));
        jobs.push(Job::Good { region: Region::Train, stream: STREAM_TRAIN, index, path });
    }
    for index in 0..config.n_test_good {
        let path = cat.join(format!("test/good/{index:03}.png"));
        jobs.push(Job::Good { region: Region::Test, stream: STREAM_TEST_GOOD, index, path });
    }
    let splits = [
        (config.n_test_defective, STREAM_TEST_DEFECT, "test", "ground_truth"),
        (config.n_pool_defective, STREAM_POOL_DEFECT, "pool", "ground_truth_pool"),
    ];
    for (n, stream, images, masks) in splits {
        for index in 0..n {
            let (slot, kind_index) = (index % kinds.len(), index / kinds.len());
            let folder = kinds[slot].folder_name();
            let image = cat.join(format!("{images}/{folder}/{kind_index:03}.png"));
            let mask = cat.join(format!("{masks}/{folder}/{kind_index:03}_mask.png"));
            jobs.push(Job::Defect { slot, stream, index, kind_index, image, mask });
        }
    }
    jobs
}

/// What a job needs to make its tile.
struct Tiles<'a> {
    textures: &'a [Texture],
    t_index: usize,
    config: &'a BenchmarkConfig,
    /// The category's defect types (benchmark v2); `None` draws each defect afresh (v1).
    catalogue: Option<&'a [DefectType]>,
}

impl Tiles<'_> {
    fn run(&self, job: &Job) -> Result<()> {
        let (textures, t_index, config) = (self.textures, self.t_index, self.config);
        let texture = &textures[t_index];
        let size = config.tile_size_px;
        match job {
            Job::Good { region, stream, index, path } => {
                let mut rng = tile_rng(config.seed, &texture.name, *stream, *index as u64);
                write_rgb(path, &crop_tile(texture, *region, config.tile_source, size, &mut rng))
            }
            Job::Defect { slot, stream, index, kind_index, image, mask } => {
                let mut rng = tile_rng(config.seed, &texture.name, *stream, *index as u64);
                let mut tile = crop_tile(texture, Region::Test, config.tile_source, size, &mut rng);
                let defect_mask = match self.catalogue {
                    Some(types) => types[*slot].apply(&mut tile, textures, &mut rng),
                    None => {
                        let kind = config.defect_kinds[*slot];
                        let donor = if kind == DefectKind::CutPaste
                            && textures.len() > 1
                            && rng.random_bool(0.5)
                        {
                            let other =
                                (t_index + rng.random_range(1..textures.len())) % textures.len();
                            let other = &textures[other];
                            crop_tile(other, Region::Test, config.tile_source, size, &mut rng)
                        } else {
                            crop_tile(texture, Region::Test, config.tile_source, size, &mut rng)
                        };
                        defects::apply(kind, &mut tile, &donor, &mut rng)
                    }
                };
                tracing::trace!(slot, kind_index, "defective tile");
                write_rgb(image, &tile)?;
                let bytes: Vec<u8> = defect_mask.iter().map(|&m| if m { 255 } else { 0 }).collect();
                image::save_buffer(mask, &bytes, size, size, image::ExtendedColorType::L8)
                    .map_err(|source| Error::Encode { path: mask.clone(), source })
            }
        }
    }
}

fn write_rgb(path: &Path, tile: &Tile) -> Result<()> {
    let size = tile.size as u32;
    image::save_buffer(path, &tile.to_rgb8(), size, size, image::ExtendedColorType::Rgb8)
        .map_err(|source| Error::Encode { path: path.to_path_buf(), source })
}
