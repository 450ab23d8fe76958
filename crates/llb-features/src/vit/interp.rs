//! Bicubic resampling of the position grid, as separable weight matrices.
//!
//! Resizing a `[in_h, in_w]` grid to `[out_h, out_w]` is `Wy · G · Wxᵀ` with `Wy` of shape
//! `[out_h, in_h]` and `Wx` of shape `[out_w, in_w]`; [`resize_weights`] builds one such matrix.

use super::config::PosInterpolation;

/// Keys' cubic convolution kernel with parameter `a`.
fn cubic(x: f64, a: f64) -> f64 {
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// Row-major `[out_len, in_len]` matrix mapping a length-`in_len` signal to length `out_len`.
///
/// [`PosInterpolation::Bicubic`]: source coordinate `(i + 0.5) · in/out − 0.5`, four taps with
/// a = −0.75 and indices clamped to the border (torch `upsample_bicubic2d` with
/// `align_corners=False` and an explicit output size; ONNX `Resize` cubic, half-pixel).
/// [`PosInterpolation::BicubicAntialias`]: when shrinking, torch's antialiased kernel (a = −0.5,
/// support `2 · in/out`, taps outside the signal dropped and weights renormalised); when enlarging,
/// the same taps with support 2.
pub(crate) fn resize_weights(in_len: usize, out_len: usize, mode: PosInterpolation) -> Vec<f64> {
    let mut w = vec![0.0; out_len * in_len];
    let scale = in_len as f64 / out_len as f64;
    match mode {
        PosInterpolation::Bicubic => {
            for i in 0..out_len {
                let src = (i as f64 + 0.5) * scale - 0.5;
                let x0 = src.floor();
                let t = src - x0;
                for (k, off) in (-1..=2_i64).enumerate() {
                    let tap = cubic(t - (k as f64 - 1.0), -0.75);
                    let idx = (x0 as i64 + off).clamp(0, in_len as i64 - 1) as usize;
                    w[i * in_len + idx] += tap;
                }
            }
        }
        PosInterpolation::BicubicAntialias => {
            let support_scale = scale.max(1.0);
            let support = 2.0 * support_scale;
            for i in 0..out_len {
                let center = scale * (i as f64 + 0.5);
                let lo = ((center - support + 0.5).floor().max(0.0)) as usize;
                let hi = ((center + support + 0.5).floor() as usize).min(in_len);
                let row = &mut w[i * in_len..(i + 1) * in_len];
                let mut total = 0.0;
                for (j, slot) in row.iter_mut().enumerate().take(hi).skip(lo) {
                    let tap = cubic((j as f64 - center + 0.5) / support_scale, -0.5);
                    *slot = tap;
                    total += tap;
                }
                if total != 0.0 {
                    row.iter_mut().for_each(|v| *v /= total);
                }
            }
        }
    }
    w
}

/// Resizes a channel-last grid `[in_h, in_w, c]` (row-major) to `[out_h, out_w, c]`.
pub(crate) fn resize_grid(
    grid: &[f32],
    (in_h, in_w, c): (usize, usize, usize),
    (out_h, out_w): (usize, usize),
    mode: PosInterpolation,
) -> Vec<f32> {
    let wy = resize_weights(in_h, out_h, mode);
    let wx = resize_weights(in_w, out_w, mode);
    // First along x: tmp[y, ox, c].
    let mut tmp = vec![0.0_f64; in_h * out_w * c];
    for y in 0..in_h {
        for ox in 0..out_w {
            let dst = &mut tmp[(y * out_w + ox) * c..(y * out_w + ox + 1) * c];
            for x in 0..in_w {
                let wgt = wx[ox * in_w + x];
                if wgt == 0.0 {
                    continue;
                }
                let src = &grid[(y * in_w + x) * c..(y * in_w + x + 1) * c];
                dst.iter_mut().zip(src).for_each(|(d, &s)| *d += wgt * f64::from(s));
            }
        }
    }
    let mut out = vec![0.0_f64; out_h * out_w * c];
    for oy in 0..out_h {
        for y in 0..in_h {
            let wgt = wy[oy * in_h + y];
            if wgt == 0.0 {
                continue;
            }
            let src = &tmp[y * out_w * c..(y + 1) * out_w * c];
            let dst = &mut out[oy * out_w * c..(oy + 1) * out_w * c];
            dst.iter_mut().zip(src).for_each(|(d, &s)| *d += wgt * s);
        }
    }
    out.into_iter().map(|v| v as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_rows_sum_to_one(in_len: usize, out_len: usize, mode: PosInterpolation) {
        let w = resize_weights(in_len, out_len, mode);
        for row in w.chunks(in_len) {
            let s: f64 = row.iter().sum();
            assert!((s - 1.0).abs() < 1e-12, "{in_len}->{out_len} {mode:?}: row sum {s}");
        }
    }

    #[test]
    fn rows_are_partitions_of_unity() {
        for (i, o) in [(37, 16), (37, 12), (37, 37), (37, 74), (5, 3)] {
            check_rows_sum_to_one(i, o, PosInterpolation::Bicubic);
            check_rows_sum_to_one(i, o, PosInterpolation::BicubicAntialias);
        }
    }

    #[test]
    fn same_size_is_identity() {
        for mode in [PosInterpolation::Bicubic, PosInterpolation::BicubicAntialias] {
            let w = resize_weights(7, 7, mode);
            for i in 0..7 {
                for j in 0..7 {
                    let expected = if i == j { 1.0 } else { 0.0 };
                    assert!((w[i * 7 + j] - expected).abs() < 1e-12, "{mode:?} [{i},{j}]");
                }
            }
        }
    }

    #[test]
    fn bicubic_matches_onnxruntime_resize() {
        // onnxruntime 1.32.0, opset-14 Resize(mode=cubic, half_pixel, cubic_coeff_a=-0.75) with
        // explicit sizes, on the signal (k² mod 7) for k in 0..in_len.
        let check = |in_len: usize, expected: &[f64]| {
            let w = resize_weights(in_len, expected.len(), PosInterpolation::Bicubic);
            let signal: Vec<f64> = (0..in_len).map(|k| ((k * k) % 7) as f64).collect();
            for (row, want) in w.chunks(in_len).zip(expected) {
                let got: f64 = row.iter().zip(&signal).map(|(a, b)| a * b).sum();
                assert!((got - want).abs() < 1e-5, "{in_len}->{}: {got} vs {want}", expected.len());
            }
        };
        check(4, &[0.21875, 3.28125]);
        check(
            37,
            &[
                0.34078216552734375,
                2.0504379272460938,
                3.4831619262695312,
                0.209320068359375,
                2.1709060668945312,
                3.6441574096679688,
                0.149932861328125,
                2.3135299682617188,
                3.7815322875976562,
                0.102996826171875,
                2.4735488891601562,
                3.8919906616210938,
                0.067047119140625,
                2.6462020874023438,
                3.9722366333007812,
                0.21509552001953125,
            ],
        );
    }

    #[test]
    fn grid_resize_keeps_constant_and_linear_ramps() {
        let (h, w, c) = (5, 6, 2);
        let grid: Vec<f32> =
            (0..h * w * c).map(|i| if i % 2 == 0 { 3.0 } else { (i / 2 % w) as f32 }).collect();
        let out = resize_grid(&grid, (h, w, c), (5, 6), PosInterpolation::Bicubic);
        assert_eq!(out, grid);
        let out = resize_grid(&grid, (h, w, c), (3, 4), PosInterpolation::Bicubic);
        assert!(out.iter().step_by(2).all(|v| (v - 3.0).abs() < 1e-6), "{out:?}");
    }
}
