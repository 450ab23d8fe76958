//! The hub route: finding files in a local Hugging Face hub cache, and downloading them there
//! with the `hub-online` feature.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The Hugging Face hub cache folder of this environment: `$HF_HOME/hub` when `HF_HOME` is set,
/// else `$HOME/.cache/huggingface/hub`; `None` when neither variable is set.
pub fn hub_cache_from_env() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("HF_HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(home).join("hub"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
}

/// Resolves `file` of model repository `repo` in the hub cache (`models--org--name/refs/main`
/// names a snapshot folder holding the file). Pure file-system lookup, no network.
pub(crate) fn lookup(hub_cache: &Path, repo: &str, file: &str) -> Option<PathBuf> {
    hf_hub::Cache::new(hub_cache.to_path_buf()).model(repo.to_owned()).get(file)
}

/// Downloads `file` of `repo` into the hub cache and returns its path there.
#[cfg(feature = "hub-online")]
pub(crate) fn download(hub_cache: &Path, repo: &str, file: &str) -> Result<PathBuf> {
    let fail = |message: String| Error::HubDownload {
        repo: repo.to_owned(),
        file: file.to_owned(),
        message,
    };
    let api =
        hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(hub_cache.to_path_buf()))
            .with_progress(false)
            .build()
            .map_err(|e| fail(e.to_string()))?;
    api.model(repo.to_owned()).get(file).map_err(|e| fail(e.to_string()))
}

/// Without the `hub-online` feature a download is an error saying so.
#[cfg(not(feature = "hub-online"))]
pub(crate) fn download(_hub_cache: &Path, repo: &str, file: &str) -> Result<PathBuf> {
    Err(Error::HubDownload {
        repo: repo.to_owned(),
        file: file.to_owned(),
        message: "this build has no network client (rebuild with the `hub-online` feature)"
            .to_owned(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs;

    /// Writes a hub cache layout for `repo` holding `file` with `bytes`, the way huggingface_hub
    /// does: a blob, a snapshot entry, and `refs/main` naming the snapshot (no trailing newline).
    pub(crate) fn fake_hub(root: &Path, repo: &str, file: &str, bytes: &[u8]) -> PathBuf {
        let rev = "0123456789abcdef0123456789abcdef01234567";
        let folder = root.join(format!("models--{}", repo.replace('/', "--")));
        fs::create_dir_all(folder.join("refs")).unwrap();
        fs::write(folder.join("refs/main"), rev).unwrap();
        let snapshot = folder.join("snapshots").join(rev).join(file);
        fs::create_dir_all(snapshot.parent().unwrap()).unwrap();
        fs::write(&snapshot, bytes).unwrap();
        snapshot
    }

    #[test]
    fn finds_a_file_in_a_fake_hub_cache() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot =
            fake_hub(dir.path(), "facebook/dinov2-small", "model.safetensors", b"weights");
        assert_eq!(
            lookup(dir.path(), "facebook/dinov2-small", "model.safetensors"),
            Some(snapshot)
        );
        assert_eq!(lookup(dir.path(), "facebook/dinov2-small", "config.json"), None);
        assert_eq!(lookup(dir.path(), "facebook/dinov2-base", "model.safetensors"), None);
        assert_eq!(
            lookup(&dir.path().join("absent"), "facebook/dinov2-small", "model.safetensors"),
            None
        );
    }

    #[cfg(not(feature = "hub-online"))]
    #[test]
    fn offline_build_refuses_downloads_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let err = download(dir.path(), "facebook/dinov2-small", "model.safetensors").unwrap_err();
        assert!(err.to_string().contains("hub-online"), "{err}");
    }
}
