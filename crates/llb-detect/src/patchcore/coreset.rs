//! Greedy k-center coreset selection on a seeded random projection (PatchCore's memory-bank
//! subsampling).

use crate::Result;
use crate::order::{Purpose, id_key, position_key};
use candle_core::{D, DType, Device, Tensor};
use llb_types::SampleId;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

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

/// The greedy coreset's first row: in the image whose id has the smallest key for `seed`, the
/// grid position drawn from that key. A pure function of the ids, so it does not move when rows
/// are reordered (rows of image `i` are `i·per_image .. (i+1)·per_image`).
pub(crate) fn coreset_start(ids: &[SampleId], per_image: usize, seed: u64) -> usize {
    let keys = ids.iter().map(|id| id_key(seed, Purpose::CoresetStart, 0, id));
    let (image, key) = keys.enumerate().min_by_key(|&(i, k)| (k, i)).unwrap_or((0, 0));
    image * per_image + (key % per_image.max(1) as u64) as usize
}

/// A uniform random sample of `n_select` patch rows (image-major, `per_image` rows per image of
/// `ids`), returned in ascending row order: the rows whose `(id, position)` keys for `seed` are
/// smallest. Each patch's key depends only on its id and position, so a sample of a larger
/// fraction contains the smaller one, and the sample of a set does not depend on row order.
pub(crate) fn random_rows(
    ids: &[SampleId],
    per_image: usize,
    n_select: usize,
    seed: u64,
) -> Vec<u32> {
    let mut keyed: Vec<(u64, u32)> = Vec::with_capacity(ids.len() * per_image);
    for (image, id) in ids.iter().enumerate() {
        let key = id_key(seed, Purpose::BankSample, 0, id);
        for position in 0..per_image {
            let row = (image * per_image + position) as u32;
            keyed.push((position_key(key, position as u64), row));
        }
    }
    let n_select = n_select.min(keyed.len());
    if n_select < keyed.len() {
        keyed.select_nth_unstable(n_select);
        keyed.truncate(n_select);
    }
    let mut rows: Vec<u32> = keyed.into_iter().map(|(_, row)| row).collect();
    rows.sort_unstable();
    rows
}

/// Rows per block of the CPU coreset.
const CPU_BLOCK_ROWS: usize = 2048;
/// Most pending centres applied to a block in one matrix product.
const CPU_MAX_PENDING: usize = 1024;

/// Greedy k-center selection of at most `n_select` rows of `points` `[n, d]` f32.
///
/// Starts from row `start` (see [`coreset_start`]), keeps each row's squared distance to its nearest selected
/// row (`‖p‖² + ‖c‖² − 2p·c`, clamped at 0), and repeatedly selects the row farthest from the
/// selection (ties: the lowest index). Stops early when every row coincides with a selected row,
/// so duplicates are never selected. Returns the selected row indices in selection order.
///
/// On the CPU the rows are cut into blocks that are updated lazily (see [`LazyBlocks`]): the
/// selection is the same as the plain greedy loop's, but each block reads its rows once for many
/// centres (a small matrix product) instead of once per centre. On other devices each step is a
/// few tensor operations (one matrix–vector product). The two paths can differ in the last bits
/// of a distance and so, rarely, in a pick; each is deterministic on a given machine.
pub(crate) fn greedy_coreset(points: &Tensor, n_select: usize, start: usize) -> Result<Vec<u32>> {
    let (n, _) = points.dims2()?;
    let n_select = n_select.min(n);
    if n_select == 0 {
        return Ok(Vec::new());
    }
    let start = start.min(n - 1);
    let selected = if points.device().is_cpu() {
        LazyBlocks::new(points)?.select(n_select, start)?
    } else {
        greedy_coreset_tensor(points, n_select, start)?
    };
    tracing::debug!(n_points = n, n_selected = selected.len(), "greedy coreset");
    Ok(selected)
}

