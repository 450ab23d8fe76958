//! Score grids to image-sized anomaly maps: bilinear upsampling, then a Gaussian blur.
//!
//! Both steps are linear and separable, so each image axis gets one `[out, in]` matrix
//! `A = G·U`: `U` is bilinear interpolation and `G` a normalised Gaussian. A map is then
//! `A_h · m · A_wᵀ`, two plain 2-D matrix products on the scores' device, and equals
//! upsample-then-blur up to f32 rounding. A [`MapSpec`] holds the four choices that differ
//! between detectors:
//! - PatchCore and SoftPatch ([`MapSpec::scipy_gaussian`]): `align_corners = false` (the
//!   PyTorch rule PatchCore uses), radius `round(4σ)` and reflect padding (`d c b a | a b c d |
//!   d c b a`), i.e. scipy's `gaussian_filter` with `truncate = 4.0` and `mode = "reflect"`, the
//!   filter the PatchCore reference code calls;
//! - Dinomaly (`From<&MapConfig>`): `align_corners = true` (the official Dinomaly and LLBNAD
//!   code) with the radius and padding of its [`MapConfig`].

use crate::patches::shape_error;
use crate::{BlurPadding, MapConfig, Result};
use candle_core::{Device, Tensor};

/// Kernel radius in standard deviations (scipy's `truncate = 4.0`).
const TRUNCATE_SIGMAS: f64 = 4.0;

/// How a score grid becomes a map: the bilinear rule and the Gaussian blur.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct MapSpec {
    /// Bilinear rule. `true`: the corner samples of grid and map coincide (output `o` reads input
    /// `o·(in − 1)/(out − 1)`); `false`: PyTorch's default half-pixel rule (input
    /// `(o + 0.5)·in/out − 0.5`, clamped at 0).
    pub(crate) align_corners: bool,
    /// Gaussian standard deviation in output pixels; `0` disables the blur.
    pub(crate) blur_sigma_px: f64,
    /// Kernel radius in output pixels (`2·radius + 1` taps); `0` disables the blur.
    pub(crate) blur_radius_px: usize,
    /// Border handling of the blur.
    pub(crate) padding: BlurPadding,
}

impl MapSpec {
    /// PatchCore's post-processing: half-pixel bilinear upsampling, then scipy's
    /// `gaussian_filter(σ = blur_sigma_px)` (radius `round(4σ)`, reflect padding).
    pub(crate) fn scipy_gaussian(blur_sigma_px: f64) -> Self {
        Self {
            align_corners: false,
            blur_sigma_px,
            blur_radius_px: (TRUNCATE_SIGMAS * blur_sigma_px + 0.5).floor() as usize,
            padding: BlurPadding::Reflect,
        }
    }

    /// Upsamples and blurs score grids `[N, h, w]` f32 to maps `[N, H, W]` f32, with
    /// `(H, W) = image_size_px`.
    pub(crate) fn apply(&self, grid: &Tensor, image_size_px: (usize, usize)) -> Result<Tensor> {
        let (n, h, w) = grid.dims3()?;
        if h == 0 || w == 0 {
            return Err(shape_error("score grid", "[N, h > 0, w > 0]", &[n, h, w]));
        }
        let (height, width) = image_size_px;
        let a_h = self.axis_operator(h, height, grid.device())?;
        let a_w = self.axis_operator(w, width, grid.device())?;
        // Two plain 2-D products (no broadcast batch strides, which some backends reject).
        let rows = grid.transpose(0, 1)?.contiguous()?.reshape((h, n * w))?;
        let rows = a_h.matmul(&rows)?.reshape((height, n, w))?.transpose(0, 1)?.contiguous()?;
        let maps = rows.reshape((n * height, w))?.matmul(&a_w.t()?)?;
        Ok(maps.reshape((n, height, width))?)
    }

    /// `blur · upsample` for one axis, `[n_out, n_in]` f32 on `device` (`n_in > 0`).
    fn axis_operator(&self, n_in: usize, n_out: usize, device: &Device) -> Result<Tensor> {
        let up = bilinear_matrix(n_in, n_out, self.align_corners);
        let blur = gaussian_matrix(n_out, self);
        let mut op = vec![0f32; n_out * n_in];
        for o in 0..n_out {
            for k in 0..n_out {
                let b = blur[o * n_out + k];
                if b != 0.0 {
                    for i in 0..n_in {
                        op[o * n_in + i] += (b * up[k * n_in + i]) as f32;
                    }
                }
            }
        }
        Ok(Tensor::from_vec(op, (n_out, n_in), device)?)
    }
}

impl From<&MapConfig> for MapSpec {
    /// Dinomaly's post-processing: bilinear upsampling with aligned corners, then the configured
    /// blur.
    fn from(config: &MapConfig) -> Self {
        Self {
            align_corners: true,
            blur_sigma_px: config.blur_sigma_px,
            blur_radius_px: config.blur_radius_px,
            padding: config.blur_padding,
        }
    }
}

