//! [`FeatureCache`]: one safetensors file per (image, encoder, weights, input size), written
//! atomically and reused across runs.
//!
//! Key decision: an entry is addressed by the SHA-256 of the encoder name (architecture and
//! layers), the weights' SHA-256, the input size and the *image content hash*; the
//! [`SampleId`] is stored in the entry's metadata for inspection but is not part of the address.
//! So a replaced image file under the same id misses instead of returning stale features, and
//! the same image reached through two data sets is extracted once.
//!
//! Several processes may share one cache: entries are written atomically, and
//! [`FeatureCache::lock_entries`] lets a process that is about to compute entries hold off the
//! others (which then reuse its entries instead of computing them again).

use super::tensor_bytes::{f32_le_bytes, safetensors_bytes};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use llb_types::sha256::sha256_hex;
use llb_types::{FileLock, SampleId};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What produced the features: shared by every image of one extraction.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureKey {
    /// [`crate::Encoder::name`]: architecture and layers, e.g. `dinov2-vits14[2,3,4]`.
    pub encoder: String,
    /// SHA-256 (hex) of the encoder's weights.
    pub weights_sha256: String,
    /// Network input height and width in pixels, after resizing.
    pub input_size_px: (usize, usize),
}

/// One image to look up.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheItem {
    /// The sample (recorded in the entry, not part of its address).
    pub sample_id: SampleId,
    /// SHA-256 (hex) of the image content, e.g. [`crate::sha256_hex`] of the file's bytes.
    pub content_sha256: String,
}

/// Features for a batch of items, with how many came from disk.
#[derive(Debug)]
pub struct CachedFeatures {
    /// One tensor per layer, `[N, C, h, w]` f32, rows in the order of the requested items.
    pub layers: Vec<Tensor>,
    /// Items read from the cache.
    pub hits: usize,
    /// Items computed (and then stored).
    pub computed: usize,
}

/// A folder of cached per-image encoder outputs.
#[derive(Clone, Debug)]
pub struct FeatureCache {
    root: PathBuf,
}

