//! Row kernels of the ViT's CPU path (layernorm, bias + GELU, bias add, softmax), each compiled
//! by `llb_types::multiversion!` for AVX-512, for AVX2 + FMA and for the x86-64 baseline and
//! picked at run time, so that LLVM's auto-vectorisation uses the widest vectors the machine has.
//! All three versions run the same scalar arithmetic, so results do not depend on the machine.

use llb_types::fastmath::{exp_nonpositive, gelu};
use llb_types::multiversion;

/// Independent accumulators of the reductions: enough for LLVM to fill a 512-bit register.
const LANES: usize = 16;

/// Largest value of a slice (−∞ if empty).
#[inline(always)]
fn lanes_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    rest.iter().chain(&acc).fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// Sum of `f(v)` over a slice, in `LANES` interleaved partial sums.
#[inline(always)]
fn lanes_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0_f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    acc.iter().sum::<f32>() + rest.iter().map(|&v| f(v)).sum::<f32>()
}

/// Normalises one row `x` into `out`: `(x − mean)/√(var + eps)·w + b` (biased variance).
#[inline(always)]
fn layernorm_row(x: &[f32], out: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let d = x.len() as f32;
    let mean = lanes_sum(x, |v| v) / d;
    let var = lanes_sum(x, |v| (v - mean) * (v - mean)) / d;
    let inv = 1.0 / (var + eps).sqrt();
    for (((o, &v), &w), &b) in out.iter_mut().zip(x).zip(w).zip(b) {
        *o = (v - mean) * inv * w + b;
    }
}

multiversion! {
    /// Layernorm of each row of `x` (rows of `w.len()` values) into the same row of `out`.
    pub(super) fn layernorm_rows(x: &[f32], out: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
        let d = w.len();
        for (x, out) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            layernorm_row(x, out, w, b, eps);
        }
    }
}

multiversion! {
    /// For each row of `x` (rows of `bias.len()` values): `x += bias`, then its layernorm into
    /// the same row of `out`.
    pub(super) fn add_bias_layernorm_rows(
        x: &mut [f32],
        bias: &[f32],
        out: &mut [f32],
        w: &[f32],
        b: &[f32],
        eps: f32,
    ) {
        let d = bias.len();
        for (x, out) in x.chunks_exact_mut(d).zip(out.chunks_exact_mut(d)) {
            x.iter_mut().zip(bias).for_each(|(v, &c)| *v += c);
            layernorm_row(x, out, w, b, eps);
        }
    }
}

multiversion! {
    /// `x = gelu(x + bias)` on each row of `x` (rows of `bias.len()` values).
    pub(super) fn bias_gelu_rows(x: &mut [f32], bias: &[f32]) {
        for row in x.chunks_exact_mut(bias.len()) {
            row.iter_mut().zip(bias).for_each(|(v, &c)| *v = gelu(*v + c));
        }
    }
}

multiversion! {
    /// `x += bias` on each row of `x` (rows of `bias.len()` values).
    pub(super) fn add_bias_rows(x: &mut [f32], bias: &[f32]) {
        for row in x.chunks_exact_mut(bias.len()) {
            row.iter_mut().zip(bias).for_each(|(v, &c)| *v += c);
        }
    }
}

multiversion! {
    /// `x = gelu(x)` element-wise.
    pub(super) fn gelu_slice(x: &[f32], out: &mut [f32]) {
        out.iter_mut().zip(x).for_each(|(o, &v)| *o = gelu(v));
    }
}

