//! `llb-features`: frozen pretrained encoders (DINOv2, EfficientNet-Lite, WideResNet) on candle,
//! with an on-disk feature cache.
//!
//! Place in the pipeline: takes normalised image batches `[B, 3, H, W]` (prepared by the caller
//! per [`InputSpec`]) and returns per-layer patch-feature maps `[B, C, h, w]`; llb-submodel and
//! llb-detect consume them. Weights come in as local files (safetensors in the Hugging Face
//! layout); this crate never downloads.
//!
//! Invariants: encoders are deterministic and stateless ([`Encoder`]); weight loading checks
//! every tensor's key and shape and names the key on a mismatch.

mod convert;
mod encoder;
mod error;

pub use convert::{PthContents, PthFormat, PthReport, RawTensor, convert_pth, read_pth};
pub use encoder::{Encoder, InputSpec};
pub use error::{Error, Result};
