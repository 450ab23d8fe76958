//! The memory bank and its blocked nearest-neighbour search.

use crate::Result;
use candle_core::{D, DType, Tensor};

/// Upper bound, in bytes, of one block of the query–bank distance matrix.
const SEARCH_BLOCK_BYTES: usize = 16 << 20;

/// Memory-bank patches with the terms the search reuses, and optional per-patch score weights.
#[derive(Clone, Debug)]
pub(crate) struct MemoryBank {
    /// The bank, `[K, D]` f32.
    pub(crate) features: Tensor,
    /// Per-patch weights `[K]` f32 that multiply a query's nearest-neighbour distance (SoftPatch).
    pub(crate) weights: Option<Tensor>,
    /// `−2·featuresᵀ`, `[D, K]` (scaling by −2 is exact in floating point).
    minus_two_t: Tensor,
    /// `‖b‖²` per bank patch, `[1, K]`.
    sq_norms: Tensor,
    /// How a query's distances become its score.
    scoring: Scoring,
}

/// The bank's scoring rule, resolved for this bank.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Scoring {
    /// The nearest bank patch's distance.
    Nearest,
    /// The mean distance to the `k` nearest bank patches.
    MeanOfNearest(usize),
    /// The `k`-th smallest per-image minimum distance; `image_of[j]` is the training image of
    /// bank row `j`, numbered `0..n_images`.
    KthNearestImage {
        /// Which of the sorted per-image distances is the score (1-based).
        k: usize,
        /// Training image of each bank row.
        image_of: Vec<u32>,
        /// Number of distinct images.
        n_images: usize,
    },
}

/// The nearest bank patch of every query.
#[derive(Clone, Debug)]
pub(crate) struct Nearest {
    /// The query's score under the bank's [`Scoring`]: the Euclidean distance to the nearest
    /// bank patch by default, `[M]` f32, never negative.
    pub(crate) distances: Tensor,
    /// Index of that bank patch, `[M]` u32.
    pub(crate) indices: Tensor,
}

impl MemoryBank {
    /// A bank from patches `[K, D]` and optional weights `[K]`.
    pub(crate) fn new(features: Tensor, weights: Option<Tensor>) -> Result<Self> {
        let features = features.to_dtype(DType::F32)?.contiguous()?;
        let minus_two_t = features.affine(-2.0, 0.0)?.t()?.contiguous()?;
        let sq_norms = features.sqr()?.sum_keepdim(D::Minus1)?.t()?.contiguous()?;
        Ok(Self { features, weights, minus_two_t, sq_norms, scoring: Scoring::Nearest })
    }

    /// The same bank with another scoring rule.
    ///
    /// # Errors
    /// [`crate::Error::Shape`] when a per-image rule's `image_of` does not have one entry per
    /// bank row or names an image `>= n_images`.
    pub(crate) fn with_scoring(mut self, scoring: Scoring) -> Result<Self> {
        if let Scoring::KthNearestImage { image_of, n_images, .. } = &scoring
            && (image_of.len() != self.len() || image_of.iter().any(|&i| i as usize >= *n_images))
        {
            return Err(crate::Error::Shape {
                what: "bank image indices".into(),
                expected: format!("{} indices below {n_images}", self.len()),
                got: vec![image_of.len()],
            });
        }
        self.scoring = scoring;
        Ok(self)
    }

    /// The scoring rule.
    pub(crate) fn scoring(&self) -> &Scoring {
        &self.scoring
    }

    /// Number of bank patches.
    pub(crate) fn len(&self) -> usize {
        self.features.dim(0).unwrap_or(0)
    }

    /// Feature dimension.
    pub(crate) fn dim(&self) -> usize {
        self.features.dim(1).unwrap_or(0)
    }

