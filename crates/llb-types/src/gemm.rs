//! A bounds-checked f32 GEMM over strided views of slices, on the `gemm` crate (the kernel
//! candle's CPU `matmul` uses). The ViT's CPU path uses it to read attention heads in place and
//! accumulate into the residual stream; PatchCore's search to fold bank tiles into a running
//! nearest neighbour without a distance matrix.

use gemm::Parallelism;

/// A read-only `rows × cols` matrix whose element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

/// Whether the largest index a `rows × cols` view with strides `rs`, `cs` touches lies in `len`.
fn fits(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    let last = (rows - 1).checked_mul(rs).and_then(|a| (cols - 1).checked_mul(cs)?.checked_add(a));
    last.is_some_and(|l| l < len)
}

impl<'a> MatRef<'a> {
    /// A view of `data`; panics if it would reach past the end of `data` (a bug in the caller,
    /// whose shapes come from validated inputs).
    pub fn new(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        assert!(fits(data.len(), rows, cols, rs, cs), "matrix view out of bounds");
        Self { data, rows, cols, rs, cs }
    }

    /// A row-major view with row stride `rs`.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize, rs: usize) -> Self {
        Self::new(data, rows, cols, rs, 1)
    }
}

/// A writable row-major `rows × cols` matrix whose element `(i, j)` is `data[i·rs + j]`,
/// `rs ≥ cols` so that no two elements share memory.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    rs: usize,
}

impl<'a> MatMut<'a> {
    /// A view of `data`; panics if it would reach past the end of `data` or overlap itself.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize, rs: usize) -> Self {
        assert!(rows <= 1 || rs >= cols, "overlapping matrix rows");
        assert!(fits(data.len(), rows, cols, rs, 1), "matrix view out of bounds");
        Self { data, rows, cols, rs }
    }
}

/// How one product runs: on the calling thread, or split over `n` rayon threads.
#[derive(Clone, Copy, Debug)]
pub enum Threads {
    /// The calling thread only (inside an already parallel loop).
    One,
    /// The global rayon pool's threads.
    Pool,
}

/// `dst = a·b` (or `dst += a·b` when `accumulate`). Panics on mismatched shapes (a bug in the
/// caller).
pub fn gemm(dst: MatMut<'_>, a: MatRef<'_>, b: MatRef<'_>, accumulate: bool, threads: Threads) {
    assert!(
        a.rows == dst.rows && b.cols == dst.cols && a.cols == b.rows,
        "gemm shapes: [{}x{}]·[{}x{}] into [{}x{}]",
        a.rows,
        a.cols,
        b.rows,
        b.cols,
        dst.rows,
        dst.cols
    );
    if dst.rows == 0 || dst.cols == 0 {
        return;
    }
    if a.cols == 0 {
        if !accumulate {
            for r in 0..dst.rows {
                dst.data[r * dst.rs..r * dst.rs + dst.cols].fill(0.0);
            }
        }
        return;
    }
    let parallelism = match threads {
        Threads::One => Parallelism::None,
        Threads::Pool => match rayon::current_num_threads() {
            0 | 1 => Parallelism::None,
            n => Parallelism::Rayon(n),
        },
    };
    let isz = |v: usize| v as isize;
    #[allow(unsafe_code, reason = "gemm::gemm takes raw pointers and strides")]
    // SAFETY: the three views were checked on construction to address only elements inside
    // their slices (`fits`), the destination's rows do not overlap (`rs ≥ cols`), `dst.data` is
    // borrowed mutably so it aliases neither input, and the shapes agree (asserted above), so
    // gemm reads `a.rows × a.cols` and `b.rows × b.cols` in-bounds elements and writes
    // `dst.rows × dst.cols` distinct in-bounds elements. With `read_dst == false` gemm ignores
    // the previous contents of `dst` (alpha is unused); strides fit in `isize` as the slices do.
    unsafe {
        gemm::gemm(
            dst.rows,
            dst.cols,
            a.cols,
            dst.data.as_mut_ptr(),
            1,
            isz(dst.rs),
            accumulate,
            a.data.as_ptr(),
            isz(a.cs),
            isz(a.rs),
            b.data.as_ptr(),
            isz(b.cs),
            isz(b.rs),
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &MatRef<'_>, b: &MatRef<'_>) -> Vec<f32> {
        let mut out = vec![0.0_f32; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                let mut s = 0.0_f64;
                for k in 0..a.cols {
                    s += f64::from(a.data[i * a.rs + k * a.cs])
                        * f64::from(b.data[k * b.rs + j * b.cs]);
                }
                out[i * b.cols + j] = s as f32;
            }
        }
        out
    }

    #[test]
    fn strided_products_match_a_naive_loop() {
        let vals: Vec<f32> = (0..4000).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
        // a: 7×5 inside rows of 9; b: 5×6, the transpose of a 6×5 block with row stride 11.
        let a = MatRef::rows(&vals, 7, 5, 9);
        let b = MatRef::new(&vals[100..], 5, 6, 1, 11);
        let want = naive(&a, &b);
        for threads in [Threads::One, Threads::Pool] {
            // Written into columns 3..9 of rows of 10, then accumulated once more.
            let mut buf = vec![1.0_f32; 7 * 10];
            gemm(MatMut::new(&mut buf[3..], 7, 6, 10), a, b, false, threads);
            for i in 0..7 {
                for j in 0..10 {
                    let got = buf[i * 10 + j];
                    let exp = if (3..9).contains(&j) { want[i * 6 + j - 3] } else { 1.0 };
                    assert!((got - exp).abs() < 1e-4, "({i},{j}): {got} vs {exp}");
                }
            }
            gemm(MatMut::new(&mut buf[3..], 7, 6, 10), a, b, true, threads);
            for i in 0..7 {
                for j in 3..9 {
                    let exp = 2.0 * want[i * 6 + j - 3];
                    assert!((buf[i * 10 + j] - exp).abs() < 1e-4);
                }
            }
        }
    }

    #[test]
    fn views_past_the_end_do_not_fit() {
        assert!(fits(20, 4, 5, 5, 1));
        assert!(!fits(20, 4, 5, 6, 1));
        assert!(!fits(20, 5, 4, 1, 6));
        assert!(fits(0, 0, 3, 100, 1));
        assert!(!fits(20, usize::MAX, 2, 2, 1), "overflow is out of bounds");
    }
}
