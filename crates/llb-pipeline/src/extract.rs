//! Feature extraction with the on-disk cache: images → prepared tensors → encoder layers, one
//! extraction per image content, shared by every sub-model and the final model.

use crate::backbone::{EncoderKind, EncoderSettings};
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use llb_data::{PreprocessConfig, Sample, prepare_images};
use llb_features::{
    CacheItem, Dinov2Config, Dinov2Encoder, EfficientNetLiteConfig, EfficientNetLiteEncoder,
    EfficientNetLiteEncoderConfig, Encoder, FeatureCache, FeatureKey, ViTConfig,
};
use llb_types::SampleId;
use llb_types::sha256::sha256_hex;
use std::path::{Path, PathBuf};

/// What to do with an image that cannot be read or decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnBadImage {
    /// Report it (log + `failures`) and go on without it.
    Skip,
    /// Stop the run with an error naming the file.
    Fail,
}

impl OnBadImage {
    /// The names [`OnBadImage::from_str`](std::str::FromStr::from_str) accepts.
    pub const NAMES: [&'static str; 2] = ["skip", "fail"];
}

impl std::str::FromStr for OnBadImage {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "skip" => Ok(Self::Skip),
            "fail" => Ok(Self::Fail),
            _ => Err(format!("`{s}`: expected one of {}", Self::NAMES.join(", "))),
        }
    }
}

/// Features of the samples that could be read, with the ones that could not.
pub struct Extracted {
    /// Ids of the extracted samples, in input order (failures removed).
    pub ids: Vec<SampleId>,
    /// SHA-256 (hex) of each extracted sample's image file, in the order of `ids`.
    pub content_sha256: Vec<String>,
    /// One tensor `[N, C, h, w]` per encoder layer, rows in the order of `ids`.
    pub layers: Vec<Tensor>,
    /// Samples skipped, with the reason (which names the file).
    pub failures: Vec<(SampleId, String)>,
}

impl Extracted {
    /// The samples `wanted` (ids that were not extracted are left out), in the order of `wanted`:
    /// the one way a subset of features is taken, by id.
    ///
    /// # Errors
    /// [`Error::NoFeatures`] when none of `wanted` has features, or a backend failure.
    pub fn subset(&self, wanted: &[SampleId]) -> Result<Extracted> {
        let index: std::collections::BTreeMap<&SampleId, u32> =
            self.ids.iter().enumerate().map(|(i, id)| (id, i as u32)).collect();
        let (ids, rows): (Vec<SampleId>, Vec<u32>) =
            wanted.iter().filter_map(|id| index.get(id).map(|&r| (id.clone(), r))).unzip();
        if ids.is_empty() {
            return Err(Error::NoFeatures(format!(
                "none of the {} requested samples has features",
                wanted.len()
            )));
        }
        let content_sha256 =
            rows.iter().map(|&r| self.content_sha256[r as usize].clone()).collect();
        let device = self.layers[0].device();
        let rows = Tensor::from_slice(&rows, rows.len(), device)?;
        let layers = self
            .layers
            .iter()
            .map(|l| l.index_select(&rows, 0))
            .collect::<candle_core::Result<_>>()?;
        Ok(Extracted { ids, content_sha256, layers, failures: Vec::new() })
    }
}

/// An encoder, its preprocessing and its cache.
pub struct Extractor {
    encoder: Box<dyn Encoder>,
    weights: PathBuf,
    key: FeatureKey,
    preprocess: PreprocessConfig,
    cache: FeatureCache,
    device: Device,
    batch_size: usize,
    aggregation: Option<llb_features::PatchAggregator>,
}

