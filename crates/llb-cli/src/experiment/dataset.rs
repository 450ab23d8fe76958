//! The data of an experiment: which data set a manifest names, its clean split per category, its
//! contaminated split at each α, the built-in benchmark generated into the cache, and ELPV
//! fetched into it.

use crate::run_context::RunContext;
use anyhow::Context;
use llb_data::{
    BENCHMARK_V2_TEXTURES, BenchmarkConfig, ContaminationConfig, Dataset, ElpvConfig, RealIadSplit,
    Texture,
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The texture photos a benchmark is generated from. All of a set's textures are passed to the
/// generator, whatever categories a manifest uses, because cut-paste defects take patches from
/// the other textures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum BenchmarkTextures {
    /// Benchmark v1: `brick`, `grass`, `gravel` (scikit-image, bundle `textures`).
    #[default]
    V1,
    /// Benchmark v2 (`llb_data::BENCHMARK_V2_TEXTURES`): v1's three plus `paving` and `slate`
    /// cropped from the mvtb-data photos (bundle `mvtb-photos`).
    V2,
}

/// Where the images come from.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) enum DatasetSpec {
    /// The built-in texture benchmark, generated into the cache from the fetched texture photos.
    Benchmark {
        /// Generator settings.
        config: BenchmarkConfig,
        /// Textures (categories) to use, by name.
        categories: Vec<String>,
        /// The texture photos; `v1` when absent (and not written when `v1`, so manifests and
        /// records of v1 runs read as before).
        #[serde(default, skip_serializing_if = "BenchmarkTextures::is_v1")]
        textures: BenchmarkTextures,
    },
    /// MVTec AD at `root` (contaminated by this tool).
    Mvtec {
        /// Folder holding the categories.
        root: PathBuf,
        /// Categories to use.
        categories: Vec<String>,
    },
    /// Real-IAD at `root`; α selects the `realiad_jsons_fuiad_<α>` split.
    Realiad {
        /// Folder holding `realiad_1024/` and the json folders.
        root: PathBuf,
        /// Categories to use.
        categories: Vec<String>,
    },
    /// ELPV solar cells, one split config per category (cell type); contamination draws from
    /// the pool of defective cells, so the test set is the same at every α.
    Elpv {
        /// Folder holding `labels.csv` and `images/`; absent: the cache's copy, fetched on first
        /// use (bundle `elpv`).
        #[serde(default)]
        root: Option<PathBuf>,
        /// The categories, in order, each with its split.
        configs: Vec<ElpvConfig>,
    },
}

impl DatasetSpec {
    pub(crate) fn categories(&self) -> Vec<String> {
        match self {
            DatasetSpec::Benchmark { categories, .. }
            | DatasetSpec::Mvtec { categories, .. }
            | DatasetSpec::Realiad { categories, .. } => categories.clone(),
            DatasetSpec::Elpv { configs, .. } => {
                configs.iter().map(|c| c.category.name().to_owned()).collect()
            }
        }
    }
}

/// The clean data set of a category (`None` for Real-IAD, whose splits come from files).
pub(crate) fn load_clean(
    spec: &DatasetSpec,
    category: &str,
    ctx: &RunContext,
) -> anyhow::Result<Option<Dataset>> {
    match spec {
        DatasetSpec::Benchmark { config, textures, .. } => {
            let names = texture_names(*textures);
            anyhow::ensure!(
                names.contains(&category),
                "benchmark category `{category}` is not one of the {textures:?} textures: {}",
                names.join(", ")
            );
            let root = ensure_benchmark(config, *textures, ctx)?;
            Ok(Some(llb_data::read_mvtec(&root, category)?))
        }
        DatasetSpec::Mvtec { root, .. } => Ok(Some(llb_data::read_mvtec(root, category)?)),
        DatasetSpec::Realiad { .. } => Ok(None),
        DatasetSpec::Elpv { root, configs } => {
            let config = configs
                .iter()
                .find(|c| c.category.name() == category)
                .with_context(|| format!("no ELPV config for category `{category}`"))?;
            let root = match root {
                Some(root) => root.clone(),
                None => {
                    ctx.assets
                        .fetch_folder(&llb_assets::ELPV_FOLDER)
                        .context("fetching the ELPV folder (bundle `elpv`)")?
                        .path
                }
            };
            Ok(Some(llb_data::read_elpv(&root, config)?))
        }
    }
}

