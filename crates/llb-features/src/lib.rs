//! `llb-features`: Frozen pretrained encoders (DINOv2, EfficientNet-Lite, WideResNet) on candle, with a feature cache.
//!
//! Work in progress: the public API is being built.