/// Greedy k-center on the CPU with lazily updated row blocks.
///
/// Each block remembers how many of the selected centres it has applied and the maximum of its
/// rows' distances at that time. Distances only shrink as centres are added, so a stale maximum
/// is an upper bound. To find the farthest row, blocks are taken from a max-heap of these
/// bounds: a stale block applies its pending centres (one `[rows, d] × [d, pending]` product)
/// and goes back with its exact maximum; the first up-to-date block taken holds the farthest
/// row. Blocks that never come close to the top defer their updates, which batches them.
struct LazyBlocks {
    /// The points `[n, d]` f32, contiguous, on the CPU.
    points: Tensor,
    /// The points' values, row-major.
    data: Vec<f32>,
    /// `‖p‖²` per row.
    sq_norms: Vec<f32>,
    /// Squared distance of each row to the centres its block has applied.
    min_sq: Vec<f32>,
    /// Per block: number of selected centres applied.
    applied: Vec<usize>,
    /// Per block: row of its maximum at its last update.
    block_argmax: Vec<usize>,
    /// Feature dimension.
    d: usize,
}

impl LazyBlocks {
    fn new(points: &Tensor) -> Result<Self> {
        let (n, d) = points.dims2()?;
        let points = points.to_dtype(DType::F32)?.contiguous()?;
        let data = points.flatten_all()?.to_vec1::<f32>()?;
        let sq_norms: Vec<f32> = data.chunks_exact(d).map(|row| dot(row, row)).collect();
        let n_blocks = n.div_ceil(CPU_BLOCK_ROWS);
        let block_argmax = (0..n_blocks).map(|b| b * CPU_BLOCK_ROWS).collect();
        Ok(Self {
            points,
            data,
            sq_norms,
            min_sq: vec![f32::INFINITY; n],
            applied: vec![0; n_blocks],
            block_argmax,
            d,
        })
    }

    fn select(mut self, n_select: usize, start: usize) -> Result<Vec<u32>> {
        // Keys: (distance bits, lower block first). Non-negative f32 bits order like the values.
        let mut heap: BinaryHeap<(u32, Reverse<usize>)> =
            (0..self.applied.len()).map(|b| (f32::INFINITY.to_bits(), Reverse(b))).collect();
        let mut selected = vec![start];
        loop {
            let (bits, block) = loop {
                let Some((bits, Reverse(block))) = heap.pop() else {
                    return Err(candle_core::Error::Msg("coreset heap emptied".into()).into());
                };
                if self.applied[block] == selected.len() {
                    break (bits, block);
                }
                let max = self.refresh(block, &selected)?;
                heap.push((max.to_bits(), Reverse(block)));
            };
            heap.push((bits, Reverse(block)));
            if selected.len() == n_select || f32::from_bits(bits) <= 0.0 {
                break;
            }
            selected.push(self.block_argmax[block]);
        }
        Ok(selected.into_iter().map(|i| i as u32).collect())
    }

    /// Applies the block's pending centres; returns its new maximum distance.
    fn refresh(&mut self, block: usize, selected: &[usize]) -> Result<f32> {
        let first = block * CPU_BLOCK_ROWS;
        let rows = CPU_BLOCK_ROWS.min(self.min_sq.len() - first);
        let block_points = self.points.narrow(0, first, rows)?;
        for pending in selected[self.applied[block]..].chunks(CPU_MAX_PENDING) {
            let mut centres = Vec::with_capacity(pending.len() * self.d);
            for &c in pending {
                centres.extend_from_slice(&self.data[c * self.d..(c + 1) * self.d]);
            }
            let centres = Tensor::from_vec(centres, (pending.len(), self.d), &Device::Cpu)?;
            let dots = block_points.matmul(&centres.t()?)?.flatten_all()?.to_vec1::<f32>()?;
            for (i, row_dots) in dots.chunks_exact(pending.len()).enumerate() {
                let p_sq = self.sq_norms[first + i];
                let m = &mut self.min_sq[first + i];
                for (&c, &dot) in pending.iter().zip(row_dots) {
                    let dist = (p_sq + self.sq_norms[c] - 2.0 * dot).max(0.0);
                    if dist < *m {
                        *m = dist;
                    }
                }
            }
        }
        self.applied[block] = selected.len();
        let mut best = (f32::NEG_INFINITY, first);
        for (i, &m) in self.min_sq[first..first + rows].iter().enumerate() {
            if m > best.0 {
                best = (m, first + i);
            }
        }
        self.block_argmax[block] = best.1;
        Ok(best.0)
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
    let dots = points.matmul(&centre.t()?.contiguous()?)?.squeeze(1)?;
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
        let got = greedy_coreset(&tensor, 12, 41)?;
        assert_eq!(got, naive(&points, 12, 41));
        Ok(())
    }