/// The training/test split at α for one replicate `seed`: contaminated by us (the draw seeded
/// by `seed`), or Real-IAD's FUIAD split file (the same for every seed).
pub(crate) fn contaminated(
    spec: &DatasetSpec,
    clean: Option<&Dataset>,
    category: &str,
    ratio: f64,
    seed: u64,
) -> anyhow::Result<Dataset> {
    match (clean, spec) {
        (Some(clean), _) => Ok(llb_data::contaminate(
            clean.clone(),
            &ContaminationConfig { contamination_ratio: ratio, seed },
        )?),
        (None, DatasetSpec::Realiad { root, .. }) => {
            use RealIadSplit::*;
            let split = [Fuiad00, Fuiad01, Fuiad02, Fuiad04]
                .into_iter()
                .find(|s| s.contamination_ratio() == Some(ratio))
                .with_context(|| {
                    format!("Real-IAD has FUIAD splits for α ∈ {{0, 0.1, 0.2, 0.4}}, not {ratio}")
                })?;
            Ok(llb_data::read_realiad(root, split, category)?)
        }
        (None, _) => unreachable!("only Real-IAD has no clean data set"),
    }
}

/// The category names of a texture set.
fn texture_names(textures: BenchmarkTextures) -> Vec<&'static str> {
    let n = match textures {
        BenchmarkTextures::V1 => 3,
        BenchmarkTextures::V2 => BENCHMARK_V2_TEXTURES.len(),
    };
    BENCHMARK_V2_TEXTURES[..n].iter().map(|t| t.name).collect()
}

/// Fetches (on first use) and loads the photos of a texture set, cropped to their textures.
fn load_textures(textures: BenchmarkTextures, ctx: &RunContext) -> anyhow::Result<Vec<Texture>> {
    let assets: Vec<&llb_assets::Asset> =
        llb_assets::TEXTURE_ASSETS.iter().chain(llb_assets::MVTB_PHOTO_ASSETS).collect();
    let mut loaded = Vec::new();
    for name in texture_names(textures) {
        let photo =
            BENCHMARK_V2_TEXTURES.iter().find(|t| t.name == name).context("texture table")?;
        let asset = assets
            .iter()
            .find(|a| a.dest == photo.cache_path)
            .with_context(|| format!("no asset is fetched to `{}`", photo.cache_path))?;
        let path = ctx
            .assets
            .fetch(asset, &ctx.options)
            .with_context(|| format!("fetching {}", asset.id))?
            .path;
        loaded.push(llb_data::load_texture_photo(photo, &path)?);
    }
    Ok(loaded)
}

impl BenchmarkTextures {
    fn is_v1(&self) -> bool {
        *self == BenchmarkTextures::V1
    }
}

/// Where a benchmark goes: `<cache>/benchmark/<hash>`, the hash of the config's JSON (v1, as
/// before there was a v2) or of the JSON plus the texture set (others).
fn benchmark_root(
    config: &BenchmarkConfig,
    textures: BenchmarkTextures,
    ctx: &RunContext,
) -> anyhow::Result<PathBuf> {
    let mut key = serde_json::to_string(config)?;
    if textures != BenchmarkTextures::V1 {
        key.push_str(&format!("\ntextures={}", serde_json::to_string(&textures)?));
    }
    let hash = llb_types::sha256::sha256_hex(key.as_bytes());
    Ok(ctx.assets.root().join("benchmark").join(&hash[..16]))
}

