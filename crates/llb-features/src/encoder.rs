//! The encoder interface: a frozen pretrained network that turns images into patch-feature maps.

use crate::Result;
use candle_core::Tensor;
use llb_types::InputSpec;

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
