//! Patch-level noise discrimination: outlier scores of training patches among the patches at the
//! same grid position in the other training images, and the denoising cut.

use super::config::OutlierScore;
use crate::{Error, Result};
use candle_core::{D, Tensor};

/// Upper bound, in bytes, of one block of per-position distance matrices.
const BLOCK_BYTES: usize = 64 << 20;

/// Added to every pairwise distance before LOF, as the reference does, so that duplicate patches
/// give finite densities.
const LOF_EPSILON: f32 = 1e-6;

/// Outlier scores `[n_images·h·w]` (patch-matrix row order) of `features` `[n_images·h·w, d]`.
///
/// For every grid position the `n_images × n_images` distance matrix of its patches is computed
/// on the features' device (blocks of positions, batched matrix products) and scored on the CPU.
///
/// # Errors
/// [`Error::TooFewImages`] with fewer than two images.
pub(crate) fn outlier_scores(
    features: &Tensor,
    n_images: usize,
    rule: OutlierScore,
) -> Result<Vec<f32>> {
    if n_images < 2 {
        return Err(Error::TooFewImages {
            what: "softpatch outlier scores",
            needed: 2,
            got: n_images,
        });
    }
    let (rows, d) = features.dims2()?;
    let positions = rows / n_images;
    // [positions, n_images, d]: the patches of one position across images.
    let by_position = features.reshape((n_images, positions, d))?.transpose(0, 1)?.contiguous()?;
    let block = (BLOCK_BYTES / (4 * n_images * n_images)).clamp(1, positions);
    let mut scores = vec![0.0f32; rows];
    let mut start = 0;
    while start < positions {
        let len = block.min(positions - start);
        let x = by_position.narrow(0, start, len)?;
        let sq = x.sqr()?.sum_keepdim(D::Minus1)?;
        let gram = x.matmul(&x.t()?.contiguous()?)?;
        let d2 = gram.affine(-2.0, 0.0)?.broadcast_add(&sq)?.broadcast_add(&sq.t()?)?;
        let dist = d2.relu()?.sqrt()?.to_vec3::<f32>()?;
        for (offset, matrix) in dist.iter().enumerate() {
            let position = start + offset;
            let per_image = match rule {
                OutlierScore::KnnDistance { k } => knn_distance(matrix, k),
                OutlierScore::Lof { k } => lof(matrix, k),
            };
            for (image, score) in per_image.into_iter().enumerate() {
                scores[image * positions + position] = score;
            }
        }
        start += len;
    }
    Ok(scores)
}

/// The `k` nearest other points of every point, `(distance, index)` sorted by distance then
/// index; `k` is capped at `n − 1`.
fn neighbours(dist: &[Vec<f32>], k: usize) -> Vec<Vec<(f32, usize)>> {
    let k = k.min(dist.len() - 1);
    dist.iter()
        .enumerate()
        .map(|(i, row)| {
            let mut others: Vec<(f32, usize)> =
                row.iter().copied().zip(0..).filter(|&(_, j)| j != i).collect();
            others.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            others.truncate(k);
            others
        })
        .collect()
}

/// `1 +` the mean distance of each point to its `k` nearest other points.
pub(crate) fn knn_distance(dist: &[Vec<f32>], k: usize) -> Vec<f32> {
    neighbours(dist, k)
        .iter()
        .map(|nn| {
            1.0 + (nn.iter().map(|&(d, _)| f64::from(d)).sum::<f64>() / nn.len() as f64) as f32
        })
        .collect()
}

/// Local outlier factor of each point with `k` neighbours: `lrd(p) = 1 / mean reach-dist(p, o)`
/// over its neighbours `o`, `reach-dist(p, o) = max(k-distance(o), d(p, o))`, and
/// `LOF(p) = mean lrd(o) / lrd(p)`. Distances get [`LOF_EPSILON`] added first.
pub(crate) fn lof(dist: &[Vec<f32>], k: usize) -> Vec<f32> {
    let eps: Vec<Vec<f32>> =
        dist.iter().map(|row| row.iter().map(|d| d + LOF_EPSILON).collect()).collect();
    let nn = neighbours(&eps, k);
    let k_distance: Vec<f64> =
        nn.iter().map(|n| n.last().map_or(0.0, |&(d, _)| f64::from(d))).collect();
    let lrd: Vec<f64> = nn
        .iter()
        .map(|n| {
            let reach: f64 = n.iter().map(|&(d, o)| f64::from(d).max(k_distance[o])).sum();
            n.len() as f64 / reach
        })
        .collect();
    nn.iter()
        .zip(&lrd)
        .map(|(n, own)| (n.iter().map(|&(_, o)| lrd[o]).sum::<f64>() / n.len() as f64 / own) as f32)
        .collect()
}

