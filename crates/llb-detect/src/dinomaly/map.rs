//! Token distance grids to pixel anomaly maps: bilinear upsampling (`align_corners = true`, as
//! the official Dinomaly and LLBNAD code) followed by a Gaussian blur.
//!
//! Both steps are linear and separable, so each image axis gets one `[out, in]` matrix
//! (blur · upsample) and a map is `A_h · m · A_wᵀ`: two small matrix products on any device.

use candle_core::{Device, Tensor};

use super::config::{BlurPadding, MapConfig};
use crate::Result;

/// Bilinear interpolation weights `[out, inp]` with aligned corners.
fn upsample_matrix(inp: usize, out: usize) -> Vec<f64> {
    let mut m = vec![0.0; out * inp];
    for i in 0..out {
        let src = if out > 1 { i as f64 * (inp - 1) as f64 / (out - 1) as f64 } else { 0.0 };
        let i0 = (src.floor() as usize).min(inp - 1);
        let i1 = (i0 + 1).min(inp - 1);
        let frac = src - i0 as f64;
        m[i * inp + i0] += 1.0 - frac;
        m[i * inp + i1] += frac;
    }
    m
}

/// Source index of padded position `j` under `padding`, or `None` for a zero.
fn padded_index(j: isize, n: usize, padding: BlurPadding) -> Option<usize> {
    let n = n as isize;
    match padding {
        BlurPadding::Zero => (0..n).contains(&j).then_some(j as usize),
        BlurPadding::Reflect => {
            // Half-sample symmetric: ... b a | a b c | c b ...
            let period = 2 * n;
            let mut k = j.rem_euclid(period);
            if k >= n {
                k = period - 1 - k;
            }
            Some(k as usize)
        }
    }
}

/// Gaussian blur weights `[n, n]` (identity when `sigma` is 0).
fn blur_matrix(n: usize, config: &MapConfig) -> Vec<f64> {
    let mut m = vec![0.0; n * n];
    if config.blur_sigma_px == 0.0 {
        (0..n).for_each(|i| m[i * n + i] = 1.0);
        return m;
    }
    let r = config.blur_radius_px as isize;
    let two_var = 2.0 * config.blur_sigma_px * config.blur_sigma_px;
    let taps: Vec<f64> = (-r..=r).map(|t| (-((t * t) as f64) / two_var).exp()).collect();
    let total: f64 = taps.iter().sum();
    for i in 0..n {
        for (tap, t) in taps.iter().zip(-r..=r) {
            if let Some(src) = padded_index(i as isize + t, n, config.blur_padding) {
                m[i * n + src] += tap / total;
            }
        }
    }
    m
}

/// `blur · upsample` for one axis, `[out, inp]`, as an f32 tensor on `device`.
pub(crate) fn axis_operator(
    inp: usize,
    out: usize,
    config: &MapConfig,
    device: &Device,
) -> Result<Tensor> {
    let up = upsample_matrix(inp, out);
    let blur = blur_matrix(out, config);
    let mut op = vec![0f32; out * inp];
    for i in 0..out {
        for k in 0..out {
            let b = blur[i * out + k];
            if b != 0.0 {
                for j in 0..inp {
                    op[i * inp + j] += (b * up[k * inp + j]) as f32;
                }
            }
        }
    }
    Ok(Tensor::from_vec(op, (out, inp), device)?)
}

