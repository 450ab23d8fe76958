//! Patch-score grids to image-sized anomaly maps: bilinear upsampling, then a Gaussian blur.
//!
//! Both steps are linear and separable, so each image axis gets one matrix: `A = G·U`, where `U`
//! `[H, h]` is bilinear interpolation (`align_corners = false`, the PyTorch rule PatchCore uses)
//! and `G` `[H, H]` is a normalised Gaussian of standard deviation `blur_sigma_px` with radius
//! `round(4σ)` and reflect padding (`d c b a | a b c d | d c b a`, scipy's `mode="reflect"`, the
//! filter the PatchCore reference code calls). A map is then `A_rows · S · A_colsᵀ`, two batched
//! matrix products on the scores' device. The result equals upsample-then-blur up to f32 rounding.

use crate::Result;
use candle_core::{Device, Tensor};

/// Kernel radius in standard deviations (scipy's `truncate = 4.0`).
const TRUNCATE_SIGMAS: f64 = 4.0;

/// The two per-axis operators that turn `[N, h, w]` patch scores into `[N, H, W]` maps.
#[derive(Clone, Debug)]
pub(crate) struct MapPostprocess {
    /// `[H, h]` f32: blur after bilinear upsampling along rows.
    rows: Tensor,
    /// `[w, W]` f32: the transposed column operator.
    cols_t: Tensor,
}

impl MapPostprocess {
    /// Operators from grid `(h, w)` to image `(H, W)` with a Gaussian of `blur_sigma_px` (`0`
    /// means no blur).
    pub(crate) fn new(
        grid: (usize, usize),
        image_size_px: (usize, usize),
        blur_sigma_px: f64,
        device: &Device,
    ) -> Result<Self> {
        let rows = axis_operator(grid.0, image_size_px.0, blur_sigma_px);
        let cols = axis_operator(grid.1, image_size_px.1, blur_sigma_px);
        let rows = Tensor::from_vec(rows, (image_size_px.0, grid.0), device)?;
        let cols_t =
            Tensor::from_vec(cols, (image_size_px.1, grid.1), device)?.t()?.contiguous()?;
        Ok(Self { rows, cols_t })
    }

    /// Applies the operators to patch scores `[N, h, w]` f32, giving maps `[N, H, W]` f32.
    pub(crate) fn apply(&self, scores: &Tensor) -> Result<Tensor> {
        let (n, h, w) = scores.dims3()?;
        let rows = self.rows.unsqueeze(0)?.broadcast_as((n, self.rows.dim(0)?, h))?.contiguous()?;
        let cols = self.cols_t.unsqueeze(0)?.broadcast_as((n, w, self.cols_t.dim(1)?))?;
        Ok(rows.matmul(&scores.contiguous()?)?.matmul(&cols.contiguous()?)?)
    }
}

/// Bilinear weights `[out, in]` (row-major) with PyTorch's `align_corners = false` rule.
pub(crate) fn bilinear_matrix(n_in: usize, n_out: usize) -> Vec<f64> {
    let mut m = vec![0.0; n_out * n_in];
    let scale = n_in as f64 / n_out as f64;
    for o in 0..n_out {
        let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        let frac = src - i0 as f64;
        m[o * n_in + i0] += 1.0 - frac;
        m[o * n_in + i1] += frac;
    }
    m
}

/// Normalised Gaussian blur `[n, n]` (row-major) with reflect padding; identity when `sigma`
/// is `0`.
pub(crate) fn gaussian_matrix(n: usize, sigma: f64) -> Vec<f64> {
    let mut m = vec![0.0; n * n];
    let radius = (TRUNCATE_SIGMAS * sigma + 0.5).floor() as i64;
    if sigma <= 0.0 || radius == 0 {
        for i in 0..n {
            m[i * n + i] = 1.0;
        }
        return m;
    }
    let taps: Vec<f64> =
        (-radius..=radius).map(|t| (-0.5 * (t as f64 / sigma).powi(2)).exp()).collect();
    let total: f64 = taps.iter().sum();
    for o in 0..n {
        for (tap, weight) in (-radius..=radius).zip(&taps) {
            let source = reflect(o as i64 + tap, n);
            m[o * n + source] += weight / total;
        }
    }
    m
}

/// Folds index `i` into `0..n` by half-sample-symmetric reflection (period `2n`).
fn reflect(i: i64, n: usize) -> usize {
    let n = n as i64;
    let period = 2 * n;
    let j = i.rem_euclid(period);
    (if j < n { j } else { period - 1 - j }) as usize
}

