//! The run context: asset cache, fetch options and device, and the encoders built from them.

use crate::fetch_cmd::ensure_bundle;
use anyhow::Context as _;
use candle_core::Device;
use llb_assets::{AssetCache, FetchOptions};
use llb_features::FeatureCache;
use llb_pipeline::{EncoderKind, EncoderSettings, Extractor};
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

    /// The cache path of an encoder's converted weights, fetching and converting them on first
    /// use.
    pub(crate) fn weights(&self, kind: EncoderKind) -> anyhow::Result<PathBuf> {
        let (bundle, file) = match kind {
            EncoderKind::Dinov2Vits14 => {
                (&llb_assets::DINOV2_VITS14, llb_assets::DINOV2_VITS14_WEIGHTS)
            }
            EncoderKind::EfficientnetLite0 => {
                (&llb_assets::EFFICIENTNET_LITE0, llb_assets::EFFICIENTNET_LITE0_WEIGHTS)
            }
        };
        ensure_bundle(&self.assets, &self.options, bundle)?;
        Ok(file.split('/').fold(self.assets.root().to_path_buf(), |p, part| p.join(part)))
    }

    /// Builds the encoder `settings` names, with the feature cache under the asset cache.
    pub(crate) fn extractor(&self, settings: &EncoderSettings) -> anyhow::Result<Extractor> {
        let weights = self.weights(settings.kind)?;
        let features = FeatureCache::open(self.assets.root().join("features"))?;
        Ok(Extractor::open(settings, &weights, features, &self.device)?)
    }
}
