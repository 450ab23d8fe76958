//! The DINOv2 vision-transformer family: architecture configs, checkpoint loading, the network
//! and its [`crate::Encoder`] wrapper.

mod config;
mod cpu;
mod dinov2;
mod interp;
mod kernels;
mod model;
mod ops;
mod weights;

#[cfg(test)]
mod tests;

pub use config::{PosInterpolation, ViTConfig};
pub use dinov2::{Dinov2Config, Dinov2Encoder};
pub use model::ViT;
pub use ops::{gelu_erf, softmax_last_dim};
pub use weights::ViTWeights;