/// `G·U` for one axis, `[out, in]` f32.
fn axis_operator(n_in: usize, n_out: usize, sigma: f64) -> Vec<f32> {
    let u = bilinear_matrix(n_in, n_out);
    let g = gaussian_matrix(n_out, sigma);
    let mut a = vec![0.0f32; n_out * n_in];
    for o in 0..n_out {
        for k in 0..n_out {
            let gk = g[o * n_out + k];
            if gk != 0.0 {
                for i in 0..n_in {
                    a[o * n_in + i] += (gk * u[k * n_in + i]) as f32;
                }
            }
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct two-step reference: bilinear upsampling of one map, then a 2-D Gaussian convolution
    /// with reflect padding, all in f64.
    fn reference(
        scores: &[f64],
        (h, w): (usize, usize),
        (hh, ww): (usize, usize),
        sigma: f64,
    ) -> Vec<f64> {
        let mut up = vec![0.0; hh * ww];
        let (sy, sx) = (h as f64 / hh as f64, w as f64 / ww as f64);
        for y in 0..hh {
            for x in 0..ww {
                let fy = ((y as f64 + 0.5) * sy - 0.5).max(0.0);
                let fx = ((x as f64 + 0.5) * sx - 0.5).max(0.0);
                let (y0, x0) = ((fy as usize).min(h - 1), (fx as usize).min(w - 1));
                let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
                let (ay, ax) = (fy - y0 as f64, fx - x0 as f64);
                let at = |yy: usize, xx: usize| scores[yy * w + xx];
                up[y * ww + x] = (1.0 - ay) * ((1.0 - ax) * at(y0, x0) + ax * at(y0, x1))
                    + ay * ((1.0 - ax) * at(y1, x0) + ax * at(y1, x1));
            }
        }
        if sigma == 0.0 {
            return up;
        }
        let r = (4.0 * sigma + 0.5).floor() as i64;
        let k: Vec<f64> = (-r..=r).map(|t| (-0.5 * (t as f64 / sigma).powi(2)).exp()).collect();
        let ksum: f64 = k.iter().sum::<f64>().powi(2);
        let mut out = vec![0.0; hh * ww];
        for y in 0..hh {
            for x in 0..ww {
                let mut acc = 0.0;
                for dy in -r..=r {
                    for dx in -r..=r {
                        let yy = reflect(y as i64 + dy, hh);
                        let xx = reflect(x as i64 + dx, ww);
                        acc += k[(dy + r) as usize] * k[(dx + r) as usize] * up[yy * ww + xx];
                    }
                }
                out[y * ww + x] = acc / ksum;
            }
        }
        out
    }

    fn check(grid: (usize, usize), size: (usize, usize), sigma: f64) {
        let n = grid.0 * grid.1;
        let scores: Vec<f64> = (0..n).map(|i| ((i * 7919) % 13) as f64 * 0.37).collect();
        let expected = reference(&scores, grid, size, sigma);
        let dev = Device::Cpu;
        let post = MapPostprocess::new(grid, size, sigma, &dev).unwrap();
        let s32: Vec<f32> = scores.iter().map(|&v| v as f32).collect();
        let input = Tensor::from_vec(s32, (1, grid.0, grid.1), &dev).unwrap();
        let got = post.apply(&input).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(got.len(), expected.len());
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert!(
                (*g as f64 - e).abs() < 1e-4,
                "grid {grid:?} size {size:?} σ {sigma} at {i}: {g} vs {e}"
            );
        }
    }

    #[test]
    fn matches_upsample_then_blur() {
        check((4, 5), (16, 20), 1.0);
        check((3, 3), (7, 11), 0.8);
        // A kernel wider than the image exercises repeated reflection.
        check((2, 2), (6, 5), 2.0);
        check((4, 4), (8, 8), 0.0);
    }

    #[test]
    fn reflect_folds_like_scipy() {
        let folded: Vec<usize> = (-4..8).map(|i| reflect(i, 3)).collect();
        assert_eq!(folded, vec![2, 2, 1, 0, 0, 1, 2, 2, 1, 0, 0, 1]);
    }

    #[test]
    fn constant_scores_stay_constant() {
        let dev = Device::Cpu;
        let post = MapPostprocess::new((5, 5), (40, 40), 4.0, &dev).unwrap();
        let input = Tensor::full(2.5f32, (2, 5, 5), &dev).unwrap();
        let out = post.apply(&input).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(out.iter().all(|v| (v - 2.5).abs() < 1e-5));
    }
}
