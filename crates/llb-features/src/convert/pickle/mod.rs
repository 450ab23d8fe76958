//! A small unpickler for PyTorch checkpoints, and the legacy (pre-1.6) checkpoint layout.

mod legacy;
mod machine;

pub use legacy::RawTensor;
pub(crate) use legacy::{is_legacy, read_legacy};

#[cfg(test)]
mod tests;