multiversion! {
    /// Softmax of each row of `x` (rows of `n` values) into the same row of `out`.
    pub(super) fn softmax_rows(x: &[f32], out: &mut [f32], n: usize) {
        for (x, out) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
            let max = lanes_max(x);
            out.iter_mut().zip(x).for_each(|(o, &v)| *o = exp_nonpositive(v - max));
            let inv = 1.0 / lanes_sum(out, |v| v);
            out.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

multiversion! {
    /// Softmax of each row of `x` (rows of `n` values), in place.
    pub(super) fn softmax_rows_in_place(x: &mut [f32], n: usize) {
        for x in x.chunks_exact_mut(n) {
            let max = lanes_max(x);
            x.iter_mut().for_each(|v| *v = exp_nonpositive(*v - max));
            let inv = 1.0 / lanes_sum(x, |v| v);
            x.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-4, 4).
    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) % 2000) as f32 / 250.0 - 4.0)
            .collect()
    }

    /// The layernorm of one row in f64.
    fn layernorm64(x: &[f64], w: &[f32], b: &[f32]) -> Vec<f64> {
        let d = x.len() as f64;
        let mean = x.iter().sum::<f64>() / d;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d;
        let inv = 1.0 / (var + 1e-6).sqrt();
        x.iter()
            .zip(w)
            .zip(b)
            .map(|((v, &w), &b)| (v - mean) * inv * f64::from(w) + f64::from(b))
            .collect()
    }

    #[test]
    fn layernorms_match_f64() {
        let d = 37;
        let x = values(5 * d, 1);
        let (w, b, bias) = (values(d, 2), values(d, 3), values(d, 4));
        let mut out = vec![0.0; x.len()];
        layernorm_rows(&x, &mut out, &w, &b, 1e-6);
        let mut shifted = x.clone();
        let mut out_shifted = vec![0.0; x.len()];
        add_bias_layernorm_rows(&mut shifted, &bias, &mut out_shifted, &w, &b, 1e-6);
        let rows = x.chunks(d).zip(out.chunks(d)).zip(shifted.chunks(d).zip(out_shifted.chunks(d)));
        for ((x, out), (shifted, out_shifted)) in rows {
            for ((s, &v), &c) in shifted.iter().zip(x).zip(&bias) {
                assert_eq!(*s, v + c);
            }
            let plain: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            let biased: Vec<f64> = shifted.iter().map(|&v| f64::from(v)).collect();
            for (got, want) in
                [(out, layernorm64(&plain, &w, &b)), (out_shifted, layernorm64(&biased, &w, &b))]
            {
                for (&g, want) in got.iter().zip(want) {
                    assert!((f64::from(g) - want).abs() < 1e-5, "{g} vs {want}");
                }
            }
        }
    }

    /// erf through candle's f64 implementation (libm).
    fn erf64(x: f64) -> f64 {
        candle_core::Tensor::new(&[x], &candle_core::Device::Cpu)
            .and_then(|t| t.erf())
            .and_then(|t| t.to_vec1::<f64>())
            .map_or(f64::NAN, |v| v[0])
    }

    fn gelu64(v: f64) -> f64 {
        0.5 * v * (1.0 + erf64(v / std::f64::consts::SQRT_2))
    }

    #[test]
    fn gelu_and_bias_rows_match_f64() {
        let n = 19;
        let x = values(4 * n, 5);
        let bias = values(n, 6);
        let mut with_bias = x.clone();
        bias_gelu_rows(&mut with_bias, &bias);
        let mut added = x.clone();
        add_bias_rows(&mut added, &bias);
        let mut plain = vec![0.0; x.len()];
        gelu_slice(&x, &mut plain);
        for (i, &v) in x.iter().enumerate() {
            let c = bias[i % n];
            assert_eq!(added[i], v + c);
            assert!((f64::from(with_bias[i]) - gelu64(f64::from(v + c))).abs() < 2e-6);
            assert!((f64::from(plain[i]) - gelu64(f64::from(v))).abs() < 2e-6);
        }
    }

    #[test]
    fn softmax_rows_match_f64() {
        let n = 41;
        let x = values(3 * n, 7);
        let mut out = vec![0.0; x.len()];
        softmax_rows(&x, &mut out, n);
        let mut in_place = x.clone();
        softmax_rows_in_place(&mut in_place, n);
        assert_eq!(out, in_place);
        for (x, out) in x.chunks(n).zip(out.chunks(n)) {
            let max = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
            let z: f64 = x.iter().map(|&v| (f64::from(v) - max).exp()).sum();
            for (&v, &p) in x.iter().zip(out) {
                let want = (f64::from(v) - max).exp() / z;
                assert!((f64::from(p) - want).abs() < 1e-6, "{p} vs {want}");
            }
        }
    }
}
