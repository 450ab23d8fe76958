//! Linear layers and GELU on row-major f32 buffers, forward and backward.
//!
//! A matrix of `rows × cols` is a slice of `rows·cols` values, row after row; a linear layer's
//! weight is `[out, in]` as PyTorch stores it, so its forward is `y = x·Wᵀ + b`.

use super::buffers::Buffers;
use llb_types::fastmath::{exp_nonpositive, normal_cdf};
use llb_types::gemm::{MatMut, MatRef, Threads, gemm};
use rayon::prelude::*;

/// Elements per parallel work item of the element-wise passes.
const CHUNK: usize = 1 << 14;

/// `x·Wᵀ + b` for `x` of `rows × w_in` and `w` of `w_out × w_in`: `rows × w_out`.
///
/// The `gemm` crate reads a transposed right-hand side slowly when the inner dimension is the
/// long one (measured: 110–115 GFLOP/s against about 200 for `[2048 × 1536]·[1536 × 384]` on
/// two cores), so those weights are transposed into a contiguous copy first; the bias is
/// written into the output and the product accumulated onto it.
pub(super) fn linear(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    rows: usize,
    buffers: &mut Buffers,
) -> Vec<f32> {
    let out = b.len();
    let inp = w.len() / out;
    let mut y = buffers.take(rows * out);
    y.par_chunks_mut(out * (CHUNK / out).max(1)).for_each(|rows| {
        rows.chunks_mut(out).for_each(|row| row.copy_from_slice(b));
    });
    let x = MatRef::rows(x, rows, inp, inp);
    if inp > out {
        let mut w_t = buffers.take(inp * out);
        transpose(w, out, inp, &mut w_t);
        let w_t_view = MatRef::rows(&w_t, inp, out, out);
        gemm(MatMut::new(&mut y, rows, out, out), x, w_t_view, true, Threads::Pool);
        buffers.give(w_t);
    } else {
        let w_t_view = MatRef::new(w, inp, out, 1, inp);
        gemm(MatMut::new(&mut y, rows, out, out), x, w_t_view, true, Threads::Pool);
    }
    y
}

/// Writes the `cols × rows` transpose of a row-major `rows × cols` matrix into `t`, in
/// cache-sized tiles.
fn transpose(a: &[f32], rows: usize, cols: usize, t: &mut [f32]) {
    const TILE: usize = 32;
    t.par_chunks_mut((rows * TILE).max(1)).enumerate().for_each(|(block, dst)| {
        let c0 = block * TILE;
        let width = dst.len() / rows;
        for r0 in (0..rows).step_by(TILE) {
            for c in c0..c0 + width {
                for r in r0..(r0 + TILE).min(rows) {
                    dst[(c - c0) * rows + r] = a[r * cols + c];
                }
            }
        }
    });
}

/// Gradients of [`linear`]: from the input `x` (`rows × in`) and the output gradient `dy`
/// (`rows × out`), returns `dx` (when `need_dx`), `dW` and `db`.
pub(super) fn linear_backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    rows: usize,
    need_dx: bool,
    buffers: &mut Buffers,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let out = dy.len() / rows;
    let inp = w.len() / out;
    let dx = need_dx.then(|| {
        let mut dx = buffers.take(rows * inp);
        gemm(
            MatMut::new(&mut dx, rows, inp, inp),
            MatRef::rows(dy, rows, out, out),
            MatRef::rows(w, out, inp, inp),
            false,
            Threads::Pool,
        );
        dx
    });
    let mut dw = buffers.take(out * inp);
    gemm(
        MatMut::new(&mut dw, out, inp, inp),
        MatRef::new(dy, out, rows, 1, out),
        MatRef::rows(x, rows, inp, inp),
        false,
        Threads::Pool,
    );
    // Column sums as a product with a row of ones: one pass, in a fixed order.
    let mut ones = buffers.take(rows);
    ones.fill(1.0);
    let mut db = buffers.take(out);
    gemm(
        MatMut::new(&mut db, 1, out, out),
        MatRef::rows(&ones, 1, rows, rows),
        MatRef::rows(dy, rows, out, out),
        false,
        Threads::Pool,
    );
    buffers.give(ones);
    (dx, dw, db)
}

/// `gelu(x) = x·Φ(x)` of every element, with `Φ(x)` (what the backward pass needs).
pub(super) fn gelu(x: &[f32], buffers: &mut Buffers) -> (Vec<f32>, Vec<f32>) {
    let (mut y, mut cdf) = (buffers.take(x.len()), buffers.take(x.len()));
    y.par_chunks_mut(CHUNK).zip(cdf.par_chunks_mut(CHUNK)).zip(x.par_chunks(CHUNK)).for_each(
        |((y, cdf), x)| {
            for ((y, cdf), &x) in y.iter_mut().zip(cdf.iter_mut()).zip(x) {
                *cdf = normal_cdf(x);
                *y = x * *cdf;
            }
        },
    );
    (y, cdf)
}

