//! The fitted SoftPatch model: denoised coreset memory bank with soft weights.

use super::config::SoftPatchConfig;
use super::outlier::{keep_mask, outlier_scores};
use crate::detector::{Detector, Fit};
use crate::order::in_id_order;
use crate::patchcore::{
    BankDetector, BankProvenance, MemoryBank, coreset_size, coreset_start, greedy_coreset, project,
};
use crate::patches::patch_matrix;
use crate::{Error, Result};
use candle_core::Tensor;
use llb_types::SampleId;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A fitted SoftPatch detector: PatchCore's nearest-neighbour scoring on a memory bank from
/// which the most outlying training patches were removed, each remaining bank patch carrying
/// its outlier score as a weight.
///
/// A patch's anomaly score is its distance to the nearest bank patch, multiplied by that bank
/// patch's weight when [`SoftPatchConfig::soft_weighting`] is on. Maps are upsampled and
/// blurred as in PatchCore; scoring is deterministic.
#[derive(Clone, Debug)]
pub struct SoftPatch {
    config: SoftPatchConfig,
    pub(crate) inner: BankDetector,
    n_dropped: usize,
}

impl SoftPatch {
    /// The configuration the model was fitted with.
    pub fn config(&self) -> &SoftPatchConfig {
        &self.config
    }

    /// Number of patches in the memory bank.
    pub fn bank_len(&self) -> usize {
        self.inner.bank.len()
    }

    /// The memory bank `[K, D]` f32.
    pub fn bank(&self) -> &Tensor {
        &self.inner.bank.features
    }

    /// The bank patches' weights `[K]` f32, when soft weighting is on.
    pub fn bank_weights(&self) -> Option<&Tensor> {
        self.inner.bank.weights.as_ref()
    }

    /// Number of training patches the denoising step dropped (0 for a loaded model).
    pub fn n_dropped(&self) -> usize {
        self.n_dropped
    }

    /// The feature grid `(h, w)` the model was fitted on.
    pub fn grid(&self) -> (usize, usize) {
        self.inner.grid
    }

    /// Weighted nearest-neighbour distance of every patch, `[N, h, w]` f32 on the feature grid,
    /// before upsampling and blur.
    ///
    /// # Errors
    /// As [`Detector::anomaly_maps`].
    pub fn patch_scores(&self, layers: &[Tensor]) -> Result<Tensor> {
        self.inner.grid_scores(layers)
    }

    /// Rebuilds a model from its parts (used by loading).
    pub(crate) fn from_parts(
        config: SoftPatchConfig,
        bank: Tensor,
        weights: Option<Tensor>,
        grid: (usize, usize),
        n_dropped: usize,
    ) -> Result<Self> {
        config.validate()?;
        if config.soft_weighting != weights.is_some() {
            return Err(Error::Shape {
                what: "softpatch bank weights".into(),
                expected: format!(
                    "weights present exactly when soft_weighting = {}",
                    config.soft_weighting
                ),
                got: weights.map(|w| w.dims().to_vec()).unwrap_or_default(),
            });
        }
        let blur_sigma_px = config.blur_sigma_px;
        let bank = MemoryBank::new(bank, weights)?;
        let inner = BankDetector { bank, grid, blur_sigma_px, provenance: None };
        Ok(Self { config, inner, n_dropped })
    }
}

impl Fit for SoftPatchConfig {
    type Model = SoftPatch;

    /// Projects all training patches, scores each against the patches at the same position in
    /// the other images, drops those above the `1 − noise_fraction` quantile, runs the greedy
    /// coreset on the rest and keeps the selected patches (and their scores as weights).
    ///
    /// # Errors
    /// Those of PatchCore, and [`Error::TooFewImages`] with fewer than two training images.
    fn fit(&self, ids: &[SampleId], layers: &[Tensor]) -> Result<SoftPatch> {
        self.validate()?;
        let rows = in_id_order(ids, layers)?;
        let device = rows.layers[0].device().clone();
        let patches = patch_matrix(&rows.layers, &device)?;
        let n = patches.matrix.dim(0)?;
        let _span =
            tracing::info_span!("softpatch_fit", n_images = patches.n_images, n_patches = n)
                .entered();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let projected = project(&patches.matrix, self.projection_dim, &mut rng)?;
        let scores = outlier_scores(&projected, patches.n_images, self.outlier_score)?;
        let kept: Vec<u32> = keep_mask(&scores, self.noise_fraction)
            .iter()
            .zip(0u32..)
            .filter(|(k, _)| **k)
            .map(|(_, i)| i)
            .collect();
        let n_dropped = n - kept.len();
        tracing::info!(n_dropped, n_kept = kept.len(), "softpatch denoising");
        let selected: Vec<u32> = if self.coreset_fraction >= 1.0 {
            kept
        } else {
            let kept_index = Tensor::from_vec(kept.clone(), kept.len(), &device)?;
            let candidates = projected.index_select(&kept_index, 0)?;
            // Start from the id-keyed patch, or the first kept patch after it.
            let wanted = coreset_start(&rows.ids, patches.grid.0 * patches.grid.1, self.seed);
            let start =
                kept.partition_point(|&k| (k as usize) < wanted).min(kept.len().saturating_sub(1));
            let picks = greedy_coreset(
                &candidates,
                coreset_size(self.coreset_fraction, kept.len()),
                start,
            )?;
            picks.iter().map(|&p| kept[p as usize]).collect()
        };
        let weights: Vec<f32> = selected.iter().map(|&i| scores[i as usize].max(0.0)).collect();
        let mut provenance =
            BankProvenance::of_rows(patches.n_images, patches.grid, Some(&selected));
        provenance.name_images(&rows.ids)?;
        let len = selected.len();
        let index = Tensor::from_vec(selected, len, &device)?;
        let bank = patches.matrix.index_select(&index, 0)?;
        let weights =
            if self.soft_weighting { Some(Tensor::from_vec(weights, len, &device)?) } else { None };
        let mut model =
            SoftPatch::from_parts(self.clone(), bank, weights, patches.grid, n_dropped)?;
        model.inner.provenance = Some(provenance);
        Ok(model)
    }
}

impl Detector for SoftPatch {
    fn name(&self) -> String {
        let c = &self.config;
        let outlier = match c.outlier_score {
            super::OutlierScore::KnnDistance { k } => format!("knn({k})"),
            super::OutlierScore::Lof { k } => format!("lof({k})"),
        };
        format!(
            "softpatch(outlier={outlier},noise={},soft={},coreset={},sigma={})",
            c.noise_fraction, c.soft_weighting, c.coreset_fraction, c.blur_sigma_px
        )
    }

    fn anomaly_maps(&self, layers: &[Tensor], image_size_px: (usize, usize)) -> Result<Tensor> {
        let scored = self.inner.patch_scores(layers)?;
        self.inner.maps(&scored, image_size_px)
    }
}