    #[test]
    fn lazy_blocks_match_the_naive_loop_across_many_blocks() -> Result<()> {
        let mut data_rng = ChaCha8Rng::seed_from_u64(13);
        let points: Vec<Vec<f32>> =
            (0..9000).map(|_| (0..6).map(|_| data_rng.random_range(-1.0..1.0)).collect()).collect();
        let flat: Vec<f32> = points.iter().flatten().copied().collect();
        let tensor = Tensor::from_vec(flat, (9000, 6), &Device::Cpu)?;
        let lazy = LazyBlocks::new(&tensor)?.select(150, 4321)?;
        let naive = naive(&points, 150, 4321);
        let common = lazy.iter().filter(|i| naive.contains(i)).count();
        assert!(common >= 145, "only {common} of 150 picks agree");
        assert_eq!(lazy[..30], naive[..30]);
        Ok(())
    }

    #[test]
    fn cpu_and_tensor_paths_agree() -> Result<()> {
        let mut data_rng = ChaCha8Rng::seed_from_u64(11);
        let flat: Vec<f32> = (0..5000 * 20).map(|_| data_rng.random_range(-1.0..1.0)).collect();
        let tensor = Tensor::from_vec(flat, (5000, 20), &Device::Cpu)?;
        let cpu = LazyBlocks::new(&tensor)?.select(300, 17)?;
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
        let got = greedy_coreset(&tensor, 8, 4)?;
        assert_eq!(got.len(), 3);
        let mut clusters: Vec<u32> = got.iter().map(|i| i / 10).collect();
        clusters.sort();
        assert_eq!(clusters, vec![0, 1, 2]);
        Ok(())
    }

    #[test]
    fn random_rows_are_nested_sorted_and_keyed_to_ids() {
        let ids: Vec<SampleId> = (0..20).map(|i| SampleId::new(format!("img{i:02}"))).collect();
        let small = random_rows(&ids, 16, 30, 9);
        let large = random_rows(&ids, 16, 120, 9);
        assert_eq!(small.len(), 30);
        assert!(small.windows(2).all(|w| w[0] < w[1]));
        assert!(small.iter().all(|r| large.contains(r)), "a larger sample contains the smaller");
        assert_ne!(small, random_rows(&ids, 16, 30, 10));
        assert_eq!(random_rows(&ids, 16, 16 * 20, 9).len(), 16 * 20);
        // The same images in reverse order: the same patches (image, position) are picked.
        let mut reversed = ids.clone();
        reversed.reverse();
        let picked = |ids: &[SampleId], rows: &[u32]| -> Vec<(SampleId, u32)> {
            let mut v: Vec<_> =
                rows.iter().map(|&r| (ids[r as usize / 16].clone(), r % 16)).collect();
            v.sort();
            v
        };
        assert_eq!(picked(&ids, &small), picked(&reversed, &random_rows(&reversed, 16, 30, 9)));
    }

    #[test]
    fn coreset_start_follows_the_ids() {
        let ids: Vec<SampleId> = (0..8).map(|i| SampleId::new(format!("img{i}"))).collect();
        let start = coreset_start(&ids, 10, 3);
        let image = &ids[start / 10];
        let mut reversed = ids.clone();
        reversed.reverse();
        let again = coreset_start(&reversed, 10, 3);
        assert_eq!(&reversed[again / 10], image);
        assert_eq!(again % 10, start % 10);
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
