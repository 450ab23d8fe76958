//! `llb-features`: frozen pretrained encoders (DINOv2, EfficientNet-Lite, WideResNet) on candle,
//! with an on-disk feature cache.
//!
//! Place in the pipeline: takes normalised image batches `[B, 3, H, W]` (prepared by the caller
//! per [`InputSpec`]) and returns per-layer patch-feature maps `[B, C, h, w]`; llb-submodel and
//! llb-detect consume them. Weights come in as local files (safetensors in the Hugging Face
//! layout); this crate never downloads. [`convert_onnx_dinov2`] turns the registry's ONNX
//! DINOv2-S into such a file; [`convert_pth`] does the same for PyTorch `.pth` state dicts
//! (legacy pickle or zip format), e.g. the registry's EfficientNet-Lite0.
//!
//! Main types: [`Encoder`] (the trait), [`Dinov2Encoder`] over a [`ViT`] configured by
//! [`ViTConfig`] presets, [`ViTWeights`] (checked checkpoint loading), [`FeatureCache`];
//! the CNN encoders [`EfficientNetLiteEncoder`] and [`WideResNetEncoder`], and
//! [`PatchAggregator`], PatchCore's patch features from several CNN layers.
//!
//! Invariants: encoders are deterministic and stateless; weight loading checks every tensor's
//! key and shape and names the key on a mismatch; cache entries are written atomically and are
//! addressed by encoder, weights hash, input size and image content hash.

mod aggregate;
mod cache;
mod convert;
mod efficientnet;
mod encoder;
mod error;
mod vit;
mod wideresnet;

pub use aggregate::{LocalPooling, PatchAggregator, PatchAggregatorConfig};
pub use cache::{CacheItem, CachedFeatures, FeatureCache, FeatureKey};
pub use convert::{
    ConversionReport, OnnxGraph, OnnxNode, OnnxTensor, PthContents, PthFormat, PthReport,
    RawTensor, convert_onnx_dinov2, convert_pth, read_pth,
};
pub use efficientnet::{
    EfficientNetLite, EfficientNetLiteConfig, EfficientNetLiteEncoder,
    EfficientNetLiteEncoderConfig, MbConvSpec,
};
pub use encoder::Encoder;
pub use error::{Error, Result};
/// Defined in llb-types (the data crate prepares images by it); re-exported for compatibility.
pub use llb_types::InputSpec;
/// The workspace's one SHA-256 (`llb_types::sha256`), re-exported for callers of this crate.
pub use llb_types::sha256::sha256_hex;
pub use vit::{
    Dinov2Config, Dinov2Encoder, PosInterpolation, ViT, ViTConfig, ViTWeights, gelu_erf,
    softmax_last_dim,
};
pub use wideresnet::{WideResNet, WideResNetConfig, WideResNetEncoder, WideResNetEncoderConfig};
