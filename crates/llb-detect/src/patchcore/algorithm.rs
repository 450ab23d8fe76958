//! The fitted PatchCore model: fitting (coreset), anomaly maps and the re-weighted image score.

use super::bank::Scoring;
use super::bank::{MemoryBank, Nearest};
use super::config::{BankSampling, PatchCoreConfig, PatchScore};
use super::coreset::{coreset_size, coreset_start, greedy_coreset, project, random_rows};
use super::provenance::BankProvenance;
use crate::Result;
use crate::detector::{Detector, Fit, ImageScoreRule, Scores, image_scores};
use crate::map::MapSpec;
use crate::order::in_id_order;
use crate::patches::{PatchMatrix, patch_matrix, shape_error};
use candle_core::Tensor;
use llb_types::SampleId;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A memory bank with the grid it was fitted on: the part PatchCore and SoftPatch share.
#[derive(Clone, Debug)]
pub(crate) struct BankDetector {
    /// The bank (with SoftPatch's weights, if any).
    pub(crate) bank: MemoryBank,
    /// The feature grid `(h, w)` of the training images.
    pub(crate) grid: (usize, usize),
    /// Blur of the upsampled maps, in pixels.
    pub(crate) blur_sigma_px: f64,
    /// Where each bank row came from; `None` for models saved without it.
    pub(crate) provenance: Option<BankProvenance>,
}

/// Patch scores of a batch, before upsampling.
pub(crate) struct PatchScores {
    /// The batch's patches.
    pub(crate) patches: PatchMatrix,
    /// Patch anomaly scores `[N·h·w]` f32.
    pub(crate) scores: Tensor,
    /// The nearest bank patch of each patch.
    pub(crate) nearest: Nearest,
}

impl BankDetector {
    /// Scores every patch of `layers` against the bank.
    pub(crate) fn patch_scores(&self, layers: &[Tensor]) -> Result<PatchScores> {
        let patches = patch_matrix(layers, self.bank.features.device())?;
        let channels = patches.matrix.dim(1)?;
        if patches.grid != self.grid || channels != self.bank.dim() {
            let expected =
                format!("{} channels on a {:?} grid, as fitted", self.bank.dim(), self.grid);
            let got = [patches.n_images, channels, patches.grid.0, patches.grid.1];
            return Err(shape_error("feature layers", &expected, &got));
        }
        let (scores, nearest) = self.bank.patch_scores(&patches.matrix)?;
        Ok(PatchScores { patches, scores, nearest })
    }

    /// Patch scores of `layers` on the feature grid, `[N, h, w]` f32, before upsampling.
    pub(crate) fn grid_scores(&self, layers: &[Tensor]) -> Result<Tensor> {
        let scored = self.patch_scores(layers)?;
        Ok(scored.scores.reshape((scored.patches.n_images, self.grid.0, self.grid.1))?)
    }

    /// Upsampled, blurred maps `[N, H, W]` from patch scores.
    pub(crate) fn maps(
        &self,
        scored: &PatchScores,
        image_size_px: (usize, usize),
    ) -> Result<Tensor> {
        if image_size_px.0 == 0 || image_size_px.1 == 0 {
            return Err(shape_error(
                "image_size_px",
                "(H > 0, W > 0)",
                &[image_size_px.0, image_size_px.1],
            ));
        }
        let (h, w) = self.grid;
        let grid_scores = scored.scores.reshape((scored.patches.n_images, h, w))?;
        MapSpec::scipy_gaussian(self.blur_sigma_px).apply(&grid_scores, image_size_px)
    }
}

/// A fitted PatchCore detector: a memory bank of training patches scored by nearest-neighbour
/// distance.
///
/// Maps are the distance of each test patch to its nearest bank patch (`[N, h, w]`), upsampled
/// bilinearly to the image size and blurred (see [`PatchCoreConfig::blur_sigma_px`]). Scoring is
/// deterministic: the same model and features give bit-identical maps.
#[derive(Clone, Debug)]
pub struct PatchCore {
    config: PatchCoreConfig,
    pub(crate) inner: BankDetector,
}