/// Rows kept by the denoising cut: those whose score is not above the `1 − noise_fraction`
/// quantile of all scores (linear interpolation between order statistics, as `torch.quantile`).
pub(crate) fn keep_mask(scores: &[f32], noise_fraction: f64) -> Vec<bool> {
    if scores.is_empty() || noise_fraction <= 0.0 {
        return vec![true; scores.len()];
    }
    let mut sorted = scores.to_vec();
    sorted.sort_by(f32::total_cmp);
    let position = (1.0 - noise_fraction) * (sorted.len() - 1) as f64;
    let (lo, hi) = (position.floor() as usize, position.ceil() as usize);
    let frac = position - lo as f64;
    let cut = f64::from(sorted[lo]) + frac * (f64::from(sorted[hi]) - f64::from(sorted[lo]));
    scores.iter().map(|&s| f64::from(s) <= cut).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distances(points: &[f32]) -> Vec<Vec<f32>> {
        points.iter().map(|a| points.iter().map(|b| (a - b).abs()).collect()).collect()
    }

    #[test]
    fn knn_distance_of_points_on_a_line() {
        let d = distances(&[0.0, 1.0, 3.0, 10.0]);
        assert_eq!(knn_distance(&d, 1), vec![2.0, 2.0, 3.0, 8.0]);
        assert_eq!(knn_distance(&d, 2), vec![3.0, 2.5, 3.5, 9.0]);
        // k is capped at n − 1.
        assert_eq!(knn_distance(&d, 10), knn_distance(&d, 3));
    }

    #[test]
    fn lof_matches_a_hand_computation() {
        // Points 0, 1, 2 and 10 with k = 1 (epsilon ignored at this tolerance):
        // k-distances 1, 1, 1, 8; lrd = 1/1, 1/1, 1/1, 1/8; LOF = 1, 1, 1, 8.
        let got = lof(&distances(&[0.0, 1.0, 2.0, 10.0]), 1);
        for (g, e) in got.iter().zip([1.0, 1.0, 1.0, 8.0]) {
            assert!((g - e).abs() < 1e-4, "{got:?}");
        }
    }

    #[test]
    fn lof_of_duplicates_is_finite() {
        let got = lof(&distances(&[2.0, 2.0, 2.0]), 2);
        assert!(got.iter().all(|v| (v - 1.0).abs() < 1e-6), "{got:?}");
    }

    #[test]
    fn keep_mask_cuts_above_the_quantile() {
        let scores: Vec<f32> = (0..10).map(|i| i as f32).collect();
        // Quantile 0.8 of 0..=9 is 7.2: scores 8 and 9 go.
        let kept = keep_mask(&scores, 0.2);
        assert_eq!(kept.iter().filter(|k| !**k).count(), 2);
        assert!(!kept[8] && !kept[9]);
        assert!(keep_mask(&scores, 0.0).iter().all(|k| *k));
        // Ties at the top are all kept: nothing exceeds the quantile.
        assert!(keep_mask(&[1.0; 5], 0.5).iter().all(|k| *k));
    }

    #[test]
    fn scores_follow_positions_across_images() -> Result<()> {
        // 4 images, 2 positions, 1 channel; image 3 is far off at position 1 only.
        let values = [0.0f32, 5.0, 0.1, 5.1, 0.2, 5.2, 0.3, 50.0];
        let features = Tensor::from_vec(values.to_vec(), (8, 1), &candle_core::Device::Cpu)?;
        let scores = outlier_scores(&features, 4, OutlierScore::KnnDistance { k: 1 })?;
        let worst = scores.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i);
        assert_eq!(worst, Some(7));
        assert!(scores[6] < 1.2, "{scores:?}");
        let one = Tensor::zeros((2, 1), candle_core::DType::F32, &candle_core::Device::Cpu)?;
        assert!(matches!(
            outlier_scores(&one, 1, OutlierScore::Lof { k: 3 }),
            Err(Error::TooFewImages { needed: 2, got: 1, .. })
        ));
        Ok(())
    }
}