    /// Exact nearest neighbours of `queries` `[M, D]`, computed block by block as
    /// `‖q‖² + (‖b‖² − 2q·b)` with one matrix product per block; the block never exceeds
    /// [`SEARCH_BLOCK_BYTES`], so no all-pairs matrix is held. Squared distances are clamped at 0
    /// before the square root.
    ///
    /// On the CPU with the nearest-patch rule, the search folds bank tiles into a running
    /// minimum instead (`search.rs`), same distances up to the GEMM's rounding.
    pub(crate) fn nearest(&self, queries: &Tensor) -> Result<Nearest> {
        let nearest_only = match &self.scoring {
            Scoring::Nearest => true,
            Scoring::MeanOfNearest(n) => (*n).min(self.len().max(1)) <= 1,
            Scoring::KthNearestImage { .. } => false,
        };
        let on_cpu = queries.device().is_cpu() && self.features.device().is_cpu();
        if nearest_only && on_cpu && self.len() > 0 && queries.dims2()?.1 == self.dim() {
            return self.nearest_on_cpu(queries);
        }
        self.nearest_in_blocks(queries, SEARCH_BLOCK_BYTES)
    }

    /// [`MemoryBank::nearest`] for the nearest-patch rule on the CPU.
    fn nearest_on_cpu(&self, queries: &Tensor) -> Result<Nearest> {
        let (m, dim) = queries.dims2()?;
        let device = queries.device();
        let q = queries.to_dtype(DType::F32)?.contiguous()?;
        let q_sq = q.sqr()?.sum_keepdim(D::Minus1)?.flatten_all()?.to_vec1::<f32>()?;
        let values = q.flatten_all()?.to_vec1::<f32>()?;
        let norms = self.sq_norms.flatten_all()?.to_vec1::<f32>()?;
        let (best, indices) = super::search::nearest_partial(&values, dim, &norms, |s, l| {
            self.features.narrow(0, s, l)?.flatten_all()?.to_vec1::<f32>()
        })?;
        let distances: Vec<f32> =
            best.iter().zip(&q_sq).map(|(b, q)| (b + q).max(0.0).sqrt()).collect();
        tracing::debug!(n_queries = m, bank = self.len(), "nearest-neighbour search (cpu tiles)");
        Ok(Nearest {
            distances: Tensor::from_vec(distances, m, device)?,
            indices: Tensor::from_vec(indices, m, device)?,
        })
    }

    /// [`MemoryBank::nearest`] with blocks of at most `block_bytes` bytes (at least one row).
    fn nearest_in_blocks(&self, queries: &Tensor, block_bytes: usize) -> Result<Nearest> {
        let (m, _) = queries.dims2()?;
        let k = self.len().max(1);
        let block_rows = (block_bytes / (4 * k)).max(1);
        let mut distances = Vec::new();
        let mut indices = Vec::new();
        let mut start = 0;
        while start < m {
            let rows = block_rows.min(m - start);
            let q = queries.narrow(0, start, rows)?.contiguous()?;
            let partial = q.matmul(&self.minus_two_t)?.broadcast_add(&self.sq_norms)?;
            let index = partial.argmin_keepdim(D::Minus1)?;
            let q_sq = q.sqr()?.sum_keepdim(D::Minus1)?;
            let best = match &self.scoring {
                Scoring::MeanOfNearest(n) if (*n).min(k) > 1 => {
                    row_scores(&partial, &q_sq, |row| mean_of_nearest(row, (*n).min(k)))?
                }
                Scoring::KthNearestImage { k: kth, image_of, n_images } => {
                    row_scores(&partial, &q_sq, |row| {
                        kth_nearest_image(row, image_of, *n_images, *kth)
                    })?
                }
                _ => partial.gather(&index, D::Minus1)?.add(&q_sq)?.relu()?.sqrt()?,
            };
            distances.push(best.squeeze(1)?);
            indices.push(index.squeeze(1)?);
            start += rows;
        }
        tracing::debug!(n_queries = m, bank = k, block_rows, "nearest-neighbour search");
        Ok(Nearest { distances: Tensor::cat(&distances, 0)?, indices: Tensor::cat(&indices, 0)? })
    }

    /// Patch anomaly scores `[M]` f32: the nearest-neighbour distance, multiplied by the nearest
    /// bank patch's weight when the bank has weights.
    pub(crate) fn patch_scores(&self, queries: &Tensor) -> Result<(Tensor, Nearest)> {
        let nearest = self.nearest(queries)?;
        let scores = match &self.weights {
            Some(w) => nearest.distances.mul(&w.index_select(&nearest.indices, 0)?)?,
            None => nearest.distances.clone(),
        };
        Ok((scores, nearest))
    }

