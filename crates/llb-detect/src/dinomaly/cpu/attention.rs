//! Linear attention with `φ(x) = elu(x) + 1` on row-major buffers, forward and backward.
//!
//! Per image and head, with `Q, K, V` of `n × d` read in place from the `qkv` rows
//! (`[q | k | v]`, heads side by side): `q = φ(Q)`, `k = φ(K)`, `kv = kᵀv`, `s = Σₙ kₙ`,
//! `zₙ = qₙ·s`, `o = (q·kv) / z`. The work is parallel over images; every product is a small
//! single-threaded GEMM.

use super::buffers::Buffers;
use llb_types::gemm::{MatMut, MatRef, Threads, gemm};
use rayon::prelude::*;

/// Shapes: `batch` images of `tokens` tokens, `channels` split into heads of `head_dim`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Dims {
    pub(super) batch: usize,
    pub(super) tokens: usize,
    pub(super) channels: usize,
    pub(super) head_dim: usize,
}

impl Dims {
    fn heads(self) -> usize {
        self.channels / self.head_dim
    }
}

/// What the backward pass needs, per image and head: `q`, `k` (`n × d`), `kv` (`d × d`), `s`
/// (`d`), `z` (`n`), stored image after image, head after head.
pub(super) struct Saved {
    q: Vec<f32>,
    k: Vec<f32>,
    kv: Vec<f32>,
    s: Vec<f32>,
    z: Vec<f32>,
}

#[inline]
fn phi(x: f32) -> f32 {
    // Both branches computed, then selected: the loop stays branch-free and vectorises (a
    // comparison, not `f32::min`, whose NaN rule blocks that).
    let negative = llb_types::fastmath::exp_nonpositive(if x < 0.0 { x } else { 0.0 });
    if x > 0.0 { x + 1.0 } else { negative }
}

/// `φ'` from `φ(x)`: 1 where `x > 0` (there `φ > 1`), `φ(x) = eˣ` elsewhere.
fn phi_derivative_from_value(value: f32) -> f32 {
    if value > 1.0 { 1.0 } else { value }
}

/// The mixed tokens `o` (`batch·tokens × channels`) of `qkv` (`batch·tokens × 3·channels`).
pub(super) fn forward(qkv: &[f32], dims: Dims, buffers: &mut Buffers) -> (Vec<f32>, Saved) {
    let Dims { batch, tokens: n, channels: c, head_dim: d } = dims;
    let heads = dims.heads();
    let mut o = buffers.take(batch * n * c);
    let mut saved = Saved {
        q: buffers.take(batch * heads * n * d),
        k: buffers.take(batch * heads * n * d),
        kv: buffers.take(batch * heads * d * d),
        s: buffers.take(batch * heads * d),
        z: buffers.take(batch * heads * n),
    };
    let per_image = o
        .par_chunks_mut(n * c)
        .zip(qkv.par_chunks(n * 3 * c))
        .zip(saved.q.par_chunks_mut(heads * n * d))
        .zip(saved.k.par_chunks_mut(heads * n * d))
        .zip(saved.kv.par_chunks_mut(heads * d * d))
        .zip(saved.s.par_chunks_mut(heads * d))
        .zip(saved.z.par_chunks_mut(heads * n));
    per_image.for_each(|((((((o, qkv), q), k), kv), s), z)| {
        for h in 0..heads {
            let q = &mut q[h * n * d..(h + 1) * n * d];
            let k = &mut k[h * n * d..(h + 1) * n * d];
            for t in 0..n {
                let row = &qkv[t * 3 * c..(t + 1) * 3 * c];
                for j in 0..d {
                    q[t * d + j] = phi(row[h * d + j]);
                    k[t * d + j] = phi(row[c + h * d + j]);
                }
            }
            let kv = &mut kv[h * d * d..(h + 1) * d * d];
            let v = MatRef::rows(&qkv[2 * c + h * d..], n, d, 3 * c);
            gemm(MatMut::new(kv, d, d, d), MatRef::new(k, d, n, 1, d), v, false, Threads::One);
            let s = &mut s[h * d..(h + 1) * d];
            s.fill(0.0);
            for t in 0..n {
                s.iter_mut().zip(&k[t * d..(t + 1) * d]).for_each(|(s, k)| *s += k);
            }
            let z = &mut z[h * n..(h + 1) * n];
            for t in 0..n {
                z[t] = q[t * d..(t + 1) * d].iter().zip(s.iter()).map(|(q, s)| q * s).sum();
            }
            gemm(
                MatMut::new(&mut o[h * d..], n, d, c),
                MatRef::rows(q, n, d, d),
                MatRef::rows(kv, d, d, d),
                false,
                Threads::One,
            );
            for t in 0..n {
                o[t * c + h * d..t * c + (h + 1) * d].iter_mut().for_each(|v| *v /= z[t]);
            }
        }
    });
    (o, saved)
}