/// Bilinear weights `[n_out, n_in]` (row-major, `n_in > 0`); see [`MapSpec::align_corners`].
fn bilinear_matrix(n_in: usize, n_out: usize, align_corners: bool) -> Vec<f64> {
    let mut m = vec![0.0; n_out * n_in];
    for o in 0..n_out {
        let src = if align_corners {
            if n_out > 1 { o as f64 * (n_in - 1) as f64 / (n_out - 1) as f64 } else { 0.0 }
        } else {
            ((o as f64 + 0.5) * n_in as f64 / n_out as f64 - 0.5).max(0.0)
        };
        let i0 = (src.floor() as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        let frac = src - i0 as f64;
        m[o * n_in + i0] += 1.0 - frac;
        m[o * n_in + i1] += frac;
    }
    m
}

/// Source index of padded position `j` on an axis of `n` samples, or `None` for a zero.
fn padded_index(j: isize, n: usize, padding: BlurPadding) -> Option<usize> {
    let n = n as isize;
    match padding {
        BlurPadding::Zero => (0..n).contains(&j).then_some(j as usize),
        BlurPadding::Reflect => {
            // Half-sample symmetric, period 2n: ... b a | a b c | c b ...
            let period = 2 * n;
            let k = j.rem_euclid(period);
            Some((if k < n { k } else { period - 1 - k }) as usize)
        }
    }
}

/// Normalised Gaussian blur `[n, n]` (row-major) with the spec's sigma, radius and padding;
/// the identity when either is `0`. Under zero padding the rows near a border sum to less
/// than 1 (the taps are normalised over the full kernel).
fn gaussian_matrix(n: usize, spec: &MapSpec) -> Vec<f64> {
    let mut m = vec![0.0; n * n];
    let sigma = spec.blur_sigma_px;
    if sigma <= 0.0 || spec.blur_radius_px == 0 {
        (0..n).for_each(|i| m[i * n + i] = 1.0);
        return m;
    }
    let r = spec.blur_radius_px as isize;
    let taps: Vec<f64> = (-r..=r).map(|t| (-0.5 * (t as f64 / sigma).powi(2)).exp()).collect();
    let total: f64 = taps.iter().sum();
    for o in 0..n {
        for (tap, t) in taps.iter().zip(-r..=r) {
            if let Some(src) = padded_index(o as isize + t, n, spec.padding) {
                m[o * n + src] += tap / total;
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(align_corners: bool, sigma: f64, radius: usize, padding: BlurPadding) -> MapSpec {
        MapSpec { align_corners, blur_sigma_px: sigma, blur_radius_px: radius, padding }
    }

    /// Direct reference in f64, pixel by pixel: bilinear upsampling of each map by the textbook
    /// coordinate rule of `spec.align_corners`, then a 2-D Gaussian convolution of radius
    /// `spec.blur_radius_px` with `spec.padding` (zero padding drops the taps outside the map).
    fn reference(
        scores: &[f64],
        (n, h, w): (usize, usize, usize),
        (hh, ww): (usize, usize),
        spec: &MapSpec,
    ) -> Vec<f64> {
        let coord = |o: usize, inp: usize, out: usize| {
            if spec.align_corners {
                o as f64 * (inp - 1) as f64 / (out - 1) as f64
            } else {
                ((o as f64 + 0.5) * inp as f64 / out as f64 - 0.5).max(0.0)
            }
        };
        let mut out = Vec::with_capacity(n * hh * ww);
        for img in 0..n {
            let at = |y: usize, x: usize| scores[(img * h + y) * w + x];
            let mut up = vec![0.0; hh * ww];
            for oy in 0..hh {
                for ox in 0..ww {
                    let (sy, sx) = (coord(oy, h, hh), coord(ox, w, ww));
                    let (y0, x0) = ((sy as usize).min(h - 1), (sx as usize).min(w - 1));
                    let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
                    let (fy, fx) = (sy - y0 as f64, sx - x0 as f64);
                    up[oy * ww + ox] = (1.0 - fy) * ((1.0 - fx) * at(y0, x0) + fx * at(y0, x1))
                        + fy * ((1.0 - fx) * at(y1, x0) + fx * at(y1, x1));
                }
            }
            let (sigma, r) = (spec.blur_sigma_px, spec.blur_radius_px as isize);
            if sigma == 0.0 {
                out.extend(up);
                continue;
            }
            let g = |t: isize| (-((t * t) as f64) / (2.0 * sigma * sigma)).exp();
            let norm: f64 = (-r..=r).map(g).sum::<f64>().powi(2);
            for oy in 0..hh {
                for ox in 0..ww {
                    let mut v = 0.0;
                    for dy in -r..=r {
                        for dx in -r..=r {
                            let y = padded_index(oy as isize + dy, hh, spec.padding);
                            let x = padded_index(ox as isize + dx, ww, spec.padding);
                            if let (Some(y), Some(x)) = (y, x) {
                                v += g(dy) * g(dx) * up[y * ww + x];
                            }
                        }
                    }
                    out.push(v / norm);
                }
            }
        }
        out
    }

    /// Compares [`MapSpec::apply`] with [`reference`] on `n` pseudo-random grids.
    fn check(n: usize, grid: (usize, usize), size: (usize, usize), spec: &MapSpec) -> Result<()> {
        let len = n * grid.0 * grid.1;
        let scores: Vec<f32> = (0..len).map(|i| ((i * 7919) % 13) as f32 * 0.37).collect();
        let wide: Vec<f64> = scores.iter().map(|&v| f64::from(v)).collect();
        let expected = reference(&wide, (n, grid.0, grid.1), size, spec);
        let input = Tensor::from_vec(scores, (n, grid.0, grid.1), &Device::Cpu)?;
        let got = spec.apply(&input, size)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(got.len(), expected.len());
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert!(
                (f64::from(*g) - e).abs() < 1e-5 * (1.0 + e.abs()),
                "{spec:?} grid {grid:?} size {size:?} at {i}: {g} vs {e}"
            );
        }
        Ok(())
    }

    #[test]
    fn scipy_gaussian_matches_upsample_then_reflect_blur() -> Result<()> {
        check(1, (4, 5), (16, 20), &MapSpec::scipy_gaussian(1.0))?;
        check(1, (3, 3), (7, 11), &MapSpec::scipy_gaussian(0.8))?;
        // A kernel wider than the image exercises repeated reflection.
        check(1, (2, 2), (6, 5), &MapSpec::scipy_gaussian(2.0))?;
        check(2, (4, 4), (8, 8), &MapSpec::scipy_gaussian(0.0))
    }

    #[test]
    fn aligned_corners_match_upsample_then_blur() -> Result<()> {
        // Dinomaly's official map (zero padding), then LLBNAD's (reflect, kernel wider than
        // the map).
        check(2, (3, 4), (7, 10), &spec(true, 1.5, 2, BlurPadding::Zero))?;
        check(2, (3, 4), (7, 10), &spec(true, 4.0, 16, BlurPadding::Reflect))
    }

    #[test]
    fn scipy_radius_is_four_sigmas_rounded() {
        let radii: Vec<usize> =
            [0.0, 0.1, 0.8, 1.0, 4.0].map(|s| MapSpec::scipy_gaussian(s).blur_radius_px).into();
        assert_eq!(radii, vec![0, 0, 3, 4, 16]);
    }

    #[test]
    fn reflect_folds_like_scipy() {
        let folded: Vec<Option<usize>> =
            (-4..8).map(|i| padded_index(i, 3, BlurPadding::Reflect)).collect();
        let expected = [2, 2, 1, 0, 0, 1, 2, 2, 1, 0, 0, 1].map(Some);
        assert_eq!(folded, expected);
        let zero: Vec<Option<usize>> =
            (-1..4).map(|i| padded_index(i, 3, BlurPadding::Zero)).collect();
        assert_eq!(zero, vec![None, Some(0), Some(1), Some(2), None]);
    }

    #[test]
    fn upsampling_with_aligned_corners_keeps_the_corners() {
        let m = bilinear_matrix(2, 5, true);
        let x = [1.0, 3.0];
        let y: Vec<f64> = (0..5).map(|i| m[i * 2] * x[0] + m[i * 2 + 1] * x[1]).collect();
        assert_eq!(y, vec![1.0, 1.5, 2.0, 2.5, 3.0]);
    }

    #[test]
    fn reflect_blur_preserves_constants_and_zero_blur_darkens_borders() -> Result<()> {
        let dev = Device::Cpu;
        let scipy = MapSpec::scipy_gaussian(4.0)
            .apply(&Tensor::full(2.5f32, (2, 5, 5), &dev)?, (40, 40))?;
        assert!(scipy.flatten_all()?.to_vec1::<f32>()?.iter().all(|v| (v - 2.5).abs() < 1e-5));
        let ones = Tensor::ones((1, 4, 4), candle_core::DType::F32, &dev)?;
        let reflect = spec(true, 4.0, 16, BlurPadding::Reflect).apply(&ones, (16, 16))?;
        let v = reflect.flatten_all()?.to_vec1::<f32>()?;
        assert!(v.iter().all(|x| (x - 1.0).abs() < 1e-5));
        let zero = spec(true, 4.0, 2, BlurPadding::Zero).apply(&ones, (16, 16))?;
        let z = zero.squeeze(0)?.to_vec2::<f32>()?;
        assert!(
            z[0][0] < 0.5 && (z[8][8] - 1.0).abs() < 1e-5,
            "corner {} centre {}",
            z[0][0],
            z[8][8]
        );
        Ok(())
    }

    #[test]
    fn blur_spreads_a_peak_symmetrically() {
        let m = gaussian_matrix(9, &spec(true, 1.0, 2, BlurPadding::Zero));
        let row = &m[4 * 9..5 * 9];
        assert!(
            (row[3] - row[5]).abs() < 1e-12 && row[4] > row[3] && row[2] > 0.0 && row[1] == 0.0
        );
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn an_empty_grid_is_an_error() -> Result<()> {
        let empty = Tensor::zeros((1, 0, 3), candle_core::DType::F32, &Device::Cpu)?;
        assert!(MapSpec::scipy_gaussian(1.0).apply(&empty, (8, 8)).is_err());
        Ok(())
    }
}
