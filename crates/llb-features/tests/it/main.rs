//! Integration tests of llb-features.

// Parity of the DINOv2-S port with the ONNX reference (needs the converted real weights).
mod dinov2_parity;

// EfficientNet-Lite0 parity with PyTorch and an ImageNet sanity check (needs the real weights).
mod efficientnet;
