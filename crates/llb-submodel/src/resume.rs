//! The stage-1 resume cache: one JSON file of scores per finished sub-model, written atomically,
//! in a folder named after a fingerprint of everything that determines those scores.

use crate::{Error, Result, Stage1Config, TrainingSet};
use llb_types::SampleId;
use std::path::{Path, PathBuf};

/// Scores of finished sub-models for one (cache key, config, ids, image contents) fingerprint.
#[derive(Debug)]
pub(crate) struct ResumeStore {
    dir: PathBuf,
    fingerprint: String,
    cache_key: String,
    ids: Vec<SampleId>,
    content_sha256: Vec<String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmodelScores {
    fingerprint: String,
    cache_key: String,
    block: usize,
    ids: Vec<SampleId>,
    content_sha256: Vec<String>,
    anomaly_scores: Vec<f32>,
}

impl ResumeStore {
    /// Opens (and creates) `<root>/<fingerprint>/`: the fingerprint covers the cache key, the
    /// config, and every sample's id *and* content hash, so a folder of other images under the
    /// same file names never reuses these scores. Each score file repeats all of them, and
    /// [`ResumeStore::load`] checks them, so even a fingerprint collision cannot pass.
    pub(crate) fn open(
        root: &Path,
        cache_key: &str,
        config: &Stage1Config,
        train: &TrainingSet<'_>,
    ) -> Result<Self> {
        let config_json = serde_json::to_string(config).expect("configs serialise");
        let cache_key = match train.fit_mask {
            None => cache_key.to_owned(),
            Some(mask) => {
                let bits: String = mask.iter().map(|&m| if m { '1' } else { '0' }).collect();
                format!("{cache_key}|fit-mask:{bits}")
            }
        };
        let (ids, content_sha256) = (train.ids, train.content_sha256);
        let mut text = format!("{cache_key}\n{config_json}\n");
        for (id, content) in ids.iter().zip(content_sha256) {
            text.push_str(id.as_str());
            text.push('\t');
            text.push_str(content);
            text.push('\n');
        }
        let fingerprint = format!("{:016x}", fnv1a64(text.as_bytes()));
        let dir = root.join(&fingerprint);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
        Ok(Self {
            dir,
            fingerprint,
            cache_key,
            ids: ids.to_vec(),
            content_sha256: content_sha256.to_vec(),
        })
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
        if saved.fingerprint != self.fingerprint
            || saved.cache_key != self.cache_key
            || saved.block != block
            || saved.ids != self.ids
            || saved.content_sha256 != self.content_sha256
        {
            return Err(Error::Cache {
                path,
                message: "written by another run (key, block, ids or image contents differ); \
                          delete it"
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
            cache_key: self.cache_key.clone(),
            block,
            ids: self.ids.clone(),
            content_sha256: self.content_sha256.clone(),
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