/// `dy ← dy · gelu'(x)` with `gelu'(x) = Φ(x) + x·φ(x)`, from `x` and the forward's `Φ(x)`.
pub(super) fn gelu_backward_in_place(dy: &mut [f32], x: &[f32], cdf: &[f32]) {
    let inv_sqrt_2pi = 0.5 * std::f32::consts::FRAC_2_SQRT_PI * std::f32::consts::FRAC_1_SQRT_2;
    dy.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK).zip(cdf.par_chunks(CHUNK))).for_each(
        |(dy, (x, cdf))| {
            for ((dy, &x), &cdf) in dy.iter_mut().zip(x).zip(cdf) {
                *dy *= cdf + x * exp_nonpositive(-0.5 * x * x) * inv_sqrt_2pi;
            }
        },
    );
}

/// `a ← a ⊙ b`, element-wise.
pub(super) fn mul_in_place(a: &mut [f32], b: &[f32]) {
    a.par_chunks_mut(CHUNK).zip(b.par_chunks(CHUNK)).for_each(|(a, b)| {
        a.iter_mut().zip(b).for_each(|(a, b)| *a *= b);
    });
}

/// `a ← a + b`, element-wise.
pub(super) fn add_in_place(a: &mut [f32], b: &[f32]) {
    a.par_chunks_mut(CHUNK).zip(b.par_chunks(CHUNK)).for_each(|(a, b)| {
        a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_and_its_gradients_match_direct_sums() {
        // Both weight layouts: read transposed in place (in ≤ out) and copied (in > out), the
        // copy with partial transpose tiles.
        for (rows, inp, out) in [(5, 3, 4), (7, 45, 33)] {
            check_linear(rows, inp, out);
        }
    }

    fn check_linear(rows: usize, inp: usize, out: usize) {
        let x: Vec<f32> = (0..rows * inp).map(|i| (i as f32 * 0.7).sin()).collect();
        let w: Vec<f32> = (0..out * inp).map(|i| (i as f32 * 0.3).cos()).collect();
        let b: Vec<f32> = (0..out).map(|i| i as f32 * 0.1).collect();
        let dy: Vec<f32> = (0..rows * out).map(|i| (i as f32 * 1.1).sin()).collect();
        // Spare buffers of every size the calls take, poisoned: each must be overwritten.
        let mut buffers = Buffers::default();
        for len in [rows * out, rows * inp, out * inp, out, rows] {
            buffers.give(vec![f32::NAN; len]);
        }
        let y = linear(&x, &w, &b, rows, &mut buffers);
        let (dx, dw, db) = linear_backward(&x, &w, &dy, rows, true, &mut buffers);
        let dx = dx.expect("asked for dx");
        for r in 0..rows {
            for o in 0..out {
                let want = b[o] + (0..inp).map(|i| x[r * inp + i] * w[o * inp + i]).sum::<f32>();
                assert!((y[r * out + o] - want).abs() < 1e-4 * (1.0 + want.abs()));
            }
            for i in 0..inp {
                let want: f32 = (0..out).map(|o| dy[r * out + o] * w[o * inp + i]).sum();
                assert!((dx[r * inp + i] - want).abs() < 1e-4 * (1.0 + want.abs()));
            }
        }
        for o in 0..out {
            let want: f32 = (0..rows).map(|r| dy[r * out + o]).sum();
            assert!((db[o] - want).abs() < 1e-4 * (1.0 + want.abs()));
            for i in 0..inp {
                let want: f32 = (0..rows).map(|r| dy[r * out + o] * x[r * inp + i]).sum();
                assert!((dw[o * inp + i] - want).abs() < 1e-4 * (1.0 + want.abs()));
            }
        }
    }

    #[test]
    fn gelu_matches_f64_and_its_derivative_a_central_difference() {
        let xs = [-3.0f32, -0.7, 0.0, 0.4, 2.5];
        let mut buffers = Buffers::default();
        buffers.give(vec![f32::NAN; xs.len()]);
        buffers.give(vec![f32::NAN; xs.len()]);
        let (y, cdf) = gelu(&xs, &mut buffers);
        let exact = |x: f64| 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
        let mut dy = vec![1f32; xs.len()];
        gelu_backward_in_place(&mut dy, &xs, &cdf);
        for (i, &x) in xs.iter().enumerate() {
            assert!((f64::from(y[i]) - exact(f64::from(x))).abs() < 1e-6, "gelu({x})");
            let h = 1e-3;
            let numeric = (exact(f64::from(x) + h) - exact(f64::from(x) - h)) / (2.0 * h);
            assert!((f64::from(dy[i]) - numeric).abs() < 1e-5, "gelu'({x})");
        }
    }
}
