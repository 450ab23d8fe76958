//! Where each memory-bank patch came from (training image and grid cell), and the nearest
//! training patch of a test image's most anomalous patch: what "normal" it was compared with.
//!
//! A fit records, for every bank row, the row of the training patch matrix it was copied from
//! (`image · h · w + y · w + x`, images in the order the fit saw them). The images are named by
//! their sample ids once known ([`PatchCore::name_training_images`]). Saved models keep it in
//! [`PROVENANCE_FILE`] beside the tensors, tied to them by the tensors' SHA-256; models saved
//! before provenance existed load without it.

use super::algorithm::{BankDetector, PatchCore};
use crate::softpatch::SoftPatch;
use crate::{Error, Result};
use candle_core::Tensor;
use llb_types::SampleId;
use std::path::Path;

/// Name of the provenance file inside a saved-model folder.
pub const PROVENANCE_FILE: &str = "bank_provenance.json";

/// The training patch behind each memory-bank row.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankProvenance {
    /// Number of training images the bank was built from.
    n_images: usize,
    /// The feature grid `(h, w)`.
    grid: (usize, usize),
    /// Sample ids of the training images in fit order, once named.
    image_ids: Option<Vec<SampleId>>,
    /// Per bank row: the training patch row `image · h · w + y · w + x`.
    patch_rows: Vec<u32>,
}

/// One training patch: its image and grid cell.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PatchSource {
    /// The image's position among the fit's training images.
    pub image_index: usize,
    /// The image's sample id, when the provenance names its images.
    pub sample_id: Option<SampleId>,
    /// The cell `(row, column)` on the feature grid.
    pub cell: (usize, usize),
}

/// The nearest memory-bank patch of one test image's most anomalous patch.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct NearestTrainingPatch {
    /// The test image's most anomalous cell `(row, column)` on the feature grid.
    pub cell: (usize, usize),
    /// That cell's patch score (the nearest-neighbour distance, weighted for SoftPatch).
    pub patch_score: f32,
    /// Euclidean distance to the nearest bank patch.
    pub distance: f32,
    /// Row of the nearest patch in the memory bank.
    pub bank_row: usize,
    /// Where that bank patch came from; `None` for a model saved without provenance.
    pub source: Option<PatchSource>,
}

/// The provenance file: the provenance and the checksum of the tensors it belongs to.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvenanceFile {
    tensors_sha256: String,
    provenance: BankProvenance,
}

impl BankProvenance {
    /// Provenance of a bank built from `n_images` images on `grid`: bank row `b` is training
    /// patch row `selected[b]`, or `b` itself when every patch was kept (`selected = None`).
    pub(crate) fn of_rows(n_images: usize, grid: (usize, usize), selected: Option<&[u32]>) -> Self {
        let patch_rows = match selected {
            Some(rows) => rows.to_vec(),
            None => (0..(n_images * grid.0 * grid.1) as u32).collect(),
        };
        Self { n_images, grid, image_ids: None, patch_rows }
    }

    /// Number of bank rows described.
    pub fn len(&self) -> usize {
        self.patch_rows.len()
    }

    /// `true` for an empty bank.
    pub fn is_empty(&self) -> bool {
        self.patch_rows.is_empty()
    }

    /// The sample ids of the training images, in fit order, when named.
    pub fn image_ids(&self) -> Option<&[SampleId]> {
        self.image_ids.as_deref()
    }

    /// The training patch behind bank row `bank_row`, if the row exists.
    pub fn source(&self, bank_row: usize) -> Option<PatchSource> {
        let patch = *self.patch_rows.get(bank_row)? as usize;
        let per_image = self.grid.0 * self.grid.1;
        let (image_index, cell) = (patch / per_image, patch % per_image);
        let sample_id = self.image_ids.as_ref().and_then(|ids| ids.get(image_index)).cloned();
        Some(PatchSource { image_index, sample_id, cell: (cell / self.grid.1, cell % self.grid.1) })
    }

