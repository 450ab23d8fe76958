//! Converters from reference checkpoint formats to safetensors in the Hugging Face layout.

mod pickle;
mod pth;

pub use pickle::RawTensor;
pub use pth::{PthContents, PthFormat, PthReport, convert_pth, read_pth};
