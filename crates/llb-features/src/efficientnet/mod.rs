//! EfficientNet-Lite (Lite0, Lite1, Lite2) on candle, in the `efficientnet_pytorch` key layout.

mod config;
mod model;
pub(crate) mod ops;

pub use config::{EfficientNetLiteConfig, EfficientNetLiteEncoderConfig, MbConvSpec};
pub use model::{EfficientNetLite, EfficientNetLiteEncoder};
pub(crate) use model::{check_images, load_checked};

#[cfg(test)]
pub(crate) mod tests;
