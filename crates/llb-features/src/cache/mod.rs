//! The on-disk feature cache and the small file utilities it shares with weight conversion.

mod store;
mod tensor_bytes;

pub use store::{CacheItem, CachedFeatures, FeatureCache, FeatureKey};
pub(crate) use tensor_bytes::safetensors_bytes;
