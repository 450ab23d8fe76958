//! A plain folder of unlabelled images, for users with their own photos.

use crate::error::{Error, Result};
use crate::sample::{Sample, is_image_file, relative_id};
use std::path::{Path, PathBuf};

/// Reads every image under `root`, recursively: png, jpg/jpeg, bmp and tif/tiff files (extension
/// case ignored; grey, RGB, RGBA and 16-bit images all decode later). Symbolic links to folders
/// are not followed.
///
/// Samples are unlabelled, sorted by id; an id is the path relative to `root`.
///
/// # Errors
/// - [`Error::Empty`] when no image is found;
/// - [`Error::Io`] when a folder cannot be listed.
pub fn read_image_folder(root: &Path) -> Result<Vec<Sample>> {
    let _span = tracing::info_span!("read_image_folder", root = %root.display()).entered();
    let mut files = Vec::new();
    walk(root, &mut files)?;
    if files.is_empty() {
        return Err(Error::Empty { path: root.to_path_buf() });
    }
    let mut samples = files
        .into_iter()
        .map(|path| Ok(Sample::unlabelled(relative_id(root, &path)?, path)))
        .collect::<Result<Vec<_>>>()?;
    samples.sort_by(|a, b| a.id.cmp(&b.id));
    tracing::debug!(n_samples = samples.len(), "read image folder");
    Ok(samples)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let kind = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
        let path = entry.path();
        if kind.is_dir() {
            walk(&path, files)?;
        } else if path.is_file() && is_image_file(&path) {
            files.push(path);
        }
    }
    Ok(())
}