    /// Names the training images: `ids[i]` is the fit's `i`-th image.
    ///
    /// When the images are already named, `ids` must hold the same ids (in any order) and
    /// nothing changes: the fit's own names win.
    pub(crate) fn name_images(&mut self, ids: &[SampleId]) -> Result<()> {
        let mismatch = |reason: String| Error::Shape {
            what: "training image ids of the memory bank".into(),
            expected: reason,
            got: vec![ids.len()],
        };
        if ids.len() != self.n_images {
            return Err(mismatch(format!("{} ids, one per training image", self.n_images)));
        }
        match &self.image_ids {
            None => self.image_ids = Some(ids.to_vec()),
            Some(named) => {
                let (mut a, mut b) = (named.clone(), ids.to_vec());
                a.sort();
                b.sort();
                if a != b {
                    return Err(mismatch("the ids the bank's images were named with".into()));
                }
            }
        }
        Ok(())
    }

    /// Checks that the provenance describes a bank of `bank_len` rows on `grid`.
    fn check(&self, bank_len: usize, grid: (usize, usize)) -> std::result::Result<(), String> {
        let n_patches = self.n_images * self.grid.0 * self.grid.1;
        if self.patch_rows.len() != bank_len || self.grid != grid {
            return Err(format!(
                "describes {} bank rows on a {:?} grid, the bank has {bank_len} on {grid:?}",
                self.patch_rows.len(),
                self.grid
            ));
        }
        if self.patch_rows.iter().any(|&r| r as usize >= n_patches) {
            return Err(format!("a patch row is beyond the {n_patches} training patches"));
        }
        if self.image_ids.as_ref().is_some_and(|ids| ids.len() != self.n_images) {
            return Err(format!("names other than {} training images", self.n_images));
        }
        Ok(())
    }
}

impl BankDetector {
    /// For every image of `layers`, its most anomalous patch (lowest cell on ties) and that
    /// patch's nearest bank patch with its provenance.
    pub(crate) fn nearest_training_patches(
        &self,
        layers: &[Tensor],
    ) -> Result<Vec<NearestTrainingPatch>> {
        let scored = self.patch_scores(layers)?;
        let scores = scored.scores.to_vec1::<f32>()?;
        let distances = scored.nearest.distances.to_vec1::<f32>()?;
        let indices = scored.nearest.indices.to_vec1::<u32>()?;
        let per_image = self.grid.0 * self.grid.1;
        let out = scores
            .chunks(per_image)
            .enumerate()
            .map(|(image, cells)| {
                let worst = (0..cells.len())
                    .max_by(|&a, &b| cells[a].total_cmp(&cells[b]).then(b.cmp(&a)))
                    .unwrap_or(0);
                let row = image * per_image + worst;
                let bank_row = indices[row] as usize;
                NearestTrainingPatch {
                    cell: (worst / self.grid.1, worst % self.grid.1),
                    patch_score: cells[worst],
                    distance: distances[row],
                    bank_row,
                    source: self.provenance.as_ref().and_then(|p| p.source(bank_row)),
                }
            })
            .collect();
        Ok(out)
    }
}

/// Provenance accessors shared by PatchCore and SoftPatch.
macro_rules! provenance_methods {
    ($model:ty) => {
        impl $model {
            /// Where each memory-bank patch came from; `None` for a model saved without it.
            pub fn provenance(&self) -> Option<&BankProvenance> {
                self.inner.provenance.as_ref()
            }

            /// Names the training images the bank was built from: `ids[i]` is the `i`-th image
            /// (row) the model was fitted on. When the fit already named them, `ids` must be the
            /// same set and nothing changes.
            ///
            /// # Errors
            /// [`Error::Shape`] when the count or the set of ids does not match, or the model has
            /// no provenance.
            pub fn name_training_images(&mut self, ids: &[SampleId]) -> Result<()> {
                match self.inner.provenance.as_mut() {
                    Some(p) => p.name_images(ids),
                    None => Err(Error::Shape {
                        what: "memory-bank provenance".into(),
                        expected: "a model fitted by this version (loaded without provenance)"
                            .into(),
                        got: vec![],
                    }),
                }
            }

            /// For every image of `layers` (`[N, C, h, w]` per layer, as for scoring): its most
            /// anomalous patch and the nearest memory-bank patch, with where that came from.
            ///
            /// # Errors
            /// As [`Detector::anomaly_maps`](crate::Detector::anomaly_maps).
            pub fn nearest_training_patches(
                &self,
                layers: &[Tensor],
            ) -> Result<Vec<NearestTrainingPatch>> {
                self.inner.nearest_training_patches(layers)
            }
        }
    };
}