impl FeatureCache {
    /// Opens (creating if needed) the cache folder `root`.
    ///
    /// # Errors
    /// [`Error::Io`] if the folder cannot be created.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        Ok(Self { root })
    }

    /// The cache folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file an entry lives in: `<root>/<aa>/<address>.safetensors`.
    pub fn entry_path(&self, key: &FeatureKey, item: &CacheItem) -> PathBuf {
        let (h, w) = key.input_size_px;
        let address = sha256_hex(
            format!(
                "llb-features-cache-v1\n{}\n{}\n{h}x{w}\n{}",
                key.encoder, key.weights_sha256, item.content_sha256
            )
            .as_bytes(),
        );
        self.root.join(&address[..2]).join(format!("{address}.safetensors"))
    }

    /// Waits for and takes the advisory locks that cover the entries of `items`, so that a
    /// process computing them keeps other processes from computing the same entries; those
    /// wait, then find the entries written. The locks are released when the returned guards
    /// drop (or the process dies).
    ///
    /// Entries are locked by stripe: one lock file (`<root>/<aa>/.lock`) per entry folder, so at
    /// most 256 lock files exist. Stripes are taken in sorted order, each once, so two processes
    /// never deadlock; a process must drop its guards before locking again.
    ///
    /// # Errors
    /// [`Error::Io`] naming a lock file that cannot be created or locked.
    pub fn lock_entries<'a>(
        &self,
        key: &FeatureKey,
        items: impl IntoIterator<Item = &'a CacheItem>,
    ) -> Result<Vec<FileLock>> {
        let stripes: BTreeSet<PathBuf> = items
            .into_iter()
            .filter_map(|item| self.entry_path(key, item).parent().map(|d| d.join(".lock")))
            .collect();
        stripes
            .into_iter()
            .map(|path| {
                FileLock::exclusive_or_wait(&path, || {
                    tracing::debug!(lock = %path.display(), "waiting for another process's features");
                })
                .map_err(|e| Error::io(&path, e))
            })
            .collect()
    }

    fn metadata(key: &FeatureKey, item: &CacheItem, n_layers: usize) -> BTreeMap<String, String> {
        let (h, w) = key.input_size_px;
        BTreeMap::from([
            ("encoder".to_owned(), key.encoder.clone()),
            ("weights_sha256".to_owned(), key.weights_sha256.clone()),
            ("input_size_px".to_owned(), format!("{h}x{w}")),
            ("content_sha256".to_owned(), item.content_sha256.clone()),
            ("sample_id".to_owned(), item.sample_id.to_string()),
            ("n_layers".to_owned(), n_layers.to_string()),
        ])
    }

    /// Reads one entry: `Ok(None)` if absent; per-layer tensors `[C, h, w]` otherwise.
    ///
    /// # Errors
    /// [`Error::CacheEntry`] if the file exists but is unreadable or was written for another
    /// key.
    pub fn get(
        &self,
        key: &FeatureKey,
        item: &CacheItem,
        device: &Device,
    ) -> Result<Option<Vec<Tensor>>> {
        let path = self.entry_path(key, item);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let bad = |message: String| Error::CacheEntry { path: path.clone(), message };
        let (_, header) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let n_layers: usize = meta
            .get("n_layers")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| bad("no n_layers in metadata".to_owned()))?;
        let expected = Self::metadata(key, item, n_layers);
        for field in ["encoder", "weights_sha256", "input_size_px", "content_sha256"] {
            if meta.get(field) != expected.get(field) {
                return Err(bad(format!(
                    "{field} is {:?}, expected {:?}",
                    meta.get(field),
                    expected.get(field)
                )));
            }
        }
        let tensors = candle_core::safetensors::load_buffer(&bytes, device)?;
        let layers = (0..n_layers)
            .map(|i| {
                tensors
                    .get(&format!("layer.{i}"))
                    .cloned()
                    .ok_or_else(|| bad(format!("no layer.{i}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(layers))
    }

    /// Stores one image's per-layer features (each `[C, h, w]` f32), atomically.
    ///
    /// # Errors
    /// [`Error::Io`] on a write failure; a tensor that is not f32.
    pub fn put(&self, key: &FeatureKey, item: &CacheItem, layers: &[Tensor]) -> Result<()> {
        let path = self.entry_path(key, item);
        let tensors = layers
            .iter()
            .enumerate()
            .map(|(i, t)| Ok((format!("layer.{i}"), t.dims().to_vec(), f32_le_bytes(t)?)))
            .collect::<Result<Vec<_>>>()?;
        let bytes = safetensors_bytes(&tensors, Self::metadata(key, item, layers.len()), &path)?;
        llb_types::atomic::write(&path, &bytes).map_err(|e| Error::io(&path, e))?;
        // Tests that run processes side by side count these lines: one per entry.
        tracing::debug!(path = %path.display(), sample_id = %item.sample_id, "stored feature entry");
        Ok(())
    }

    /// Returns the features of `items`, reading cached entries and calling `compute` once with
    /// the indices (into `items`) of the missing ones. `compute` must return one tensor per
    /// layer, `[M, C, h, w]` with rows in the order of the indices it was given; those rows are
    /// stored before being returned. An unreadable entry is logged and recomputed. The missing
    /// entries are locked ([`FeatureCache::lock_entries`]) while they are computed.
    ///
    /// # Errors
    /// Whatever `compute` returns; [`Error::CacheEntry`] if `compute` returns the wrong number of
    /// rows or layers differ in number from the cached ones; IO errors when writing.
    pub fn get_or_compute<F>(
        &self,
        key: &FeatureKey,
        items: &[CacheItem],
        device: &Device,
        compute: F,
    ) -> Result<CachedFeatures>
    where
        F: FnOnce(&[usize]) -> Result<Vec<Tensor>>,
    {
        let _span = tracing::info_span!("feature_cache", encoder = %key.encoder,
            n_samples = items.len())
        .entered();
        let mut per_item: Vec<Option<Vec<Tensor>>> = Vec::with_capacity(items.len());
        for item in items {
            match self.get(key, item, device) {
                Ok(hit) => per_item.push(hit),
                Err(e) => {
                    tracing::warn!(sample_id = %item.sample_id, error = %e, "recomputing cache entry");
                    per_item.push(None);
                }
            }
        }
        let mut missing: Vec<usize> = (0..items.len()).filter(|&i| per_item[i].is_none()).collect();
        let _locks = self.lock_entries(key, missing.iter().map(|&i| &items[i]))?;
        // Another process may have stored some of them while this one waited for the locks.
        missing.retain(|&i| match self.get(key, &items[i], device) {
            Ok(Some(hit)) => {
                per_item[i] = Some(hit);
                false
            }
            _ => true,
        });
        let hits = items.len() - missing.len();
        if !missing.is_empty() {
            let computed = compute(&missing)?;
            for (row, &i) in missing.iter().enumerate() {
                let layers = computed
                    .iter()
                    .map(|t| {
                        if t.dim(0)? != missing.len() {
                            return Err(Error::CacheEntry {
                                path: self.entry_path(key, &items[i]),
                                message: format!(
                                    "compute returned {} rows for {} missing items",
                                    t.dim(0)?,
                                    missing.len()
                                ),
                            });
                        }
                        Ok(t.get(row)?.to_device(device)?)
                    })
                    .collect::<Result<Vec<_>>>()?;
                self.put(key, &items[i], &layers)?;
                per_item[i] = Some(layers);
            }
        }
        tracing::debug!(hits, computed = missing.len(), "feature cache lookup");
        let per_item: Vec<Vec<Tensor>> = per_item.into_iter().flatten().collect();
        let n_layers = per_item.first().map_or(0, Vec::len);
        if let Some((v, item)) = per_item.iter().zip(items).find(|(v, _)| v.len() != n_layers) {
            return Err(Error::CacheEntry {
                path: self.entry_path(key, item),
                message: format!("has {} layers, expected {n_layers}", v.len()),
            });
        }
        let mut layers = Vec::with_capacity(n_layers);
        for l in 0..n_layers {
            let rows = per_item
                .iter()
                .map(|v| v[l].unsqueeze(0))
                .collect::<candle_core::Result<Vec<_>>>()?;
            layers.push(Tensor::cat(&rows, 0)?);
        }
        Ok(CachedFeatures { layers, hits, computed: missing.len() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn key(weights: &str) -> FeatureKey {
        FeatureKey {
            encoder: "toy[0,1]".to_owned(),
            weights_sha256: weights.to_owned(),
            input_size_px: (4, 4),
        }
    }

    fn items(n: usize) -> Vec<CacheItem> {
        (0..n)
            .map(|i| CacheItem {
                sample_id: SampleId::new(format!("s{i}")),
                content_sha256: sha256_hex(format!("image {i}").as_bytes()),
            })
            .collect()
    }

    /// A fake encoder: layer l of item i is filled with 10·i + l, shape [2, 2, 2].
    fn features(indices: &[usize]) -> Result<Vec<Tensor>> {
        (0..2)
            .map(|l| {
                let v: Vec<f32> = indices
                    .iter()
                    .flat_map(|&i| std::iter::repeat_n((10 * i + l) as f32, 8))
                    .collect();
                Ok(Tensor::from_vec(v, (indices.len(), 2, 2, 2), &Device::Cpu)?)
            })
            .collect()
    }

    /// Runs `get_or_compute` and returns the indices `compute` was called with.
    fn check(
        cache: &FeatureCache,
        key: &FeatureKey,
        items: &[CacheItem],
        remap: &[usize],
    ) -> Vec<usize> {
        let called = RefCell::new(Vec::new());
        let got = cache
            .get_or_compute(key, items, &Device::Cpu, |missing| {
                called.borrow_mut().extend_from_slice(missing);
                features(&missing.iter().map(|&i| remap[i]).collect::<Vec<_>>())
            })
            .unwrap();
        let expected = features(remap).unwrap();
        for (g, e) in got.layers.iter().zip(&expected) {
            assert_eq!(
                g.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                e.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            );
        }
        assert_eq!(got.computed, called.borrow().len());
        assert_eq!(got.hits + got.computed, items.len());
        called.into_inner()
    }

    #[test]
    fn computes_only_missing_items_and_reuses_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FeatureCache::open(dir.path().join("features")).unwrap();
        let all = items(4);
        let ids: Vec<usize> = (0..4).collect();
        assert_eq!(check(&cache, &key("w1"), &all[1..3], &ids[1..3]), [0, 1]);
        assert_eq!(check(&cache, &key("w1"), &all, &ids), [0, 3]);
        assert_eq!(check(&cache, &key("w1"), &all, &ids), Vec::<usize>::new());
        // Another weights hash is another entry.
        assert_eq!(check(&cache, &key("w2"), &all[..1], &ids[..1]), [0]);
        // A reopened cache (next run) reuses the files.
        let reopened = FeatureCache::open(cache.root()).unwrap();
        assert_eq!(check(&reopened, &key("w1"), &all, &ids), Vec::<usize>::new());
    }

    #[test]
    fn content_hash_not_sample_id_addresses_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FeatureCache::open(dir.path()).unwrap();
        let mut a = items(1);
        check(&cache, &key("w"), &a, &[0]);
        a[0].sample_id = SampleId::new("renamed");
        assert!(check(&cache, &key("w"), &a, &[0]).is_empty(), "same content, other id: hit");
        a[0].content_sha256 = sha256_hex(b"edited image");
        assert_eq!(check(&cache, &key("w"), &a, &[0]), [0], "same id, other content: miss");
    }

    #[test]
    fn corrupt_or_foreign_entries_are_errors_and_get_recomputed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FeatureCache::open(dir.path()).unwrap();
        let all = items(2);
        check(&cache, &key("w"), &all, &[0, 1]);
        let p0 = cache.entry_path(&key("w"), &all[0]);
        let p1 = cache.entry_path(&key("w"), &all[1]);
        let bytes = std::fs::read(&p0).unwrap();
        std::fs::write(&p0, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(
            cache.get(&key("w"), &all[0], &Device::Cpu),
            Err(Error::CacheEntry { .. })
        ));
        std::fs::copy(cache.entry_path(&key("w"), &all[0]), &p1).unwrap();
        std::fs::write(&p1, &bytes).unwrap(); // item 0's entry under item 1's address
        let err = cache.get(&key("w"), &all[1], &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("content_sha256"), "{err}");
        assert_eq!(check(&cache, &key("w"), &all, &[0, 1]), [0, 1]);
        assert!(check(&cache, &key("w"), &all, &[0, 1]).is_empty());
    }

    #[test]
    fn entry_locks_cover_each_stripe_once_and_exclude_other_holders() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FeatureCache::open(dir.path()).unwrap();
        let all = items(40);
        let locks = cache.lock_entries(&key("w"), &all).unwrap();
        let stripes: BTreeSet<_> = all
            .iter()
            .map(|i| cache.entry_path(&key("w"), i).parent().unwrap().to_owned())
            .collect();
        assert_eq!(locks.len(), stripes.len());
        assert!(FileLock::try_exclusive(locks[0].path()).unwrap().is_none(), "held");
        drop(locks);
        assert_eq!(cache.lock_entries(&key("w"), &all[..1]).unwrap().len(), 1);
        assert!(cache.lock_entries(&key("w"), &[]).unwrap().is_empty());
    }

    #[test]
    fn wrong_row_count_from_compute_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FeatureCache::open(dir.path()).unwrap();
        let r = cache.get_or_compute(&key("w"), &items(3), &Device::Cpu, |_| features(&[0]));
        assert!(matches!(r, Err(Error::CacheEntry { .. })));
        let r = cache.get_or_compute(&key("w"), &items(1), &Device::Cpu, |_| {
            Err(Error::Config { field: "x", value: "1".into(), reason: "test".into() })
        });
        assert!(matches!(r, Err(Error::Config { .. })));
    }
}