/// Upsamples and blurs distance grids `[N, h, w]` to maps `[N, H, W]`.
pub(crate) fn to_pixel_maps(
    grid: &Tensor,
    (height, width): (usize, usize),
    config: &MapConfig,
) -> Result<Tensor> {
    let (n, h, w) = grid.dims3()?;
    let a_h = axis_operator(h, height, config, grid.device())?;
    let a_w = axis_operator(w, width, config, grid.device())?;
    // Two plain 2-D products (no broadcast batch strides, which some backends reject).
    let rows = grid.transpose(0, 1)?.contiguous()?.reshape((h, n * w))?;
    let rows = a_h.matmul(&rows)?.reshape((height, n, w))?.transpose(0, 1)?.contiguous()?;
    let maps = rows.reshape((n * height, w))?.matmul(&a_w.t()?)?;
    Ok(maps.reshape((n, height, width))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(sigma: f64, radius: usize, padding: BlurPadding) -> MapConfig {
        MapConfig { blur_sigma_px: sigma, blur_radius_px: radius, blur_padding: padding }
    }

    #[test]
    fn upsampling_with_aligned_corners_keeps_the_corners() {
        let m = upsample_matrix(2, 5);
        let x = [1.0, 3.0];
        let y: Vec<f64> = (0..5).map(|i| m[i * 2] * x[0] + m[i * 2 + 1] * x[1]).collect();
        assert_eq!(y, vec![1.0, 1.5, 2.0, 2.5, 3.0]);
    }

    #[test]
    fn reflect_blur_preserves_constants_and_zero_blur_darkens_borders() -> Result<()> {
        let ones = Tensor::ones((1, 4, 4), candle_core::DType::F32, &Device::Cpu)?;
        let reflect = to_pixel_maps(&ones, (16, 16), &config(4.0, 16, BlurPadding::Reflect))?;
        let v = reflect.flatten_all()?.to_vec1::<f32>()?;
        assert!(v.iter().all(|x| (x - 1.0).abs() < 1e-5));
        let zero = to_pixel_maps(&ones, (16, 16), &config(4.0, 2, BlurPadding::Zero))?;
        let z = zero.squeeze(0)?.to_vec2::<f32>()?;
        assert!(
            z[0][0] < 0.5 && (z[8][8] - 1.0).abs() < 1e-5,
            "corner {} centre {}",
            z[0][0],
            z[8][8]
        );
        Ok(())
    }

    /// Direct reference in f64: bilinear upsampling (aligned corners), then a 2-D Gaussian
    /// convolution with zero padding, pixel by pixel.
    #[test]
    fn operator_matches_direct_upsample_then_blur() -> Result<()> {
        let (n, h, w, hh, ww, r, sigma) = (2, 3, 4, 7, 10, 2isize, 1.5);
        let grid: Vec<f32> = (0..n * h * w).map(|i| ((i * 7919) % 13) as f32 / 13.0).collect();
        let ours = to_pixel_maps(
            &Tensor::from_vec(grid.clone(), (n, h, w), &Device::Cpu)?,
            (hh, ww),
            &config(sigma, r as usize, BlurPadding::Zero),
        )?
        .flatten_all()?
        .to_vec1::<f32>()?;
        let coord =
            |o: usize, inp: usize, out: usize| o as f64 * (inp - 1) as f64 / (out - 1) as f64;
        let g = |t: isize| (-((t * t) as f64) / (2.0 * sigma * sigma)).exp();
        let norm: f64 = (-r..=r).map(g).sum::<f64>().powi(2);
        for img in 0..n {
            let at = |y: usize, x: usize| f64::from(grid[(img * h + y) * w + x]);
            let up = |oy: usize, ox: usize| {
                let (sy, sx) = (coord(oy, h, hh), coord(ox, w, ww));
                let (y0, x0) = ((sy.floor() as usize).min(h - 1), (sx.floor() as usize).min(w - 1));
                let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
                let (fy, fx) = (sy - y0 as f64, sx - x0 as f64);
                (1.0 - fy) * ((1.0 - fx) * at(y0, x0) + fx * at(y0, x1))
                    + fy * ((1.0 - fx) * at(y1, x0) + fx * at(y1, x1))
            };
            for oy in 0..hh {
                for ox in 0..ww {
                    let mut v = 0.0;
                    for dy in -r..=r {
                        for dx in -r..=r {
                            let (y, x) = (oy as isize + dy, ox as isize + dx);
                            if (0..hh as isize).contains(&y) && (0..ww as isize).contains(&x) {
                                v += g(dy) * g(dx) * up(y as usize, x as usize);
                            }
                        }
                    }
                    let got = ours[(img * hh + oy) * ww + ox];
                    assert!(
                        (f64::from(got) - v / norm).abs() < 1e-5,
                        "({img},{oy},{ox}) {got} vs {}",
                        v / norm
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn blur_spreads_a_peak_symmetrically() {
        let m = blur_matrix(9, &config(1.0, 2, BlurPadding::Zero));
        let row = &m[4 * 9..5 * 9];
        assert!(
            (row[3] - row[5]).abs() < 1e-12 && row[4] > row[3] && row[2] > 0.0 && row[1] == 0.0
        );
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}