provenance_methods!(PatchCore);
provenance_methods!(SoftPatch);

/// Writes `provenance` into saved-model folder `dir`, tied to the tensors' checksum, or removes a
/// stale file when there is none.
pub(crate) fn save(
    dir: &Path,
    provenance: Option<&BankProvenance>,
    tensors_sha256: &str,
) -> Result<()> {
    let path = dir.join(PROVENANCE_FILE);
    let Some(provenance) = provenance else {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::Io { path, source: e })
            }
            _ => Ok(()),
        };
    };
    let file = ProvenanceFile {
        tensors_sha256: tensors_sha256.to_string(),
        provenance: provenance.clone(),
    };
    let json =
        serde_json::to_vec(&file).map_err(|source| Error::Json { path: path.clone(), source })?;
    llb_types::atomic::write(&path, &json).map_err(|source| Error::Io { path, source })
}

/// Reads the provenance of saved-model folder `dir`: `None` when the model was saved without it.
///
/// # Errors
/// [`Error::BadModel`] when the file belongs to other tensors or does not describe this bank.
pub(crate) fn load(
    dir: &Path,
    tensors_sha256: &str,
    bank_len: usize,
    grid: (usize, usize),
) -> Result<Option<BankProvenance>> {
    let path = dir.join(PROVENANCE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::Io { path, source }),
    };
    let file: ProvenanceFile = serde_json::from_slice(&bytes)
        .map_err(|source| Error::Json { path: path.clone(), source })?;
    if file.tensors_sha256 != tensors_sha256 {
        let reason = "written for other tensors (sha256 differs); refit or delete it".to_string();
        return Err(Error::BadModel { path, reason });
    }
    file.provenance.check(bank_len, grid).map_err(|reason| Error::BadModel { path, reason })?;
    Ok(Some(file.provenance))
}

#[cfg(test)]
mod tests {
    use super::super::test_data::normal_features;
    use super::*;
    use crate::{Fit, ModelCard, PatchCoreConfig, SoftPatchConfig};
    use candle_core::Device;

    const GRID: (usize, usize) = (4, 5);
    const C: usize = 6;

    fn layers(n: usize, seed: u64) -> (Vec<f32>, Tensor) {
        let values = normal_features(n, C, GRID, seed);
        let tensor = Tensor::from_vec(values.clone(), (n, C, GRID.0, GRID.1), &Device::Cpu);
        (values, tensor.unwrap())
    }

    /// The features `[C]` of cell `(y, x)` of image `image` in `[n, C, h, w]` values.
    fn patch(values: &[f32], image: usize, (y, x): (usize, usize)) -> Vec<f32> {
        (0..C).map(|c| values[((image * C + c) * GRID.0 + y) * GRID.1 + x]).collect()
    }

    /// One place that fits, so that a change of the `Fit` signature touches one line.
    fn fit<F: Fit>(config: &F, layers: &Tensor) -> F::Model {
        let n = layers.dim(0).unwrap();
        config.fit(&ids(n), std::slice::from_ref(layers)).unwrap()
    }

    fn ids(n: usize) -> Vec<SampleId> {
        (0..n).map(|i| SampleId::new(format!("good/{i:03}.png"))).collect()
    }

    /// Every bank row must equal the training patch its provenance names.
    fn check_bank(bank: &Tensor, provenance: &BankProvenance, values: &[f32]) {
        let rows = bank.to_vec2::<f32>().unwrap();
        assert_eq!(provenance.len(), rows.len());
        for (b, row) in rows.iter().enumerate() {
            let source = provenance.source(b).unwrap();
            assert_eq!(row, &patch(values, source.image_index, source.cell), "bank row {b}");
        }
    }

    #[test]
    fn every_bank_row_is_the_training_patch_its_provenance_names() {
        let (values, train) = layers(6, 1);
        for fraction in [0.3, 1.0] {
            let config = PatchCoreConfig {
                coreset_fraction: fraction,
                projection_dim: Some(4),
                ..PatchCoreConfig::roth2022()
            };
            let model = fit(&config, &train);
            check_bank(model.bank(), model.provenance().unwrap(), &values);
        }
        let soft = SoftPatchConfig {
            coreset_fraction: 0.5,
            projection_dim: Some(4),
            ..SoftPatchConfig::jiang2022()
        };
        let model = fit(&soft, &train);
        check_bank(model.bank(), model.provenance().unwrap(), &values);
    }

