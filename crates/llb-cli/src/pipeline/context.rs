//! The run context: asset cache, fetch options and device, and the encoders built from them.

use super::backbone::{EncoderKind, EncoderSettings};
use super::extract::Extractor;
use crate::fetch_weights::ensure_dinov2_small;
use anyhow::Context as _;
use candle_core::Device;
use llb_assets::{AssetCache, FetchOptions};
use llb_features::{Dinov2Config, Dinov2Encoder, FeatureCache, ViTConfig};
use std::path::PathBuf;

/// Where assets and features live, and which device runs the networks.
pub(crate) struct RunContext {
    pub(crate) assets: AssetCache,
    pub(crate) options: FetchOptions,
    pub(crate) device: Device,
}

impl RunContext {
    /// The cache at `cache` (or `$LLB_CACHE`, default `~/.cache/llb`) on the CPU.
    pub(crate) fn new(cache: Option<PathBuf>) -> anyhow::Result<Self> {
        let assets = match cache {
            Some(dir) => AssetCache::new(dir),
            None => AssetCache::from_env().context("choosing the cache folder (pass --cache DIR)")?,
        };
        let options = FetchOptions::offline(llb_assets::hub_cache_from_env());
        Ok(Self { assets, options, device: Device::Cpu })
    }

    /// Builds the encoder `settings` names, with its feature cache.
    pub(crate) fn extractor(&self, settings: &EncoderSettings) -> anyhow::Result<Extractor> {
        let features = FeatureCache::open(self.assets.root().join("features"))?;
        match settings.kind {
            EncoderKind::Dinov2Vits14 => {
                let path = ensure_dinov2_small(&self.assets, &self.options)?;
                let config = Dinov2Config {
                    vit: ViTConfig::dinov2_small(),
                    blocks: settings.layers.clone(),
                    apply_final_layernorm: false,
                };
                let encoder = Dinov2Encoder::load(&path, &config, &self.device)
                    .with_context(|| format!("loading {}", path.display()))?;
                let sha = encoder.weights_sha256().to_owned();
                Extractor::new(Box::new(encoder), &sha, settings.image_size_px, features, self.device.clone())
            }
        }
    }
}