    /// Squared distances `[K]` from one vector `[D]` to every bank patch, clamped at 0.
    pub(crate) fn sq_distances_from(&self, vector: &Tensor) -> Result<Tensor> {
        let v = vector.reshape((1, self.dim()))?;
        let partial = v.matmul(&self.minus_two_t)?.broadcast_add(&self.sq_norms)?;
        Ok(partial.broadcast_add(&v.sqr()?.sum_keepdim(D::Minus1)?)?.relu()?.squeeze(0)?)
    }
}

/// Applies `score` to each row of squared distances: `partial` `[rows, K]` holds
/// `‖b‖² − 2q·b`, completed by `q_sq` `[rows, 1]` and clamped at 0. Returns `[rows, 1]`.
fn row_scores(
    partial: &Tensor,
    q_sq: &Tensor,
    score: impl Fn(&mut [f32]) -> f32 + Sync,
) -> Result<Tensor> {
    use rayon::prelude::*;
    let (rows, _) = partial.dims2()?;
    let device = partial.device().clone();
    let cpu = candle_core::Device::Cpu;
    let values = partial.to_device(&cpu)?.to_vec2::<f32>()?;
    let q_sq = q_sq.to_device(&cpu)?.flatten_all()?.to_vec1::<f32>()?;
    let scores: Vec<f32> = values
        .into_par_iter()
        .zip(q_sq)
        .map(|(mut row, q)| {
            row.iter_mut().for_each(|d| *d = (*d + q).max(0.0));
            score(&mut row)
        })
        .collect();
    Ok(Tensor::from_vec(scores, (rows, 1), &device)?)
}

/// Mean Euclidean distance of the `n` smallest squared distances of `row` (`n ≥ 1`), summed in
/// ascending order so the result does not depend on the bank's row order beyond ties.
fn mean_of_nearest(row: &mut [f32], n: usize) -> f32 {
    row.select_nth_unstable_by(n - 1, f32::total_cmp);
    let nearest = &mut row[..n];
    nearest.sort_unstable_by(f32::total_cmp);
    let sum: f64 = nearest.iter().map(|&d| f64::from(d).sqrt()).sum();
    (sum / n as f64) as f32
}

