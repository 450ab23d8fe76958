//! WideResNet50-2 on candle, in torchvision's key layout, run up to the last requested layer.

mod config;
mod model;

pub use config::{WideResNetConfig, WideResNetEncoderConfig};
pub use model::{WideResNet, WideResNetEncoder};

#[cfg(test)]
mod tests;
