//! The encoder interface: a frozen pretrained network that turns images into patch-feature maps.

use crate::Result;
use candle_core::Tensor;

/// How an encoder wants its input images prepared (the caller resizes and normalises).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Per-channel mean subtracted from RGB values in `[0, 1]`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation the centred values are divided by.
    pub std: [f32; 3],
    /// Input height and width must be multiples of this (the ViT patch size, or the CNN's total
    /// stride).
    pub size_multiple_px: usize,
}

impl InputSpec {
    /// ImageNet statistics (torchvision, timm and DINOv2 all use them).
    pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
    /// ImageNet standard deviations.
    pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
}

/// A frozen feature extractor.
///
/// Input: normalised images `[B, 3, H, W]` f32 with `H` and `W` multiples of
/// [`InputSpec::size_multiple_px`]. Output: one feature map per requested layer, each
/// `[B, C, h, w]` f32, in the order the layers were requested when the encoder was built.
/// Encoders are deterministic and keep no state between calls.
pub trait Encoder: Send + Sync {
    /// A name that identifies the architecture, weights and layers, used in feature-cache keys,
    /// e.g. `dinov2-vits14[2,3,4,5,6,7,8,9]`.
    fn name(&self) -> String;

    /// How to prepare input images.
    fn input_spec(&self) -> InputSpec;

    /// Runs the encoder and returns the requested layers.
    ///
    /// # Errors
    /// An input whose shape is not `[B, 3, H, W]` with sizes multiple of the patch size, or a
    /// failure of the tensor backend.
    fn forward(&self, images: &Tensor) -> Result<Vec<Tensor>>;
}