/// The `k`-th smallest (1-based, capped at the number of images) of the per-image minimum
/// Euclidean distances, from squared distances `row` and the image of each bank row.
fn kth_nearest_image(row: &[f32], image_of: &[u32], n_images: usize, k: usize) -> f32 {
    let mut per_image = vec![f32::INFINITY; n_images];
    for (&d, &image) in row.iter().zip(image_of) {
        let slot = &mut per_image[image as usize];
        if d < *slot {
            *slot = d;
        }
    }
    let k = k.clamp(1, n_images.max(1));
    let (_, kth, _) = per_image.select_nth_unstable_by(k - 1, f32::total_cmp);
    kth.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(rows: usize, cols: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..rows).map(|_| (0..cols).map(|_| rng.random_range(-1.0..1.0)).collect()).collect()
    }

    fn tensor(rows: &[Vec<f32>]) -> Tensor {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_vec(flat, (rows.len(), rows[0].len()), &Device::Cpu).unwrap()
    }

    #[test]
    fn blocked_search_matches_brute_force() -> Result<()> {
        // Blocks of 7 rows over 55 queries, which include copies of bank rows.
        let bank_rows = random(600, 8, 1);
        let mut query_rows = random(50, 8, 2);
        query_rows.extend(bank_rows[..5].iter().cloned());
        let bank = MemoryBank::new(tensor(&bank_rows), None)?;
        let nearest = bank.nearest_in_blocks(&tensor(&query_rows), 7 * 4 * 600)?;
        let whole = bank.nearest(&tensor(&query_rows))?;
        assert_eq!(whole.indices.to_vec1::<u32>()?, nearest.indices.to_vec1::<u32>()?);
        // The CPU tile search (`whole`) and the candle blocks agree up to the GEMM's rounding.
        for (a, b) in
            whole.distances.to_vec1::<f32>()?.iter().zip(nearest.distances.to_vec1::<f32>()?)
        {
            assert!((a - b).abs() <= 1e-5 * b.max(1.0), "{a} vs {b}");
        }
        let dist = nearest.distances.to_vec1::<f32>()?;
        let idx = nearest.indices.to_vec1::<u32>()?;
        for (qi, q) in query_rows.iter().enumerate() {
            let brute: Vec<f32> = bank_rows
                .iter()
                .map(|b| b.iter().zip(q).map(|(x, y)| (x - y).powi(2)).sum::<f32>().sqrt())
                .collect();
            let min = brute.iter().copied().fold(f32::INFINITY, f32::min);
            assert!((dist[qi] - min).abs() < 1e-3, "query {qi}: {} vs {min}", dist[qi]);
            assert!((brute[idx[qi] as usize] - min).abs() < 1e-3, "query {qi}: wrong index");
            assert!(dist[qi] >= 0.0 && dist[qi].is_finite());
        }
        assert_eq!(&idx[50..], &[0, 1, 2, 3, 4]);
        Ok(())
    }

    #[test]
    fn k_nearest_mean_matches_brute_force() -> Result<()> {
        let bank_rows = random(300, 6, 3);
        let query_rows = random(40, 6, 4);
        let bank =
            MemoryBank::new(tensor(&bank_rows), None)?.with_scoring(Scoring::MeanOfNearest(5))?;
        let got = bank.nearest_in_blocks(&tensor(&query_rows), 9 * 4 * 300)?;
        let got = got.distances.to_vec1::<f32>()?;
        for (qi, q) in query_rows.iter().enumerate() {
            let mut d: Vec<f64> = bank_rows
                .iter()
                .map(|b| b.iter().zip(q).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>().sqrt())
                .collect();
            d.sort_by(f64::total_cmp);
            let mean = d[..5].iter().sum::<f64>() / 5.0;
            assert!((f64::from(got[qi]) - mean).abs() < 1e-3, "query {qi}: {} vs {mean}", got[qi]);
        }
        Ok(())
    }

    #[test]
    fn kth_nearest_image_ignores_many_patches_of_one_image() -> Result<()> {
        // Images 0 and 1 each hold one patch at distance 1 and 2 from the query; image 2 holds
        // ten patches at distance 0.5 (one image's defect patches vouching for each other).
        let mut rows = vec![vec![1.0, 0.0], vec![0.0, 2.0]];
        rows.extend((0..10).map(|_| vec![0.5, 0.0]));
        let image_of = vec![0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2];
        let score =
            |k: usize| -> Result<f32> {
                let bank = MemoryBank::new(tensor(&rows), None)?.with_scoring(
                    Scoring::KthNearestImage { k, image_of: image_of.clone(), n_images: 3 },
                )?;
                Ok(bank.nearest(&tensor(&[vec![0.0, 0.0]]))?.distances.to_vec1::<f32>()?[0])
            };
        assert_eq!(score(1)?, 0.5);
        assert_eq!(score(2)?, 1.0, "the second image, not image 2's second patch");
        assert_eq!(score(3)?, 2.0);
        assert_eq!(score(9)?, 2.0, "k is capped at the number of images");
        let bad = MemoryBank::new(tensor(&rows), None)?.with_scoring(Scoring::KthNearestImage {
            k: 1,
            image_of: vec![0; 3],
            n_images: 1,
        });
        assert!(bad.is_err());
        Ok(())
    }

    #[test]
    fn weights_multiply_the_distance() -> Result<()> {
        let bank_rows = vec![vec![0.0, 0.0], vec![10.0, 0.0]];
        let weights = Tensor::new(&[2.0f32, 0.5], &Device::Cpu)?;
        let bank = MemoryBank::new(tensor(&bank_rows), Some(weights))?;
        let (scores, _) = bank.patch_scores(&tensor(&[vec![3.0, 4.0], vec![10.0, 2.0]]))?;
        assert_eq!(scores.to_vec1::<f32>()?, vec![10.0, 1.0]);
        Ok(())
    }
}