impl PatchCore {
    /// The configuration the model was fitted with.
    pub fn config(&self) -> &PatchCoreConfig {
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

    /// The feature grid `(h, w)` the model was fitted on.
    pub fn grid(&self) -> (usize, usize) {
        self.inner.grid
    }

    /// Nearest-neighbour distance of every patch, `[N, h, w]` f32 on the feature grid, before
    /// upsampling and blur (what [`Detector::anomaly_maps`] upsamples).
    ///
    /// # Errors
    /// As [`Detector::anomaly_maps`].
    pub fn patch_scores(&self, layers: &[Tensor]) -> Result<Tensor> {
        self.inner.grid_scores(layers)
    }

    /// Distance of every row of a patch matrix `[M, D]` to its nearest bank patch (`[M]` f32):
    /// the search alone, for callers that already hold patches as rows.
    ///
    /// # Errors
    /// [`crate::Error::Shape`] when `D` is not the bank's feature dimension.
    pub fn nearest_distances(&self, patches: &Tensor) -> Result<Tensor> {
        let (_, dim) = patches.dims2()?;
        if dim != self.inner.bank.dim() {
            let expected = format!("[M, {}]", self.inner.bank.dim());
            return Err(shape_error("patch matrix", &expected, patches.dims()));
        }
        Ok(self.inner.bank.nearest(patches)?.distances)
    }

    /// Rebuilds a model from its parts: `image_of` numbers the training image of each bank
    /// row (required by [`PatchScore::KthNearestImage`], ignored otherwise).
    pub(crate) fn from_parts(
        config: PatchCoreConfig,
        bank: Tensor,
        grid: (usize, usize),
        image_of: Option<Vec<u32>>,
    ) -> Result<Self> {
        config.validate()?;
        let blur_sigma_px = config.blur_sigma_px;
        let scoring = match config.patch_score {
            PatchScore::Nearest => Scoring::Nearest,
            PatchScore::MeanOfNearest { k } => Scoring::MeanOfNearest(k),
            PatchScore::KthNearestImage { fraction } => {
                let image_of = image_of.ok_or_else(|| crate::Error::Shape {
                    what: "bank image indices".into(),
                    expected: "one training-image index per bank row".into(),
                    got: vec![],
                })?;
                let n_images = image_of.iter().map(|&i| i as usize + 1).max().unwrap_or(0);
                let distinct = image_of.iter().collect::<std::collections::BTreeSet<_>>().len();
                let k = ((fraction * distinct as f64).ceil() as usize).max(1);
                Scoring::KthNearestImage { k, image_of, n_images }
            }
        };
        let bank = MemoryBank::new(bank, None)?.with_scoring(scoring)?;
        Ok(Self { config, inner: BankDetector { bank, grid, blur_sigma_px, provenance: None } })
    }

    /// The training image (numbered in id order) of each bank row, when the scoring rule keeps
    /// them.
    pub fn bank_images(&self) -> Option<&[u32]> {
        match self.inner.bank.scoring() {
            Scoring::KthNearestImage { image_of, .. } => Some(image_of),
            _ => None,
        }
    }

    /// The paper's image-score weight `1 − softmax(d)₀` for image `image` of a scored batch:
    /// `d₀` is the distance of its most anomalous patch to that patch's nearest bank patch `m*`,
    /// and `d₁…` its distances to the `b − 1` bank patches nearest to `m*`. Computed in f64 with
    /// the maximum subtracted, so it is always finite; `1` when the bank has a single patch.
    fn reweight(&self, scored: &PatchScores, image: usize, b: usize) -> Result<f64> {
        let (h, w) = self.inner.grid;
        let per_image = h * w;
        let row = scored.scores.narrow(0, image * per_image, per_image)?;
        let worst = image * per_image + row.argmax(0)?.to_scalar::<u32>()? as usize;
        let bank = &self.inner.bank;
        let nearest = scored.nearest.indices.get(worst)?.to_scalar::<u32>()? as usize;
        let centre = bank.features.get(nearest)?;
        let mut neighbours: Vec<(f32, usize)> =
            bank.sq_distances_from(&centre)?.to_vec1::<f32>()?.into_iter().zip(0..).collect();
        neighbours.retain(|&(_, i)| i != nearest);
        neighbours.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let support: Vec<usize> =
            std::iter::once(nearest).chain(neighbours.iter().map(|&(_, i)| i)).take(b).collect();
        if support.len() < 2 {
            return Ok(1.0);
        }
        let query: Vec<f64> = scored
            .patches
            .matrix
            .get(worst)?
            .to_vec1::<f32>()?
            .into_iter()
            .map(f64::from)
            .collect();
        let mut dists = Vec::with_capacity(support.len());
        for &i in &support {
            let patch = bank.features.get(i)?.to_vec1::<f32>()?;
            dists.push(
                query
                    .iter()
                    .zip(&patch)
                    .map(|(q, p)| (q - f64::from(*p)).powi(2))
                    .sum::<f64>()
                    .sqrt(),
            );
        }
        let max = dists.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = dists.iter().map(|d| (d - max).exp()).sum();
        Ok(1.0 - (dists[0] - max).exp() / total)
    }
}

impl Fit for PatchCoreConfig {
    type Model = PatchCore;