impl Extractor {
    /// Loads the encoder `settings` name from its converted weights file `weights` (e.g. the
    /// asset cache's `weights/dinov2-vits14.safetensors`), with PatchCore's aggregation when the
    /// settings ask for it, and the feature cache `cache`.
    ///
    /// # Errors
    /// An unreadable weights file, or an image size the encoder cannot take.
    pub fn open(
        settings: &EncoderSettings,
        weights: &Path,
        cache: FeatureCache,
        device: &Device,
    ) -> Result<Self> {
        let encoder: Box<dyn Encoder> = match settings.kind {
            EncoderKind::Dinov2Vits14 => {
                let config = Dinov2Config {
                    vit: ViTConfig::dinov2_small(),
                    blocks: settings.layers.clone(),
                    apply_final_layernorm: false,
                };
                Box::new(Dinov2Encoder::load(weights, &config, device).map_err(loading(weights))?)
            }
            EncoderKind::EfficientnetLite0 => {
                let config = EfficientNetLiteEncoderConfig {
                    model: EfficientNetLiteConfig::lite0(),
                    out_blocks: settings.layers.clone(),
                };
                Box::new(
                    EfficientNetLiteEncoder::load(weights, &config, device)
                        .map_err(loading(weights))?,
                )
            }
        };
        let bytes = std::fs::read(weights).map_err(Error::io(weights))?;
        let sha = sha256_hex(&bytes);
        let mut extractor =
            Self::new(encoder, weights, &sha, settings.image_size_px, cache, device.clone())?;
        if let Some(config) = &settings.aggregation {
            extractor.aggregation = Some(llb_features::PatchAggregator::new(config)?);
        }
        Ok(extractor)
    }

    /// Wraps `encoder` (loaded from `weights`, of SHA-256 `weights_sha256`) with square inputs of
    /// `image_size_px` and a cache at `cache`.
    fn new(
        encoder: Box<dyn Encoder>,
        weights: &Path,
        weights_sha256: &str,
        image_size_px: u32,
        cache: FeatureCache,
        device: Device,
    ) -> Result<Self> {
        let spec = encoder.input_spec();
        let multiple = spec.size_multiple_px as u32;
        if multiple == 0 || !image_size_px.is_multiple_of(multiple) {
            return Err(Error::Settings(format!(
                "image size {image_size_px} px is not a multiple of the encoder's {multiple} px"
            )));
        }
        let preprocess = PreprocessConfig {
            resize_px: image_size_px,
            crop_px: image_size_px,
            mean: spec.mean,
            std: spec.std,
        };
        // Features computed on a GPU differ from the CPU's in the last bits: keep their cache
        // entries apart, so that the same settings give the same scores whichever device filled
        // the cache first (CPU keys are unchanged).
        let encoder_name = if device.is_cpu() {
            encoder.name()
        } else {
            format!("{}@{}", encoder.name(), if device.is_cuda() { "cuda" } else { "gpu" })
        };
        let key = FeatureKey {
            encoder: encoder_name,
            weights_sha256: weights_sha256.to_owned(),
            input_size_px: (image_size_px as usize, image_size_px as usize),
        };
        Ok(Self {
            encoder,
            weights: weights.to_path_buf(),
            key,
            preprocess,
            cache,
            device,
            batch_size: 8,
            aggregation: None,
        })
    }

    /// The weights file the encoder was loaded from.
    pub fn weights(&self) -> &Path {
        &self.weights
    }

    /// The preprocessing every image goes through (also for predictions).
    pub fn preprocess(&self) -> &PreprocessConfig {
        &self.preprocess
    }

    /// The cache key of this encoder (name, weights, input size).
    pub fn key(&self) -> &FeatureKey {
        &self.key
    }

    /// This encoder's identity as the stage-1 cache key's encoder part ([`crate::screen`]'s
    /// `cache_key`): name, weights hash and input size, as JSON.
    pub fn cache_key(&self) -> String {
        serde_json::to_string(&self.key).unwrap_or_else(|_| format!("{:?}", self.key))
    }

    /// The encoder's input normalisation and size multiple.
    pub fn input_spec(&self) -> llb_features::InputSpec {
        self.encoder.input_spec()
    }

    /// Input side length in pixels.
    pub fn image_size_px(&self) -> usize {
        self.preprocess.crop_px as usize
    }

