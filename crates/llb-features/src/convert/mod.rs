//! Converters from reference checkpoint formats to safetensors in the Hugging Face layout.

#[cfg(test)]
mod fuzz_tests;
mod onnx_dinov2;
mod onnx_proto;
mod pickle;
mod pth;

pub use onnx_dinov2::{ConversionReport, convert_onnx_dinov2};
pub use onnx_proto::{OnnxGraph, OnnxNode, OnnxTensor};
pub use pickle::RawTensor;
pub use pth::{PthContents, PthFormat, PthReport, convert_pth, read_pth};