    /// Builds the memory bank from all training patches, in id order: a seeded random
    /// projection and a greedy k-center coreset of `coreset_fraction` of the patches starting
    /// from an id-keyed patch ([`BankSampling::GreedyCoreset`]), or an id-keyed uniform sample
    /// ([`BankSampling::Random`]); the bank holds the selected full-dimension patches.
    fn fit(&self, ids: &[SampleId], layers: &[Tensor]) -> Result<PatchCore> {
        self.validate()?;
        let rows = in_id_order(ids, layers)?;
        let device = rows.layers[0].device().clone();
        let patches = patch_matrix(&rows.layers, &device)?;
        let n = patches.matrix.dim(0)?;
        let per_image = patches.grid.0 * patches.grid.1;
        let _span =
            tracing::info_span!("patchcore_fit", n_images = patches.n_images, n_patches = n)
                .entered();
        let size = coreset_size(self.coreset_fraction, n);
        let selected = match self.bank_sampling {
            _ if self.coreset_fraction >= 1.0 => None,
            BankSampling::Random => Some(random_rows(&rows.ids, per_image, size, self.seed)),
            BankSampling::GreedyCoreset => {
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
                let projected = project(&patches.matrix, self.projection_dim, &mut rng)?;
                let start = coreset_start(&rows.ids, per_image, self.seed);
                Some(greedy_coreset(&projected, size, start)?)
            }
        };
        let mut provenance =
            BankProvenance::of_rows(patches.n_images, patches.grid, selected.as_deref());
        provenance.name_images(&rows.ids)?;
        let selected = selected.unwrap_or_else(|| (0..n as u32).collect());
        let image_of: Vec<u32> = selected.iter().map(|&r| r / per_image as u32).collect();
        let len = selected.len();
        let bank = if len == n {
            patches.matrix
        } else {
            patches.matrix.index_select(&Tensor::from_vec(selected, len, &device)?, 0)?
        };
        tracing::info!(bank = bank.dim(0)?, "patchcore memory bank");
        let mut model = PatchCore::from_parts(self.clone(), bank, patches.grid, Some(image_of))?;
        model.inner.provenance = Some(provenance);
        Ok(model)
    }
}

impl Detector for PatchCore {
    fn name(&self) -> String {
        let c = &self.config;
        let proj = c.projection_dim.map_or("none".into(), |d| d.to_string());
        let reweight = c.reweight_neighbours.map_or("none".into(), |b| b.to_string());
        let sampling = match c.bank_sampling {
            BankSampling::GreedyCoreset => "coreset",
            BankSampling::Random => "random",
        };
        let score = match c.patch_score {
            PatchScore::Nearest => "nearest".to_owned(),
            PatchScore::MeanOfNearest { k } => format!("mean-of-nearest({k})"),
            PatchScore::KthNearestImage { fraction } => format!("kth-nearest-image({fraction})"),
        };
        format!(
            "patchcore({sampling}={},score={score},proj={proj},reweight={reweight},sigma={})",
            c.coreset_fraction, c.blur_sigma_px
        )
    }

    fn anomaly_maps(&self, layers: &[Tensor], image_size_px: (usize, usize)) -> Result<Tensor> {
        let scored = self.inner.patch_scores(layers)?;
        self.inner.maps(&scored, image_size_px)
    }

    /// The rule's score of each map, multiplied, when `reweight_neighbours` is set, by the
    /// paper's softmax weight of the image's most anomalous patch (see the crate docs for how
    /// this differs from the reference, which takes the maximum before upsampling).
    fn score(
        &self,
        layers: &[Tensor],
        image_size_px: (usize, usize),
        rule: ImageScoreRule,
    ) -> Result<Scores> {
        let scored = self.inner.patch_scores(layers)?;
        let maps = self.inner.maps(&scored, image_size_px)?;
        let mut image_scores = image_scores(&maps, rule)?;
        if let Some(b) = self.config.reweight_neighbours {
            for (image, score) in image_scores.iter_mut().enumerate() {
                *score = (f64::from(*score) * self.reweight(&scored, image, b)?) as f32;
            }
        }
        Ok(Scores { maps, image_scores })
    }
}
