//! The data of an experiment: which data set a manifest names, its clean split per category, its
//! contaminated split at each α, and the built-in benchmark generated into the cache.

use super::manifest::Manifest;
use crate::pipeline::{RunContext, model_dir};
use anyhow::Context;
use llb_data::{BenchmarkConfig, ContaminationConfig, Dataset, RealIadSplit};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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
}

impl DatasetSpec {
    pub(crate) fn categories(&self) -> Vec<String> {
        match self {
            DatasetSpec::Benchmark { categories, .. }
            | DatasetSpec::Mvtec { categories, .. }
            | DatasetSpec::Realiad { categories, .. } => categories.clone(),
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
        DatasetSpec::Benchmark { config, .. } => {
            let root = ensure_benchmark(config, ctx)?;
            Ok(Some(llb_data::read_mvtec(&root, category)?))
        }
        DatasetSpec::Mvtec { root, .. } => Ok(Some(llb_data::read_mvtec(root, category)?)),
        DatasetSpec::Realiad { .. } => Ok(None),
    }
}

/// The training/test split at α: contaminated by us, or Real-IAD's FUIAD split file.
pub(crate) fn contaminated(
    manifest: &Manifest,
    clean: Option<&Dataset>,
    category: &str,
    ratio: f64,
) -> anyhow::Result<Dataset> {
    match (clean, &manifest.dataset) {
        (Some(clean), _) => Ok(llb_data::contaminate(
            clean.clone(),
            &ContaminationConfig { contamination_ratio: ratio, seed: manifest.contamination_seed },
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

/// Generates the benchmark into `<cache>/benchmark/<config hash>` unless a finished copy is there.
fn ensure_benchmark(config: &BenchmarkConfig, ctx: &RunContext) -> anyhow::Result<PathBuf> {
    let hash = llb_features::sha256_hex(serde_json::to_string(config)?.as_bytes());
    let root = ctx.assets.root().join("benchmark").join(&hash[..16]);
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
    let mut textures = Vec::new();
    for asset in llb_assets::TEXTURE_ASSETS {
        let path = ctx
            .assets
            .fetch(asset, &ctx.options)
            .with_context(|| format!("fetching {}", asset.id))?
            .path;
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or(asset.id).to_owned();
        textures.push(llb_data::load_texture(&name, &path)?);
    }
    llb_data::generate_benchmark(&textures, config, &root)?;
    model_dir::write_json(&stamp, config)?;
    Ok(root)
}