impl Saved {
    /// Returns the buffers for reuse.
    pub(super) fn give_back(self, buffers: &mut Buffers) {
        for buffer in [self.q, self.k, self.kv, self.s, self.z] {
            buffers.give(buffer);
        }
    }
}

/// The gradient with respect to `qkv` from the gradient `d_o` of [`forward`]'s output `o`.
pub(super) fn backward(
    qkv: &[f32],
    o: &[f32],
    d_o: &[f32],
    saved: &Saved,
    dims: Dims,
    buffers: &mut Buffers,
) -> Vec<f32> {
    let Dims { batch, tokens: n, channels: c, head_dim: d } = dims;
    let heads = dims.heads();
    // Every value is written: the q and k columns in the last loop, v's by a GEMM.
    let mut dqkv = buffers.take(batch * n * 3 * c);
    dqkv.par_chunks_mut(n * 3 * c).enumerate().for_each(|(b, dqkv)| {
        let qkv = &qkv[b * n * 3 * c..(b + 1) * n * 3 * c];
        let (o, d_o) = (&o[b * n * c..(b + 1) * n * c], &d_o[b * n * c..(b + 1) * n * c]);
        let (mut dnum, mut dz) = (vec![0f32; n * d], vec![0f32; n]);
        let (mut dq, mut dk, mut dkv) = (vec![0f32; n * d], vec![0f32; n * d], vec![0f32; d * d]);
        for h in 0..heads {
            let unit = b * heads + h;
            let q = &saved.q[unit * n * d..(unit + 1) * n * d];
            let k = &saved.k[unit * n * d..(unit + 1) * n * d];
            let kv = &saved.kv[unit * d * d..(unit + 1) * d * d];
            let s = &saved.s[unit * d..(unit + 1) * d];
            let z = &saved.z[unit * n..(unit + 1) * n];
            // o = num / z: dnum = do / z, dz = −Σ do·o / z.
            for t in 0..n {
                let (g, out) = (&d_o[t * c + h * d..][..d], &o[t * c + h * d..][..d]);
                let mut acc = 0f32;
                for j in 0..d {
                    dnum[t * d + j] = g[j] / z[t];
                    acc += g[j] * out[j];
                }
                dz[t] = -acc / z[t];
            }
            // dq = dnum·kvᵀ + dz ⊗ s.
            let kv_t = MatRef::new(kv, d, d, 1, d);
            gemm(
                MatMut::new(&mut dq, n, d, d),
                MatRef::rows(&dnum, n, d, d),
                kv_t,
                false,
                Threads::One,
            );
            // dkv = qᵀ·dnum, ds = Σ dz·q.
            let q_t = MatRef::new(q, d, n, 1, d);
            gemm(
                MatMut::new(&mut dkv, d, d, d),
                q_t,
                MatRef::rows(&dnum, n, d, d),
                false,
                Threads::One,
            );
            let mut ds = vec![0f32; d];
            for t in 0..n {
                for j in 0..d {
                    dq[t * d + j] += dz[t] * s[j];
                    ds[j] += dz[t] * q[t * d + j];
                }
            }
            // dk = v·dkvᵀ + 1 ⊗ ds, dv = k·dkv.
            let v = MatRef::rows(&qkv[2 * c + h * d..], n, d, 3 * c);
            gemm(
                MatMut::new(&mut dk, n, d, d),
                v,
                MatRef::new(&dkv, d, d, 1, d),
                false,
                Threads::One,
            );
            gemm(
                MatMut::new(&mut dqkv[2 * c + h * d..], n, d, 3 * c),
                MatRef::rows(k, n, d, d),
                MatRef::rows(&dkv, d, d, d),
                false,
                Threads::One,
            );
            for t in 0..n {
                let row = &mut dqkv[t * 3 * c..(t + 1) * 3 * c];
                for j in 0..d {
                    let (iq, ik) = (t * d + j, t * d + j);
                    row[h * d + j] = dq[iq] * phi_derivative_from_value(q[iq]);
                    row[c + h * d + j] = (dk[ik] + ds[j]) * phi_derivative_from_value(k[ik]);
                }
            }
        }
    });
    dqkv
}
