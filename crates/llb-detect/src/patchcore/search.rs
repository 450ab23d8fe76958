//! The CPU nearest-neighbour search: bank tiles folded into a running minimum, no distance
//! matrix.
//!
//! For each tile of `BANK_TILE` bank rows (copied once per search), every block of at most
//! `QUERY_BLOCK` queries computes `q·bᵀ` with one GEMM (split over the rayon pool) into one
//! reused scratch buffer, then the block's rows are folded in parallel into their running
//! minimum of `‖b‖² − 2q·b` and its index. Memory beyond the inputs: one bank tile and one
//! `QUERY_BLOCK × BANK_TILE` buffer (16 MiB each at the sizes below and 1024 channels).

use llb_types::gemm::{MatMut, MatRef, Threads, gemm};
use rayon::prelude::*;

/// Bank rows per tile.
const BANK_TILE: usize = 2048;
/// Most queries per GEMM.
const QUERY_BLOCK: usize = 2048;

/// For every query row of `queries` (`[M, D]` row-major), the smallest `‖b‖² − 2q·b` over the
/// bank and the first bank row reaching it. `bank_tile(start, len)` returns bank rows
/// `start..start + len` as `[len, D]` row-major values; `sq_norms` holds `‖b‖²` per bank row.
/// Ties keep the lower bank row.
pub(crate) fn nearest_partial<E>(
    queries: &[f32],
    dim: usize,
    sq_norms: &[f32],
    mut bank_tile: impl FnMut(usize, usize) -> Result<Vec<f32>, E>,
) -> Result<(Vec<f32>, Vec<u32>), E> {
    let m = queries.len().checked_div(dim).unwrap_or(0);
    let mut best = vec![f32::INFINITY; m];
    let mut index = vec![0_u32; m];
    let mut scratch = Vec::new();
    let mut start = 0;
    while start < sq_norms.len() {
        let len = BANK_TILE.min(sq_norms.len() - start);
        let tile = bank_tile(start, len)?;
        let norms = &sq_norms[start..start + len];
        let tile_ref = MatRef::new(&tile, dim, len, 1, dim);
        for ((q, best), index) in queries
            .chunks(QUERY_BLOCK * dim)
            .zip(best.chunks_mut(QUERY_BLOCK))
            .zip(index.chunks_mut(QUERY_BLOCK))
        {
            let rows = best.len();
            scratch.resize(rows * len, 0.0);
            let dst = MatMut::new(&mut scratch, rows, len, len);
            gemm(dst, MatRef::rows(q, rows, dim, dim), tile_ref, false, Threads::Pool);
            scratch
                .par_chunks_exact(len)
                .zip(best.par_iter_mut())
                .zip(index.par_iter_mut())
                .for_each(|((products, best), index)| {
                    fold_row(products, norms, start, best, index)
                });
        }
        start += len;
    }
    Ok((best, index))
}

/// Folds one query's products `q·b` with a tile into its running minimum of `‖b‖² − 2q·b`
/// (`2q·b` is exact, so this rounds as `‖b‖² + q·(−2b)` does).
fn fold_row(products: &[f32], norms: &[f32], offset: usize, best: &mut f32, index: &mut u32) {
    for (j, (&p, &n)) in products.iter().zip(norms).enumerate() {
        let v = n - 2.0 * p;
        if v < *best {
            *best = v;
            *index = (offset + j) as u32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn tiles_and_blocks_find_the_brute_force_nearest_row() {
        // Sizes that leave partial tiles and blocks on both axes.
        let (m, k, d) = (QUERY_BLOCK + 37, 2 * BANK_TILE + 5, 19);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let queries: Vec<f32> = (0..m * d).map(|_| rng.random_range(-1.0..1.0)).collect();
        let bank: Vec<f32> = (0..k * d).map(|_| rng.random_range(-1.0..1.0)).collect();
        let norms: Vec<f32> = bank.chunks(d).map(|b| b.iter().map(|x| x * x).sum()).collect();
        let (best, index) =
            nearest_partial::<()>(
                &queries,
                d,
                &norms,
                |s, l| Ok(bank[s * d..(s + l) * d].to_vec()),
            )
            .unwrap();
        for (i, q) in queries.chunks(d).enumerate() {
            let sq =
                |b: &[f32]| -> f64 { q.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum() };
            let (j, want) =
                bank.chunks(d).map(sq).enumerate().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
            let q_sq: f64 = q.iter().map(|x| f64::from(x * x)).sum();
            assert_eq!(index[i] as usize, j, "query {i}");
            assert!((f64::from(best[i]) + q_sq - want).abs() < 1e-4, "query {i}");
        }
    }

    #[test]
    fn ties_keep_the_lower_bank_row() {
        let bank = [1.0_f32, 0.0, 1.0, 0.0];
        let (_, index) = nearest_partial::<()>(&[1.0, 0.0], 2, &[1.0, 1.0], |s, l| {
            Ok(bank[s * 2..(s + l) * 2].to_vec())
        })
        .unwrap();
        assert_eq!(index, [0]);
    }
}