    #[test]
    fn the_nearest_patch_of_the_worst_cell_names_its_training_image_and_cell() {
        let (values, train) = layers(5, 2);
        let config = PatchCoreConfig { coreset_fraction: 1.0, ..PatchCoreConfig::roth2022() };
        let mut model = fit(&config, &train);
        model.name_training_images(&ids(5)).unwrap();
        // A test image equal to training image 1, except cell (2, 3), which is a slightly moved
        // copy of image 4's cell (0, 1): that cell is the worst, and its nearest patch is there.
        let mut test: Vec<f32> =
            (0..C * GRID.0 * GRID.1).map(|v| values[C * GRID.0 * GRID.1 + v]).collect();
        let planted = patch(&values, 4, (0, 1));
        for c in 0..C {
            test[(c * GRID.0 + 2) * GRID.1 + 3] = planted[c] + 0.002;
        }
        let test = Tensor::from_vec(test, (1, C, GRID.0, GRID.1), &Device::Cpu).unwrap();
        let nearest = model.nearest_training_patches(&[test]).unwrap();
        assert_eq!(nearest.len(), 1);
        let n = &nearest[0];
        assert_eq!(n.cell, (2, 3));
        assert!(n.distance > 0.0 && n.distance < 0.01, "{}", n.distance);
        let source = n.source.clone().unwrap();
        assert_eq!((source.image_index, source.cell), (4, (0, 1)));
        assert_eq!(source.sample_id, Some(SampleId::new("good/004.png")));
    }

    #[test]
    fn naming_checks_the_count_and_keeps_the_fits_own_names() {
        let (_, train) = layers(3, 3);
        let config = PatchCoreConfig { coreset_fraction: 1.0, ..PatchCoreConfig::roth2022() };
        let mut model = fit(&config, &train);
        assert!(model.name_training_images(&ids(2)).is_err());
        model.name_training_images(&ids(3)).unwrap();
        let mut reversed = ids(3);
        reversed.reverse();
        model.name_training_images(&reversed).unwrap();
        assert_eq!(model.provenance().unwrap().image_ids().unwrap(), ids(3));
        let other: Vec<SampleId> = (0..3).map(|i| SampleId::new(format!("x{i}"))).collect();
        assert!(model.name_training_images(&other).is_err());
    }

    fn card() -> ModelCard {
        ModelCard {
            encoder: "toy".into(),
            encoder_weights_sha256: "0".repeat(64),
            input_spec: llb_types::InputSpec { mean: [0.0; 3], std: [1.0; 3], size_multiple_px: 1 },
            image_size_px: [8, 10],
            image_score_rule: crate::ImageScoreRule::Max,
            image_score_threshold: None,
        }
    }

    #[test]
    fn saved_models_keep_provenance_and_old_ones_load_without() {
        let (_, train) = layers(4, 4);
        let config = PatchCoreConfig {
            coreset_fraction: 0.5,
            projection_dim: Some(4),
            ..PatchCoreConfig::roth2022()
        };
        let mut model = fit(&config, &train);
        model.name_training_images(&ids(4)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        model.save(dir.path(), &card()).unwrap();
        let (loaded, _) = PatchCore::load(dir.path(), &Device::Cpu).unwrap();
        assert_eq!(loaded.provenance(), model.provenance());

        // A model saved before provenance existed: no file, no provenance, sources unknown.
        std::fs::remove_file(dir.path().join(PROVENANCE_FILE)).unwrap();
        let (old, _) = PatchCore::load(dir.path(), &Device::Cpu).unwrap();
        assert!(old.provenance().is_none());
        let nearest = old.nearest_training_patches(std::slice::from_ref(&train)).unwrap();
        assert!(nearest.iter().all(|n| n.source.is_none()));

        // A provenance file of other tensors is refused.
        let other = fit(&PatchCoreConfig { seed: 9, ..config }, &train);
        let other_dir = tempfile::tempdir().unwrap();
        other.save(other_dir.path(), &card()).unwrap();
        std::fs::copy(other_dir.path().join(PROVENANCE_FILE), dir.path().join(PROVENANCE_FILE))
            .unwrap();
        let err = PatchCore::load(dir.path(), &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("written for other tensors"), "{err}");
    }
}
