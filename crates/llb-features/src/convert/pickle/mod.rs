//! A small unpickler for PyTorch checkpoints, and the legacy (pre-1.6) and zip (1.6 and later)
//! checkpoint layouts.

mod legacy;
mod machine;
mod zipped;

pub use legacy::RawTensor;
#[cfg(test)]
pub(crate) use legacy::max_decoded_bytes;
pub(crate) use legacy::{is_legacy, read_legacy};
pub(crate) use zipped::{is_zip, read_zip};

#[cfg(test)]
pub(crate) mod tests;