/// Generates the benchmark into its cache folder (see [`benchmark_root`]) unless a finished copy
/// is there (its `config.json` stamp is written last).
fn ensure_benchmark(
    config: &BenchmarkConfig,
    textures: BenchmarkTextures,
    ctx: &RunContext,
) -> anyhow::Result<PathBuf> {
    let root = benchmark_root(config, textures, ctx)?;
    // Two runs on one cache: the second waits while the first generates, then finds the stamp.
    let lock = root.with_extension("lock");
    let _lock = llb_types::FileLock::exclusive_or_wait(&lock, || {
        tracing::info!(root = %root.display(), "another run is generating the benchmark; waiting");
    })
    .with_context(|| format!("locking {}", lock.display()))?;
    let stamp = root.join("config.json");
    if let Ok(text) = std::fs::read_to_string(&stamp)
        && serde_json::from_str::<llb_data::BenchmarkConfig>(&text).ok().as_ref() == Some(config)
    {
        return Ok(root);
    }
    let _span = tracing::info_span!("generate_benchmark", root = %root.display()).entered();
    let loaded = load_textures(textures, ctx)?;
    llb_data::generate_benchmark(&loaded, config, &root)?;
    llb_pipeline::write_json(&stamp, config)?;
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use llb_data::ElpvCellType;

    fn spec(json: &str) -> DatasetSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn manifest_snippets_for_benchmark_v2_and_elpv_parse() {
        let v2 = serde_json::to_string(&BenchmarkConfig::llb_benchmark_v2()).unwrap();
        let benchmark = spec(&format!(
            r#"{{"kind": "benchmark", "config": {v2}, "categories": ["paving", "slate"], "textures": "v2"}}"#
        ));
        assert!(matches!(
            &benchmark,
            DatasetSpec::Benchmark { textures: BenchmarkTextures::V2, .. }
        ));
        assert_eq!(benchmark.categories(), ["paving", "slate"]);
        let v1 = serde_json::to_string(&BenchmarkConfig::llb_benchmark_v1()).unwrap();
        let old =
            spec(&format!(r#"{{"kind": "benchmark", "config": {v1}, "categories": ["brick"]}}"#));
        assert!(matches!(old, DatasetSpec::Benchmark { textures: BenchmarkTextures::V1, .. }));
        assert!(!serde_json::to_string(&old).unwrap().contains("textures"));

        let mono = serde_json::to_string(&ElpvConfig::llb_v2(ElpvCellType::Mono)).unwrap();
        let poly = serde_json::to_string(&ElpvConfig::llb_v2(ElpvCellType::Poly)).unwrap();
        let elpv = spec(&format!(r#"{{"kind": "elpv", "configs": [{mono}, {poly}]}}"#));
        assert_eq!(elpv.categories(), ["mono", "poly"]);
        assert!(matches!(elpv, DatasetSpec::Elpv { root: None, .. }));
        let typo = format!(r#"{{"kind": "elpv", "configs": [{mono}], "roots": "/x"}}"#);
        assert!(serde_json::from_str::<DatasetSpec>(&typo).is_err());
    }

    #[test]
    fn every_benchmark_texture_has_an_asset_and_v1_keeps_its_three() {
        let assets: Vec<&str> = llb_assets::TEXTURE_ASSETS
            .iter()
            .chain(llb_assets::MVTB_PHOTO_ASSETS)
            .map(|a| a.dest)
            .collect();
        for photo in BENCHMARK_V2_TEXTURES {
            assert!(assets.contains(&photo.cache_path), "{}", photo.cache_path);
        }
        assert_eq!(texture_names(BenchmarkTextures::V1), ["brick", "grass", "gravel"]);
        assert_eq!(texture_names(BenchmarkTextures::V2).len(), 5);
    }

    #[test]
    fn benchmark_cache_folder_of_v1_is_keyed_as_before_and_v2_apart() {
        let dir = tempfile::tempdir().unwrap();
        let ctx =
            RunContext::new(Some(dir.path().to_path_buf()), &candle_core::Device::Cpu).unwrap();
        let config = BenchmarkConfig::llb_benchmark_v1();
        let hash =
            llb_types::sha256::sha256_hex(serde_json::to_string(&config).unwrap().as_bytes());
        let v1 = benchmark_root(&config, BenchmarkTextures::V1, &ctx).unwrap();
        assert_eq!(v1, dir.path().join("benchmark").join(&hash[..16]));
        assert_ne!(benchmark_root(&config, BenchmarkTextures::V2, &ctx).unwrap(), v1);
        let unknown = DatasetSpec::Benchmark {
            config,
            categories: vec!["paving".into()],
            textures: BenchmarkTextures::V1,
        };
        let err = load_clean(&unknown, "paving", &ctx).unwrap_err();
        assert!(err.to_string().contains("brick, grass, gravel"), "{err}");
    }

    #[test]
    fn elpv_from_a_root_contaminates_from_its_pool_with_a_fixed_test_set() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("elpv");
        std::fs::create_dir_all(root.join("images")).unwrap();
        let mut labels = String::new();
        for i in 0..30 {
            let probability = if i < 18 { "0.0" } else { "1.0" };
            labels.push_str(&format!("images/cell{i:04}.png  {probability}  mono\n"));
            image::GrayImage::new(4, 4).save(root.join(format!("images/cell{i:04}.png"))).unwrap();
        }
        std::fs::write(root.join("labels.csv"), labels).unwrap();
        let config = ElpvConfig {
            n_test_normal: 4,
            n_test_anomalous: 4,
            n_train_normal: Some(12),
            ..ElpvConfig::llb_v2(ElpvCellType::Mono)
        };
        let spec = DatasetSpec::Elpv { root: Some(root), configs: vec![config] };
        let ctx =
            RunContext::new(Some(dir.path().join("cache")), &candle_core::Device::Cpu).unwrap();
        let clean = load_clean(&spec, "mono", &ctx).unwrap().unwrap();
        assert_eq!((clean.train.len(), clean.test.len(), clean.pool.len()), (12, 8, 8));
        let config = ContaminationConfig { contamination_ratio: 0.4, seed: 3 };
        let noisy = llb_data::contaminate(clean.clone(), &config).unwrap();
        assert_eq!((noisy.train.len(), noisy.n_train_anomalous()), (20, 8));
        assert_eq!(noisy.test, clean.test);
        assert!(load_clean(&spec, "poly", &ctx).is_err());
    }
}
