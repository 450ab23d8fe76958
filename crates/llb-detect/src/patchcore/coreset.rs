//! Greedy k-center coreset selection on a seeded random projection (PatchCore's memory-bank
//! subsampling).

use crate::Result;
use candle_core::{D, DType, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// A random projection matrix `[d_in, d_out]` f32 on `device`, entries uniform in
/// `[-1/√d_in, 1/√d_in]` (the initialisation of the `torch.nn.Linear` layer the PatchCore
/// reference projects with).
pub(crate) fn random_projection(
    d_in: usize,
    d_out: usize,
    rng: &mut ChaCha8Rng,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let bound = 1.0 / (d_in as f32).sqrt();
    let values: Vec<f32> = (0..d_in * d_out).map(|_| rng.random_range(-bound..=bound)).collect();
    Ok(Tensor::from_vec(values, (d_in, d_out), device)?)
}

/// `matrix` `[n, d]` projected to `projection_dim` columns with a fresh [`random_projection`],
/// or `matrix` itself when `projection_dim` is `None`.
pub(crate) fn project(
    matrix: &Tensor,
    projection_dim: Option<usize>,
    rng: &mut ChaCha8Rng,
) -> Result<Tensor> {
    match projection_dim {
        Some(d_out) => {
            let projection = random_projection(matrix.dim(1)?, d_out, rng, matrix.device())?;
            Ok(matrix.matmul(&projection)?)
        }
        None => Ok(matrix.clone()),
    }
}

/// How many of `n` rows a coreset of `fraction` keeps: `max(1, ⌊fraction·n⌋)` (the reference's
/// `int(n·percentage)`, but never empty).
pub(crate) fn coreset_size(fraction: f64, n: usize) -> usize {
    ((fraction * n as f64).floor() as usize).clamp(1.min(n), n)
}

/// Rows per parallel task of the CPU coreset loop.
const CPU_BLOCK_ROWS: usize = 2048;

/// Greedy k-center selection of at most `n_select` rows of `points` `[n, d]` f32.
///
/// Starts from a row drawn from `rng`, keeps each row's squared distance to its nearest selected
/// row (`‖p‖² + ‖c‖² − 2p·c`, clamped at 0), and repeatedly selects the row farthest from the
/// selection (ties: the lowest index). Stops early when every row coincides with a selected row,
/// so duplicates are never selected. Returns the selected row indices in selection order.
///
/// On the CPU one fused pass per step updates the distances and finds the farthest row, in
/// blocks of rows spread over threads; the result does not depend on the number of threads. On
/// other devices each step is a few tensor operations (one matrix–vector product); the two
/// paths can differ in the last bits of a distance and so, rarely, in a pick.
pub(crate) fn greedy_coreset(
    points: &Tensor,
    n_select: usize,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<u32>> {
    let (n, _) = points.dims2()?;
    let n_select = n_select.min(n);
    if n_select == 0 {
        return Ok(Vec::new());
    }
    let start = rng.random_range(0..n);
    let selected = if points.device().is_cpu() {
        greedy_coreset_cpu(points, n_select, start)?
    } else {
        greedy_coreset_tensor(points, n_select, start)?
    };
    tracing::debug!(n_points = n, n_selected = selected.len(), "greedy coreset");
    Ok(selected)
}

/// The CPU path of [`greedy_coreset`], starting from row `start`.
fn greedy_coreset_cpu(points: &Tensor, n_select: usize, start: usize) -> Result<Vec<u32>> {
    let (n, d) = points.dims2()?;
    let data = points.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let sq_norms: Vec<f32> = data.chunks_exact(d).map(|row| dot(row, row)).collect();
    let mut min_sq = vec![f32::INFINITY; n];
    let mut selected = vec![start as u32];
    let mut centre = start;
    loop {
        let c = &data[centre * d..(centre + 1) * d];
        let c_sq = sq_norms[centre];
        let (farthest, next) = min_sq
            .par_chunks_mut(CPU_BLOCK_ROWS)
            .zip(data.par_chunks(CPU_BLOCK_ROWS * d))
            .zip(sq_norms.par_chunks(CPU_BLOCK_ROWS))
            .enumerate()
            .map(|(block, ((mins, rows), norms))| {
                let mut best = (f32::NEG_INFINITY, usize::MAX);
                for (i, ((m, row), p_sq)) in
                    mins.iter_mut().zip(rows.chunks_exact(d)).zip(norms).enumerate()
                {
                    let dist = (p_sq + c_sq - 2.0 * dot(row, c)).max(0.0);
                    if dist < *m {
                        *m = dist;
                    }
                    if *m > best.0 {
                        best = (*m, block * CPU_BLOCK_ROWS + i);
                    }
                }
                best
            })
            .reduce(|| (f32::NEG_INFINITY, usize::MAX), farther);
        if selected.len() == n_select || farthest <= 0.0 {
            break;
        }
        selected.push(next as u32);
        centre = next;
    }
    Ok(selected)
}

/// The larger distance, ties broken towards the lower index (an order-independent reduction).
fn farther(a: (f32, usize), b: (f32, usize)) -> (f32, usize) {
    match a.0.total_cmp(&b.0) {
        std::cmp::Ordering::Greater => a,
        std::cmp::Ordering::Less => b,
        std::cmp::Ordering::Equal => {
            if a.1 <= b.1 {
                a
            } else {
                b
            }
        }
    }
}

/// Dot product with 16 independent accumulators summed in a fixed order (vectorisable and
/// deterministic).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let (a16, b16) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (a16.remainder(), b16.remainder());
    for (x, y) in a16.zip(b16) {
        for k in 0..16 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// The tensor path of [`greedy_coreset`] (any device), starting from row `start`.
fn greedy_coreset_tensor(points: &Tensor, n_select: usize, start: usize) -> Result<Vec<u32>> {
    let points = points.to_dtype(DType::F32)?.contiguous()?;
    let sq_norms = points.sqr()?.sum(D::Minus1)?;
    let mut selected = Vec::with_capacity(n_select);
    selected.push(start as u32);
    let mut min_sq = sq_distances_to(&points, &sq_norms, start as u32)?;
    while selected.len() < n_select {
        let next = min_sq.argmax(0)?.to_scalar::<u32>()?;
        let farthest = min_sq.get(next as usize)?.to_scalar::<f32>()?;
        if farthest <= 0.0 {
            break;
        }
        selected.push(next);
        min_sq = min_sq.minimum(&sq_distances_to(&points, &sq_norms, next)?)?;
    }
    Ok(selected)
}

/// Squared distances `[n]` of every row of `points` to row `index`, clamped at 0.
fn sq_distances_to(points: &Tensor, sq_norms: &Tensor, index: u32) -> Result<Tensor> {
    let centre = points.narrow(0, index as usize, 1)?;
    let dots = points.matmul(&centre.t()?)?.squeeze(1)?;
    let centre_sq = sq_norms.narrow(0, index as usize, 1)?;
    Ok(dots.affine(-2.0, 0.0)?.add(sq_norms)?.broadcast_add(&centre_sq)?.relu()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::SeedableRng;

    fn naive(points: &[Vec<f32>], n_select: usize, start: usize) -> Vec<u32> {
        let d = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>();
        let mut selected = vec![start as u32];
        let mut min_sq: Vec<f32> = points.iter().map(|p| d(p, &points[start])).collect();
        while selected.len() < n_select {
            let (next, far) = min_sq
                .iter()
                .enumerate()
                .fold((0, -1.0), |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc });
            if far <= 0.0 {
                break;
            }
            selected.push(next as u32);
            for (m, p) in min_sq.iter_mut().zip(points) {
                *m = m.min(d(p, &points[next]));
            }
        }
        selected
    }

    #[test]
    fn matches_a_naive_greedy_k_center() -> Result<()> {
        let mut data_rng = ChaCha8Rng::seed_from_u64(7);
        let points: Vec<Vec<f32>> =
            (0..60).map(|_| (0..5).map(|_| data_rng.random_range(-3.0..3.0)).collect()).collect();
        let flat: Vec<f32> = points.iter().flatten().copied().collect();
        let tensor = Tensor::from_vec(flat, (60, 5), &Device::Cpu)?;
        let got = greedy_coreset(&tensor, 12, &mut ChaCha8Rng::seed_from_u64(3))?;
        let start = ChaCha8Rng::seed_from_u64(3).random_range(0..60);
        assert_eq!(got, naive(&points, 12, start));
        Ok(())
    }

    #[test]
    fn cpu_and_tensor_paths_agree() -> Result<()> {
        let mut data_rng = ChaCha8Rng::seed_from_u64(11);
        let flat: Vec<f32> = (0..5000 * 20).map(|_| data_rng.random_range(-1.0..1.0)).collect();
        let tensor = Tensor::from_vec(flat, (5000, 20), &Device::Cpu)?;
        let cpu = greedy_coreset_cpu(&tensor, 300, 17)?;
        let generic = greedy_coreset_tensor(&tensor, 300, 17)?;
        assert_eq!(cpu.len(), 300);
        // Distances are computed in a different order, so compare as sets with a small slack.
        let common = cpu.iter().filter(|i| generic.contains(i)).count();
        assert!(common >= 290, "only {common} of 300 picks agree");
        assert_eq!(cpu[..20], generic[..20]);
        Ok(())
    }

    #[test]
    fn picks_every_cluster_and_stops_on_duplicates() -> Result<()> {
        // Three tight clusters of 10 identical points each: three centres cover everything.
        let mut flat = Vec::new();
        for c in 0..3 {
            for _ in 0..10 {
                flat.extend([c as f32 * 10.0, 0.0]);
            }
        }
        let tensor = Tensor::from_vec(flat, (30, 2), &Device::Cpu)?;
        let got = greedy_coreset(&tensor, 8, &mut ChaCha8Rng::seed_from_u64(1))?;
        assert_eq!(got.len(), 3);
        let mut clusters: Vec<u32> = got.iter().map(|i| i / 10).collect();
        clusters.sort();
        assert_eq!(clusters, vec![0, 1, 2]);
        Ok(())
    }

    #[test]
    fn projection_is_seeded() -> Result<()> {
        let a = random_projection(6, 4, &mut ChaCha8Rng::seed_from_u64(5), &Device::Cpu)?;
        let b = random_projection(6, 4, &mut ChaCha8Rng::seed_from_u64(5), &Device::Cpu)?;
        let c = random_projection(6, 4, &mut ChaCha8Rng::seed_from_u64(6), &Device::Cpu)?;
        assert_eq!(a.to_vec2::<f32>()?, b.to_vec2::<f32>()?);
        assert_ne!(a.to_vec2::<f32>()?, c.to_vec2::<f32>()?);
        assert!(a.flatten_all()?.to_vec1::<f32>()?.iter().all(|v| v.abs() <= 1.0 / 6f32.sqrt()));
        Ok(())
    }
}
