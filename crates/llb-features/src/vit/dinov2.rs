//! [`Dinov2Encoder`]: a [`ViT`] plus the blocks to extract, as an [`Encoder`].

use super::config::ViTConfig;
use super::model::ViT;
use super::weights::ViTWeights;
use crate::{Encoder, Error, InputSpec, Result};
use candle_core::{Device, Tensor};
use std::path::Path;

/// Which DINOv2 network and which of its blocks to extract.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dinov2Config {
    /// The architecture.
    pub vit: ViTConfig,
    /// 0-based indices of the blocks whose outputs are returned, in this order; only blocks up
    /// to the largest index are run.
    pub blocks: Vec<usize>,
    /// Apply the final `layernorm` to each returned block's tokens.
    pub apply_final_layernorm: bool,
}

impl Dinov2Config {
    /// Dinomaly's encoder taps on DINOv2 ViT-S/14: blocks 2..=9, no final norm
    /// (Dinomaly, Guo et al. 2025, `target_layers = [2, 3, 4, 5, 6, 7, 8, 9]`).
    pub fn dinomaly_small() -> Self {
        Self {
            vit: ViTConfig::dinov2_small(),
            blocks: (2..=9).collect(),
            apply_final_layernorm: false,
        }
    }

    /// Dinomaly's default ViT-B/14 with registers, blocks 2..=9, no final norm.
    pub fn dinomaly_base_registers() -> Self {
        Self {
            vit: ViTConfig::dinov2_with_registers_base(),
            blocks: (2..=9).collect(),
            apply_final_layernorm: false,
        }
    }

    fn validate(&self) -> Result<()> {
        self.vit.validate()?;
        if self.blocks.is_empty() {
            return Err(Error::Config {
                field: "blocks",
                value: "[]".to_owned(),
                reason: "at least one block is needed".to_owned(),
            });
        }
        if let Some(&bad) = self.blocks.iter().find(|&&b| b >= self.vit.num_hidden_layers) {
            return Err(Error::Config {
                field: "blocks",
                value: bad.to_string(),
                reason: format!("{} has {} blocks", self.vit.name, self.vit.num_hidden_layers),
            });
        }
        Ok(())
    }
}

/// A frozen DINOv2 encoder returning patch-token maps `[B, D, H/14, W/14]` of chosen blocks.
#[derive(Debug)]
pub struct Dinov2Encoder {
    vit: ViT,
    config: Dinov2Config,
    weights_sha256: String,
}

impl Dinov2Encoder {
    /// Builds the encoder from checked weights, running only the blocks it needs.
    ///
    /// # Errors
    /// An invalid config (empty or out-of-range `blocks`).
    pub fn new(weights: &ViTWeights, config: &Dinov2Config, device: &Device) -> Result<Self> {
        config.validate()?;
        let n_blocks = config.blocks.iter().max().map_or(0, |m| m + 1);
        let vit = ViT::new(weights.var_builder(device), &config.vit, n_blocks)?;
        Ok(Self { vit, config: config.clone(), weights_sha256: weights.sha256().to_owned() })
    }

    /// Reads a safetensors checkpoint in the Hugging Face layout (`facebook/dinov2-small`'s
    /// `model.safetensors` as is, or the file [`crate::convert_onnx_dinov2`] writes) and builds
    /// the encoder.
    ///
    /// # Errors
    /// As [`ViTWeights::load`] and [`Dinov2Encoder::new`].
    pub fn load(path: &Path, config: &Dinov2Config, device: &Device) -> Result<Self> {
        config.validate()?;
        let weights = ViTWeights::load(path, &config.vit, device)?;
        Self::new(&weights, config, device)
    }

    /// SHA-256 of the weights (see [`ViTWeights::sha256`]), for feature-cache keys.
    pub fn weights_sha256(&self) -> &str {
        &self.weights_sha256
    }

    /// The configuration.
    pub fn config(&self) -> &Dinov2Config {
        &self.config
    }

    /// The underlying network.
    pub fn vit(&self) -> &ViT {
        &self.vit
    }
}

impl Encoder for Dinov2Encoder {
    fn name(&self) -> String {
        let blocks: Vec<String> = self.config.blocks.iter().map(ToString::to_string).collect();
        let norm = if self.config.apply_final_layernorm { "+layernorm" } else { "" };
        format!("{}[{}]{norm}", self.config.vit.name, blocks.join(","))
    }

    fn input_spec(&self) -> InputSpec {
        InputSpec {
            mean: InputSpec::IMAGENET_MEAN,
            std: InputSpec::IMAGENET_STD,
            size_multiple_px: self.config.vit.patch_size,
        }
    }

    fn forward(&self, images: &Tensor) -> Result<Vec<Tensor>> {
        let _span = tracing::debug_span!("dinov2_forward", encoder = %self.config.vit.name,
            batch = images.dims().first().copied().unwrap_or(0))
        .entered();
        self.vit.forward_blocks(images, &self.config.blocks, self.config.apply_final_layernorm)
    }
}
