//! The zip checkpoint format of PyTorch 1.6 and later, read with this crate's own unpickler.
//!
//! Layout: a zip archive whose entries sit under one folder `<name>/`: `data.pkl` (the pickled
//! object, whose tensors name their storages with the same persistent ids as the legacy format)
//! and one entry `data/<key>` per storage holding its raw little-endian data. Other entries
//! (`version`, `byteorder`, …) are ignored, except a `byteorder` that is not `little`.
//!
//! candle's reader is not used: it sizes buffers from length fields it has not checked (a
//! 3 KB file could make it allocate 4 GB) and returns only top-level tensors. Here every entry is
//! read with a size limit relative to the file, and the tensors go through the same checks as
//! the legacy format (one element type per storage, views inside their storage, decoded size
//! at most [`max_decoded_bytes`]).

use std::collections::HashMap;
use std::io::{Cursor, Read};

use super::legacy::{RawTensor, fail, gather_all, max_decoded_bytes, storage_dtypes, views};
use super::machine::{PickleError, unpickle};

/// Whether `data` starts like a zip archive.
pub(crate) fn is_zip(data: &[u8]) -> bool {
    data.starts_with(b"PK\x03\x04")
}

/// Reads every tensor of a zip checkpoint, with its dotted state-dict key, and the number of
/// skipped non-tensor leaves.
///
/// # Errors
/// A malformed archive, a missing `data.pkl` or storage entry, an entry that decompresses
/// beyond the limit, or the pickle and view errors of the legacy reader (offsets are within
/// `data.pkl`).
pub(crate) fn read_zip(data: &[u8]) -> Result<(Vec<(String, RawTensor)>, usize), PickleError> {
    let limit = max_decoded_bytes(data.len());
    let zip_err = |e: zip::result::ZipError| fail(0, format!("zip archive: {e}"));
    let mut archive = zip::ZipArchive::new(Cursor::new(data)).map_err(zip_err)?;
    let pkl_name = archive
        .file_names()
        .filter_map(Result::ok)
        .filter(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1)
        .map(|n| n.into_owned())
        .min()
        .ok_or_else(|| {
            fail(0, "zip archive without a `data.pkl` entry: not a PyTorch checkpoint")
        })?;
    let prefix = &pkl_name[..pkl_name.len() - "data.pkl".len()];
    if let Ok(order) = read_entry(&mut archive, &format!("{prefix}byteorder"), 64)
        && order.trim_ascii() != b"little"
    {
        return Err(fail(0, "big-endian checkpoints are not supported"));
    }
    let pkl = read_entry(&mut archive, &pkl_name, limit)?;
    let mut pos = 0;
    let root = unpickle(&pkl, &mut pos)?;
    let (views, skipped) = views(root, 0, data.len())?;
    let mut owned: HashMap<String, (Vec<u8>, usize)> = HashMap::new();
    for (key, dtype) in storage_dtypes(&views) {
        let elem = dtype.bitsize() / 8;
        let name = format!("{prefix}data/{key}");
        let bytes = read_entry(&mut archive, &name, limit)?;
        if bytes.len() % elem != 0 {
            return Err(fail(
                0,
                format!("storage `{key}` has {} bytes, not a multiple of {elem}", bytes.len()),
            ));
        }
        let numel = bytes.len() / elem;
        owned.insert(key.to_owned(), (bytes, numel));
    }
    let storages = owned.iter().map(|(k, (b, n))| (k.clone(), (b.as_slice(), *n))).collect();
    Ok((gather_all(views, &storages, 0)?, skipped))
}

/// The bytes of entry `name`, refused beyond `limit` bytes (decompression included).
fn read_entry(
    archive: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    limit: usize,
) -> Result<Vec<u8>, PickleError> {
    let entry = archive.by_name(name).map_err(|e| fail(0, format!("zip entry `{name}`: {e}")))?;
    let mut out = Vec::new();
    entry
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| fail(0, format!("zip entry `{name}`: {e}")))?;
    if out.len() > limit {
        return Err(fail(0, format!("zip entry `{name}` decompresses beyond {limit} bytes")));
    }
    Ok(out)
}
