//! The run context: asset cache, fetch options and device, and the encoders built from them.

use super::backbone::{EncoderKind, EncoderSettings};
use super::extract::Extractor;
use crate::fetch_cmd::ensure_bundle;
use anyhow::Context as _;
use candle_core::Device;
use llb_assets::{AssetCache, Bundle, FetchOptions};
use llb_features::{
    Dinov2Config, Dinov2Encoder, EfficientNetLiteConfig, EfficientNetLiteEncoder,
    EfficientNetLiteEncoderConfig, Encoder, FeatureCache, ViTConfig,
};
use std::path::PathBuf;
/// Where assets and features live, and which device runs the networks.
pub(crate) struct RunContext {
    pub(crate) assets: AssetCache,
    pub(crate) options: FetchOptions,
    pub(crate) device: Device,
}

impl RunContext {
    /// The cache at `cache` (or `$LLB_CACHE`, default `~/.cache/llb`), running on `device`
    /// (the command line's `--device`).
    pub(crate) fn new(cache: Option<PathBuf>, device: &Device) -> anyhow::Result<Self> {
        let assets = match cache {
            Some(dir) => AssetCache::new(dir),
            None => {
                AssetCache::from_env().context("choosing the cache folder (pass --cache DIR)")?
            }
        };
        let options = FetchOptions::offline(llb_assets::hub_cache_from_env());
        Ok(Self { assets, options, device: device.clone() })
    }

    /// The cache path of a bundle's converted weights, fetching and converting them on first use.
    fn weights(&self, bundle: &Bundle, file: &str) -> anyhow::Result<PathBuf> {
        ensure_bundle(&self.assets, &self.options, bundle)?;
        Ok(file.split('/').fold(self.assets.root().to_path_buf(), |p, part| p.join(part)))
    }

    /// Builds the encoder `settings` names, with its feature cache.
    pub(crate) fn extractor(&self, settings: &EncoderSettings) -> anyhow::Result<Extractor> {
        let features = FeatureCache::open(self.assets.root().join("features"))?;
        let (path, encoder): (PathBuf, Box<dyn Encoder>) = match settings.kind {
            EncoderKind::Dinov2Vits14 => {
                let path =
                    self.weights(&llb_assets::DINOV2_VITS14, llb_assets::DINOV2_VITS14_WEIGHTS)?;
                let config = Dinov2Config {
                    vit: ViTConfig::dinov2_small(),
                    blocks: settings.layers.clone(),
                    apply_final_layernorm: false,
                };
                let encoder = Dinov2Encoder::load(&path, &config, &self.device)
                    .with_context(|| format!("loading {}", path.display()))?;
                (path, Box::new(encoder))
            }
            EncoderKind::EfficientnetLite0 => {
                let path = self.weights(
                    &llb_assets::EFFICIENTNET_LITE0,
                    llb_assets::EFFICIENTNET_LITE0_WEIGHTS,
                )?;
                let config = EfficientNetLiteEncoderConfig {
                    model: EfficientNetLiteConfig::lite0(),
                    out_blocks: settings.layers.clone(),
                };
                let encoder = EfficientNetLiteEncoder::load(&path, &config, &self.device)
                    .with_context(|| format!("loading {}", path.display()))?;
                (path, Box::new(encoder))
            }
        };
        let sha = llb_assets::sha256_file(&path)
            .with_context(|| format!("hashing {}", path.display()))?;
        let mut extractor =
            Extractor::new(encoder, &sha, settings.image_size_px, features, self.device.clone())?;
        if let Some(config) = &settings.aggregation {
            extractor = extractor.with_aggregation(llb_features::PatchAggregator::new(config)?);
        }
        Ok(extractor)
    }
}
