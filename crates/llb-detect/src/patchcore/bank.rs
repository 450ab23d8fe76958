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
    /// A query's score averages its distances to this many nearest bank patches (at least 1).
    n_neighbours: usize,
}

/// The nearest bank patch of every query.
#[derive(Clone, Debug)]
pub(crate) struct Nearest {
    /// Euclidean distance to the nearest bank patch, `[M]` f32, never negative; with
    /// `n_neighbours > 1`, the mean distance to that many nearest bank patches.
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
        Ok(Self { features, weights, minus_two_t, sq_norms, n_neighbours: 1 })
    }

    /// The same bank scoring queries by their mean distance to `n` nearest bank patches (capped
    /// at the bank size; `n ≤ 1` is the nearest-neighbour distance).
    pub(crate) fn with_neighbours(mut self, n: usize) -> Self {
        self.n_neighbours = n.max(1);
        self
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
    pub(crate) fn nearest(&self, queries: &Tensor) -> Result<Nearest> {
        self.nearest_in_blocks(queries, SEARCH_BLOCK_BYTES)
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
            let n = self.n_neighbours.min(k);
            let best = if n > 1 {
                mean_of_nearest(&partial, &q_sq, n)?
            } else {
                partial.gather(&index, D::Minus1)?.add(&q_sq)?.relu()?.sqrt()?
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

/// Per row of `partial` `[rows, K]` (`‖b‖² − 2q·b`), the mean Euclidean distance to the `n`
/// nearest bank patches, `[rows, 1]`: `q_sq` `[rows, 1]` completes the squared distances, which
/// are clamped at 0. The `n` smallest are summed in ascending order, so the result does not
/// depend on the bank's row order beyond ties.
fn mean_of_nearest(partial: &Tensor, q_sq: &Tensor, n: usize) -> Result<Tensor> {
    use rayon::prelude::*;
    let (rows, _) = partial.dims2()?;
    let device = partial.device().clone();
    let values = partial.to_device(&candle_core::Device::Cpu)?.to_vec2::<f32>()?;
    let q_sq = q_sq.to_device(&candle_core::Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
    let means: Vec<f32> = values
        .into_par_iter()
        .zip(q_sq)
        .map(|(mut row, q)| {
            row.select_nth_unstable_by(n - 1, f32::total_cmp);
            let nearest = &mut row[..n];
            nearest.sort_unstable_by(f32::total_cmp);
            let sum: f64 = nearest.iter().map(|&p| f64::from((p + q).max(0.0)).sqrt()).sum();
            (sum / n as f64) as f32
        })
        .collect();
    Ok(Tensor::from_vec(means, (rows, 1), &device)?)
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
        let bank = MemoryBank::new(tensor(&bank_rows), None)?.with_neighbours(5);
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
    fn weights_multiply_the_distance() -> Result<()> {
        let bank_rows = vec![vec![0.0, 0.0], vec![10.0, 0.0]];
        let weights = Tensor::new(&[2.0f32, 0.5], &Device::Cpu)?;
        let bank = MemoryBank::new(tensor(&bank_rows), Some(weights))?;
        let (scores, _) = bank.patch_scores(&tensor(&[vec![3.0, 4.0], vec![10.0, 2.0]]))?;
        assert_eq!(scores.to_vec1::<f32>()?, vec![10.0, 1.0]);
        Ok(())
    }
}
