//! SHA-256 listing of a folder tree, in `sha256sum` format.

use crate::error::{Error, Result};
use crate::sample::relative_id;
use llb_types::sha256::sha256_file;
use std::path::{Path, PathBuf};

/// Lists every file under `dir` as `<sha256 hex>  <path relative to dir>\n`, sorted by path
/// (the format `sha256sum` writes and `sha256sum -c` reads).
///
/// # Errors
/// [`Error::Io`] naming the file or folder that could not be read.
pub fn checksum_tree(dir: &Path) -> Result<String> {
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    let mut lines = Vec::with_capacity(files.len());
    for path in files {
        let hex = sha256_file(&path).map_err(|e| Error::io(&path, e))?;
        lines.push((relative_id(dir, &path)?.as_str().to_string(), hex));
    }
    lines.sort();
    Ok(lines.into_iter().map(|(path, hex)| format!("{hex}  {path}\n")).collect())
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        if entry.file_type().map_err(|e| Error::io(&path, e))?.is_dir() {
            walk(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}
