//! The CPU nearest-neighbour search: bank tiles folded into a running minimum, no distance
//! matrix.
//!
//! For each tile of `BANK_TILE` bank rows (copied once per search), every block of at most
//! `QUERY_BLOCK` queries computes `q·bᵀ` with one GEMM (split over the rayon pool) into one
//! reused scratch buffer, then the block's rows are folded in parallel into their running
//! minimum of `‖b‖² − 2q·b` and its index (a fold compiled for the machine's widest vectors:
//! at SSE2 width it cost about 7 % of the search at 1,024 channels). Memory beyond the inputs:
//! one bank tile and one `QUERY_BLOCK × BANK_TILE` buffer (16 MiB each at the sizes below and
//! 1024 channels).

use llb_types::gemm::{MatMut, MatRef, Threads, gemm};
use llb_types::multiversion;
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

/// Independent running minima per query row in [`fold_row`]: one 512-bit register of lanes.
const LANES: usize = 16;

multiversion! {
    /// Folds one query's products `q·b` with a tile into its running minimum of `‖b‖² − 2q·b`
    /// (`2q·b` is exact, so this rounds as `‖b‖² + q·(−2b)` does) and the first index reaching
    /// it. Lane `l` keeps the minimum of columns `l, l + LANES, …` and the first column reaching
    /// it, so that the loop vectorises; the lanes are then merged, lower column first on ties.
    fn fold_row(products: &[f32], norms: &[f32], offset: usize, best: &mut f32, index: &mut u32) {
        let mut lane_best = [f32::INFINITY; LANES];
        let mut lane_index = [0_u32; LANES];
        let products_lanes = products.chunks_exact(LANES);
        let norms_lanes = norms.chunks_exact(LANES);
        let (rest, rest_norms) = (products_lanes.remainder(), norms_lanes.remainder());
        for (chunk, (p, n)) in products_lanes.zip(norms_lanes).enumerate() {
            let first = (chunk * LANES) as u32;
            for l in 0..LANES {
                let v = n[l] - 2.0 * p[l];
                let lower = v < lane_best[l];
                lane_best[l] = if lower { v } else { lane_best[l] };
                lane_index[l] = if lower { first + l as u32 } else { lane_index[l] };
            }
        }
        let (mut tile_best, mut tile_index) = (f32::INFINITY, 0_u32);
        for (&v, &j) in lane_best.iter().zip(&lane_index) {
            if v < tile_best || (v == tile_best && j < tile_index) {
                (tile_best, tile_index) = (v, j);
            }
        }
        let done = products.len() - rest.len();
        for (j, (&p, &n)) in rest.iter().zip(rest_norms).enumerate() {
            let v = n - 2.0 * p;
            if v < tile_best {
                (tile_best, tile_index) = (v, (done + j) as u32);
            }
        }
        if tile_best < *best {
            *best = tile_best;
            *index = offset as u32 + tile_index;
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

    #[test]
    fn the_fold_keeps_the_first_column_across_lanes_and_the_tail() {
        // 40 columns: two full lane chunks and an 8-column tail; norms 0, products −p/2, so the
        // folded value of column j is p[j].
        let fold = |values: &[f32]| {
            let products: Vec<f32> = values.iter().map(|v| -v / 2.0).collect();
            let (mut best, mut index) = (f32::INFINITY, 7);
            fold_row(&products, &vec![0.0; values.len()], 100, &mut best, &mut index);
            (best, index)
        };
        let mut values = vec![5.0_f32; 40];
        for j in [35, 19, 3] {
            values[j] = 1.0;
        }
        assert_eq!(fold(&values), (1.0, 103), "lanes 3 and 19, tail 35");
        values[3] = 2.0;
        assert_eq!(fold(&values), (1.0, 119), "a later lane beats an earlier lane's larger value");
        values[19] = 2.0;
        assert_eq!(fold(&values), (1.0, 135), "the tail's minimum");
        values[0] = f32::NAN;
        values[1] = -0.5;
        assert_eq!(fold(&values), (-0.5, 101), "NaN never wins");
        assert_eq!(fold(&[f32::NAN; 20]), (f32::INFINITY, 7), "an all-NaN tile keeps the state");
    }
}