    /// Extracts (or reads from the cache) the features of `samples`.
    pub fn extract(&self, samples: &[Sample], on_bad: OnBadImage) -> Result<Extracted> {
        let _span =
            tracing::info_span!("extract", encoder = %self.key.encoder, n_samples = samples.len())
                .entered();
        let mut failures = Vec::new();
        let mut per_sample: Vec<Option<Vec<Tensor>>> = Vec::with_capacity(samples.len());
        let mut items = Vec::with_capacity(samples.len());
        for sample in samples {
            let item = match std::fs::read(&sample.image_path) {
                Ok(bytes) => {
                    CacheItem { sample_id: sample.id.clone(), content_sha256: sha256_hex(&bytes) }
                }
                Err(e) => {
                    let reason = format!("{}: {e}", sample.image_path.display());
                    bad_image(on_bad, &sample.id, &reason)?;
                    failures.push((sample.id.clone(), reason));
                    per_sample.push(None);
                    items.push(None);
                    continue;
                }
            };
            per_sample.push(self.cache.get(&self.key, &item, &self.device).unwrap_or_else(|e| {
                tracing::warn!(sample = %sample.id, error = %e, "recomputing unreadable cache entry");
                None
            }));
            items.push(Some(item));
        }
        let missing: Vec<usize> =
            (0..samples.len()).filter(|&i| per_sample[i].is_none() && items[i].is_some()).collect();
        tracing::info!(
            hits = samples.len() - missing.len() - failures.len(),
            to_compute = missing.len(),
            "feature cache"
        );
        for chunk in missing.chunks(self.batch_size) {
            // Another process on the same cache waits here while this one computes the chunk,
            // then reuses the stored entries (and the other way round).
            let chunk_items = chunk.iter().map(|&i| items[i].as_ref().expect("missing has items"));
            let _locks = self.cache.lock_entries(&self.key, chunk_items)?;
            let chunk: Vec<usize> = chunk
                .iter()
                .copied()
                .filter(|&i| {
                    let item = items[i].as_ref().expect("missing entries have cache items");
                    match self.cache.get(&self.key, item, &self.device) {
                        Ok(Some(stored)) => {
                            per_sample[i] = Some(stored);
                            false
                        }
                        _ => true,
                    }
                })
                .collect();
            if chunk.is_empty() {
                continue;
            }
            let batch: Vec<Sample> = chunk.iter().map(|&i| samples[i].clone()).collect();
            let prepared = prepare_images(&batch, &self.preprocess)?;
            for (id, err) in prepared.failures {
                let reason = err.to_string();
                bad_image(on_bad, &id, &reason)?;
                failures.push((id, reason));
            }
            if prepared.items.is_empty() {
                continue;
            }
            let side = self.image_size_px();
            let data: Vec<f32> =
                prepared.items.iter().flat_map(|p| p.data.iter().copied()).collect();
            let images =
                Tensor::from_vec(data, (prepared.items.len(), 3, side, side), &self.device)?;
            let layers = self.encoder.forward(&images)?;
            let index_of: std::collections::BTreeMap<&SampleId, usize> =
                chunk.iter().map(|&i| (&samples[i].id, i)).collect();
            for (row, image) in prepared.items.iter().enumerate() {
                let i = index_of[&image.id];
                let own: Vec<Tensor> =
                    layers.iter().map(|l| l.get(row)).collect::<candle_core::Result<_>>()?;
                let item = items[i].as_ref().expect("missing entries have cache items");
                self.cache.put(&self.key, item, &own).map_err(|e| {
                    Error::during(format!("caching features of {}", image.id))(e.into())
                })?;
                per_sample[i] = Some(own);
            }
            tracing::debug!(n = prepared.items.len(), "encoded batch");
        }
        let mut ids = Vec::new();
        let mut content_sha256 = Vec::new();
        let mut rows: Vec<Vec<Tensor>> = Vec::new();
        for ((sample, layers), item) in samples.iter().zip(per_sample).zip(items) {
            if let (Some(layers), Some(item)) = (layers, item) {
                ids.push(sample.id.clone());
                content_sha256.push(item.content_sha256);
                rows.push(layers);
            }
        }
        if ids.is_empty() {
            return Err(Error::NoFeatures(format!("no image of {} could be read", samples.len())));
        }
        let n_layers = rows[0].len();
        let mut layers = (0..n_layers)
            .map(|l| Tensor::stack(&rows.iter().map(|r| &r[l]).collect::<Vec<_>>(), 0))
            .collect::<candle_core::Result<Vec<_>>>()?;
        if let Some(aggregator) = &self.aggregation {
            layers = vec![aggregator.forward(&layers)?];
        }
        Ok(Extracted { ids, content_sha256, layers, failures })
    }
}

/// An encoder's load error, naming the weights file.
fn loading(weights: &Path) -> impl FnOnce(llb_features::Error) -> Error {
    let stage = format!("loading {}", weights.display());
    move |e| Error::during(stage)(e.into())
}

fn bad_image(on_bad: OnBadImage, id: &SampleId, reason: &str) -> Result<()> {
    match on_bad {
        OnBadImage::Skip => {
            tracing::warn!(sample = %id, %reason, "skipping unreadable image");
            Ok(())
        }
        OnBadImage::Fail => Err(Error::BadImage { id: id.clone(), reason: reason.to_owned() }),
    }
}
