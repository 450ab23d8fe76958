//! The stage-1 resume cache: one JSON file of scores per finished sub-model, written atomically,
//! in a folder named after a fingerprint of everything that determines those scores.
//!
//! Several processes may share the folder (two runs on one cache). Each sub-model has a lock
//! file, `submodel-<block>.lock`: [`ResumeStore::load`] takes it before looking for the scores
//! and, when they are missing, keeps it until [`ResumeStore::save`] has written them. A second
//! process asking for the same sub-model therefore waits, then reuses the first one's scores
//! instead of fitting it again; a killed holder releases its lock with its death.

use crate::{Error, Result, Stage1Config, TrainingSet};
use llb_types::{FileLock, SampleId};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// Scores of finished sub-models for one (cache key, config, ids, image contents) fingerprint.
#[derive(Debug)]
pub(crate) struct ResumeStore {
    dir: PathBuf,
    fingerprint: String,
    cache_key: String,
    ids: Vec<SampleId>,
    content_sha256: Vec<String>,
    /// Locks of the sub-models this process is fitting (taken by a `load` that found nothing).
    held: Mutex<BTreeMap<usize, FileLock>>,
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
            held: Mutex::new(BTreeMap::new()),
        })
    }

    /// The folder of this fingerprint: `<root>/<fingerprint>/`.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, block: usize) -> PathBuf {
        self.dir.join(format!("submodel-{block}.json"))
    }

    /// The scores of sub-model `block`, if a previous (or concurrent) run finished it.
    ///
    /// Waits while another process holds the sub-model's lock. When the scores are missing, this
    /// process keeps the lock until [`ResumeStore::save`] (or until the store is dropped), so
    /// that others wait for its scores rather than fit the same sub-model.
    ///
    /// An unreadable score file (e.g. from a damaged disk) is logged and treated as missing.
    pub(crate) fn load(&self, block: usize) -> Result<Option<Vec<f32>>> {
        let lock_path = self.dir.join(format!("submodel-{block}.lock"));
        let lock = FileLock::exclusive_or_wait(&lock_path, || {
            tracing::info!(block, lock = %lock_path.display(),
                "another run is fitting this sub-model; waiting for its scores");
        })
        .map_err(|source| Error::Io { path: lock_path.clone(), source })?;
        let found = self.read(block)?;
        if found.is_none() {
            self.held.lock().unwrap_or_else(PoisonError::into_inner).insert(block, lock);
        }
        Ok(found)
    }

    /// The scores of sub-model `block` if they are stored, without taking its lock (a complete
    /// store is read, not written). An unreadable file is logged and treated as missing.
    pub(crate) fn read(&self, block: usize) -> Result<Option<Vec<f32>>> {
        let path = self.path(block);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        let saved: SubmodelScores = match serde_json::from_slice(&bytes) {
            Ok(saved) => saved,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e,
                    "unreadable sub-model scores; fitting the sub-model again");
                return Ok(None);
            }
        };
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

    /// Writes the scores of sub-model `block` atomically ([`llb_types::atomic::write`]), then
    /// releases the sub-model's lock if this process held it.
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
        llb_types::atomic::write(&path, &json)
            .map_err(|source| Error::Io { path: path.clone(), source })?;
        // Tests that run processes side by side count these lines: one per sub-model and key.
        tracing::debug!(block, fingerprint = %self.fingerprint, path = %path.display(),
            "stored sub-model scores");
        self.held.lock().unwrap_or_else(PoisonError::into_inner).remove(&block);
        Ok(())
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

    /// Stores the observer's bytes for sub-model `block` atomically
    /// ([`llb_types::atomic::write`]); called before the block's scores are saved (under the
    /// sub-model's lock, which [`ResumeStore::save`] releases), so cached scores never lack the
    /// maps their run produced.
    pub(crate) fn save_maps(&self, block: usize, body: &[u8]) -> Result<()> {
        let path = self.maps_path(block);
        let mut bytes = self.maps_header(block).into_bytes();
        bytes.extend_from_slice(body);
        llb_types::atomic::write(&path, &bytes).map_err(|source| Error::Io { path, source })
    }
}

/// 64-bit FNV-1a: a stable, dependency-free fingerprint (not a security hash).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PartitionConfig, PartitionMode};
    use llb_detect::ImageScoreRule;
    use std::sync::mpsc;
    use std::time::Duration;

    fn store(root: &Path) -> ResumeStore {
        let config = Stage1Config {
            partition: PartitionConfig { k: 2, seed: 0, mode: PartitionMode::Random },
            screening_score: ImageScoreRule::Max,
            batch_size: 4,
        };
        let ids: Vec<SampleId> = ["a", "b", "c"].into_iter().map(SampleId::new).collect();
        let content_sha256: Vec<String> = ["1", "2", "3"].map(String::from).to_vec();
        let groups = vec![None; ids.len()];
        let train = TrainingSet {
            ids: &ids,
            content_sha256: &content_sha256,
            groups: &groups,
            fit_mask: None,
            layers: &[],
            image_size_px: (4, 4),
        };
        ResumeStore::open(root, "key", &config, &train).unwrap()
    }

    /// Two processes on one stage-1 folder: the second waits for the first one's sub-model and
    /// reuses its scores (threads stand in for processes: the locks are per open file).
    #[test]
    fn a_second_store_waits_for_the_first_ones_scores_and_reuses_them() {
        let dir = tempfile::tempdir().unwrap();
        let first = store(dir.path());
        assert_eq!(first.load(0).unwrap(), None, "nothing yet: this store fits sub-model 0");
        let (asked, waiting) = mpsc::channel();
        let (got, result) = mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                let second = store(dir.path());
                asked.send(()).unwrap();
                got.send(second.load(0).unwrap()).unwrap();
            });
            waiting.recv().unwrap();
            assert!(result.recv_timeout(Duration::from_millis(100)).is_err(), "must wait");
            first.save(0, &[1.0, 2.0, 3.0]).unwrap();
            assert_eq!(result.recv().unwrap(), Some(vec![1.0, 2.0, 3.0]));
        });
        // Sub-model 1 is independent of sub-model 0's lock.
        assert_eq!(store(dir.path()).load(1).unwrap(), None);
        let leftovers: Vec<String> = std::fs::read_dir(&first.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        assert_eq!(leftovers, ["submodel-0.json"], "no temporary file remains");
    }

    #[test]
    fn a_damaged_score_file_is_refitted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        std::fs::write(s.path(0), b"{\"fingerprint\": \"trunc").unwrap();
        assert_eq!(s.load(0).unwrap(), None);
        s.save(0, &[0.5; 3]).unwrap();
        assert_eq!(store(dir.path()).load(0).unwrap(), Some(vec![0.5; 3]));
    }
}
