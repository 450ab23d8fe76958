//! The on-disk feature cache and the small file utilities it shares with weight conversion.

mod atomic;
mod store;

pub(crate) use atomic::{safetensors_bytes, write_atomic};
pub use store::{CacheItem, CachedFeatures, FeatureCache, FeatureKey};
