//! The stage-1 resume cache: one JSON file of scores per finished sub-model, written atomically,
//! in a folder named after a fingerprint of everything that determines those scores.

use crate::{Error, Result, Stage1Config};
use llb_types::SampleId;
use std::path::{Path, PathBuf};

/// Scores of finished sub-models for one (cache key, config, ids) fingerprint.
#[derive(Debug)]
pub(crate) struct ResumeStore {
    dir: PathBuf,
    fingerprint: String,
    ids: Vec<SampleId>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmodelScores {
    fingerprint: String,
    block: usize,
    ids: Vec<SampleId>,
    anomaly_scores: Vec<f32>,
}

impl ResumeStore {
    /// Opens (and creates) `<root>/<fingerprint>/`.
    pub(crate) fn open(
        root: &Path,
        cache_key: &str,
        config: &Stage1Config,
        ids: &[SampleId],
    ) -> Result<Self> {
        let config_json = serde_json::to_string(config).expect("configs serialise");
        let mut text = format!("{cache_key}\n{config_json}\n");
        for id in ids {
            text.push_str(id.as_str());
            text.push('\n');
        }
        let fingerprint = format!("{:016x}", fnv1a64(text.as_bytes()));
        let dir = root.join(&fingerprint);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
        Ok(Self { dir, fingerprint, ids: ids.to_vec() })
    }

    fn path(&self, block: usize) -> PathBuf {
        self.dir.join(format!("submodel-{block}.json"))
    }

    /// The scores of sub-model `block`, if a previous run finished it.
    pub(crate) fn load(&self, block: usize) -> Result<Option<Vec<f32>>> {
        let path = self.path(block);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        let saved: SubmodelScores = serde_json::from_slice(&bytes).map_err(|e| Error::Cache {
            path: path.clone(),
            message: format!("not a score file: {e}"),
        })?;
        if saved.fingerprint != self.fingerprint || saved.block != block || saved.ids != self.ids {
            return Err(Error::Cache {
                path,
                message: "written by another run (fingerprint, block or ids differ); delete it"
                    .into(),
            });
        }
        if saved.anomaly_scores.len() != self.ids.len() {
            return Err(Error::Cache {
                path,
                message: "score count differs from the id count".into(),
            });
        }
        Ok(Some(saved.anomaly_scores))
    }

    /// Writes the scores of sub-model `block` (temp file + rename).
    pub(crate) fn save(&self, block: usize, anomaly_scores: &[f32]) -> Result<()> {
        let path = self.path(block);
        let saved = SubmodelScores {
            fingerprint: self.fingerprint.clone(),
            block,
            ids: self.ids.clone(),
            anomaly_scores: anomaly_scores.to_vec(),
        };
        let json = serde_json::to_vec(&saved).expect("scores serialise");
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(|source| Error::Io { path: tmp.clone(), source })?;
        std::fs::rename(&tmp, &path).map_err(|source| Error::Io { path, source })
    }
}

impl ResumeStore {
    fn maps_path(&self, block: usize) -> PathBuf {
        self.dir.join(format!("submodel-{block}.maps"))
    }

    /// The header of a maps file: magic, this store's fingerprint, the block.
    fn maps_header(&self, block: usize) -> String {
        format!("llb-stage1-maps 1 {} {block}\n", self.fingerprint)
    }

    /// The observer's bytes for sub-model `block`, if a previous run stored them.
    pub(crate) fn load_maps(&self, block: usize) -> Result<Option<Vec<u8>>> {
        let path = self.maps_path(block);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        let header = self.maps_header(block);
        match bytes.strip_prefix(header.as_bytes()) {
            Some(body) => Ok(Some(body.to_vec())),
            None => Err(Error::Cache {
                path,
                message: "written by another run (fingerprint or block differ); delete it".into(),
            }),
        }
    }

    /// Stores the observer's bytes for sub-model `block` (temp file + rename); called before the
    /// block's scores are saved, so cached scores never lack the maps their run produced.
    pub(crate) fn save_maps(&self, block: usize, body: &[u8]) -> Result<()> {
        let path = self.maps_path(block);
        let mut bytes = self.maps_header(block).into_bytes();
        bytes.extend_from_slice(body);
        let tmp = path.with_extension("maps.tmp");
        std::fs::write(&tmp, bytes).map_err(|source| Error::Io { path: tmp.clone(), source })?;
        std::fs::rename(&tmp, &path).map_err(|source| Error::Io { path, source })
    }
}

/// 64-bit FNV-1a: a stable, dependency-free fingerprint (not a security hash).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}
