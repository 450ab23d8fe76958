//! PatchCore's patch aggregation: local 3×3 neighbourhoods, deeper maps upsampled to the first
//! map's grid, channel pooling per layer and across layers.
//!
//! What is implemented, per layer `i` with map `[B, C_i, h_i, w_i]`:
//! 1. Local neighbourhood ([`LocalPooling`]): either the 3×3 average with stride 1 and zero
//!    padding 1, dividing by 9 everywhere (`torch.nn.AvgPool2d(3, 1, 1)`, whose
//!    `count_include_pad=True` default anomalib uses), or the 3×3 unfold of the original code
//!    (`PatchMaker.patchify`: `torch.nn.Unfold(3, padding=1)`, `C_i·9` values per position in
//!    `[C, 3, 3]` order).
//! 2. For `i > 0`: bilinear resampling of every channel to the first map's grid `(h_0, w_0)`,
//!    `align_corners=False` (`F.interpolate(..., mode="bilinear")`).
//! 3. Per-layer channel pooling (`Preprocessing`/`MeanMapper`): `adaptive_avg_pool1d` of each
//!    position's feature vector to `pre_dim` values, when `pre_dim` is set.
//! 4. Concatenation of the layers in order, then `adaptive_avg_pool1d` of the concatenated
//!    vector to `target_dim` values (`Aggregator`), when `target_dim` is set.
//!
//! Steps 3 and 4 are linear, so they are applied as one sparse matrix per layer (`P_i · Q_i`,
//! with `Q_i` the rows of the final pooling that fall on layer `i`'s block, composed in f64),
//! and before step 2, which they commute with (see [`PatchAggregator::forward`]).
//! `adaptive_avg_pool1d(L → n)` averages bin `k` over `[⌊k·L/n⌋, ⌈(k+1)·L/n⌉)`.

use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor};

use crate::{Error, Result};

/// How each position's 3×3 neighbourhood is combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LocalPooling {
    /// 3×3 mean with zero padding counted (`AvgPool2d(3, 1, 1)`): `C` values per position.
    Average3x3,
    /// 3×3 unfold with zero padding (original PatchCore): `9·C` values per position.
    Unfold3x3,
}

/// Configuration of [`PatchAggregator`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchAggregatorConfig {
    /// The local neighbourhood operation.
    pub local_pooling: LocalPooling,
    /// Per-layer channel pooling target (`pretrain_embed_dimension`); `None` keeps each layer's
    /// values.
    pub pre_dim: Option<usize>,
    /// Final pooling target over the concatenated layers (`target_embed_dimension`); `None`
    /// keeps the concatenation.
    pub target_dim: Option<usize>,
}

impl PatchAggregatorConfig {
    /// The original PatchCore code (amazon-science/patchcore-inspection, Roth et al., CVPR
    /// 2022): 3×3 unfold, `pretrain_embed_dimension = target_embed_dimension = 1024`.
    pub fn patchcore_original() -> Self {
        Self { local_pooling: LocalPooling::Unfold3x3, pre_dim: Some(1024), target_dim: Some(1024) }
    }

    /// anomalib's `PatchcoreModel`: 3×3 average, upsampling, concatenation, no channel pooling.
    pub fn anomalib() -> Self {
        Self { local_pooling: LocalPooling::Average3x3, pre_dim: None, target_dim: None }
    }

    /// 3×3 average (as anomalib) followed by the original code's two channel poolings to
    /// `dim` (e.g. 1024): smaller patches than the unfold at the same output size.
    pub fn average_pooled(dim: usize) -> Self {
        Self { local_pooling: LocalPooling::Average3x3, pre_dim: Some(dim), target_dim: Some(dim) }
    }
}

/// Turns per-layer feature maps into one patch-feature map `[B, D, h_0, w_0]` (see the module
/// documentation for the exact steps). Deterministic; f32 output.
#[derive(Debug)]
pub struct PatchAggregator {
    config: PatchAggregatorConfig,
    /// The pooling matrices of the last layer widths seen (they depend on nothing else).
    cache: Mutex<Option<(Vec<usize>, LayerPoolings)>>,
}

impl Clone for PatchAggregator {
    fn clone(&self) -> Self {
        Self { config: self.config.clone(), cache: Mutex::new(None) }
    }
}

impl PatchAggregator {
    /// Checks the configuration.
    ///
    /// # Errors
    /// [`Error::Config`] when `pre_dim` or `target_dim` is zero.
    pub fn new(config: &PatchAggregatorConfig) -> Result<Self> {
        for (field, value) in [("pre_dim", config.pre_dim), ("target_dim", config.target_dim)] {
            if value == Some(0) {
                return Err(Error::Config {
                    field,
                    value: "0".into(),
                    reason: "must be positive".into(),
                });
            }
        }
        Ok(Self { config: config.clone(), cache: Mutex::new(None) })
    }

    /// The output dimension for layers with `channels` channels.
    pub fn output_dim(&self, channels: &[usize]) -> usize {
        let per_layer = |c: usize| match self.config.local_pooling {
            LocalPooling::Average3x3 => c,
            LocalPooling::Unfold3x3 => 9 * c,
        };
        let concat: usize =
            channels.iter().map(|&c| self.config.pre_dim.unwrap_or(per_layer(c))).sum();
        self.config.target_dim.unwrap_or(concat)
    }

    /// Aggregates `maps` (each `[B, C_i, h_i, w_i]`, same `B`) into `[B, D, h_0, w_0]` f32, on
    /// the first map's device.
    ///
    /// The channel poolings run on the host as sparse sums (each input value feeds at most a
    /// few output bins) at each layer's own resolution, and the pooled maps are then upsampled:
    /// channel pooling and bilinear resampling are linear and act on different axes, so this
    /// equals resampling first, at a fraction of the cost.
    ///
    /// # Errors
    /// [`Error::InputShape`] for an empty list, a map that is not 4-D, a zero size, or a batch
    /// size that differs from the first map's.
    pub fn forward(&self, maps: &[Tensor]) -> Result<Tensor> {
        let first = maps.first().ok_or_else(|| Error::InputShape {
            expected: "one or more feature maps [B, C, h, w]".into(),
            got: Vec::new(),
        })?;
        let (b, _, h0, w0) = dims4(first)?;
        let device = first.device();
        let mut locals = Vec::with_capacity(maps.len());
        for map in maps {
            let (bi, _, _, _) = dims4(map)?;
            if bi != b {
                return Err(Error::InputShape {
                    expected: format!("batch size {b} like the first map"),
                    got: map.dims().to_vec(),
                });
            }
            locals.push(self.local(&map.to_dtype(DType::F32)?.to_device(&Device::Cpu)?)?);
        }
        let widths: Vec<usize> =
            locals.iter().map(|x| x.dim(1)).collect::<candle_core::Result<_>>()?;
        let mats = self.cached_pooling_matrices(&widths);
        let mut out: Option<Tensor> = None;
        for (x, m) in locals.iter().zip(mats.iter()) {
            let y = match m {
                Some(m) => m.apply(x)?,
                None => x.clone(),
            };
            let y =
                if y.dims()[2..] == [h0, w0] { y } else { y.upsample_bilinear2d(h0, w0, false)? };
            // With a final pooling each layer's matrix maps to the whole output: sum; without
            // one, the layers' (possibly pooled) values are concatenated.
            out = Some(match out {
                None => y,
                Some(acc) if self.config.target_dim.is_some() => (acc + y)?,
                Some(acc) => Tensor::cat(&[acc, y], 1)?,
            });
        }
        let out = out.ok_or_else(|| Error::InputShape {
            expected: "a feature map".into(),
            got: Vec::new(),
        })?;
        Ok(out.to_device(device)?)
    }

    fn local(&self, x: &Tensor) -> Result<Tensor> {
        let padded = x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
        Ok(match self.config.local_pooling {
            LocalPooling::Average3x3 => padded.avg_pool2d_with_stride(3, 1)?,
            LocalPooling::Unfold3x3 => {
                let (b, c, h, w) = x.dims4()?;
                let mut taps = Vec::with_capacity(9);
                for dy in 0..3 {
                    for dx in 0..3 {
                        taps.push(padded.narrow(2, dy, h)?.narrow(3, dx, w)?);
                    }
                }
                // [B, C, 9, h, w] -> [B, 9·C, h, w] in [C, 3, 3] order, as torch's Unfold.
                Tensor::stack(&taps, 2)?.reshape((b, c * 9, h, w))?
            }
        })
    }

    fn cached_pooling_matrices(&self, widths: &[usize]) -> LayerPoolings {
        // A poisoned lock only means another thread panicked mid-update: recompute.
        if let Ok(guard) = self.cache.lock()
            && let Some((w, mats)) = guard.as_ref()
            && w.as_slice() == widths
        {
            return Arc::clone(mats);
        }
        let mats = Arc::new(self.pooling_matrices(widths));
        if let Ok(mut guard) = self.cache.lock() {
            *guard = Some((widths.to_vec(), Arc::clone(&mats)));
        }
        mats
    }

    /// One sparse matrix per layer mapping its `width` values to its share of the output, or
    /// `None` for a layer whose values pass unchanged.
    fn pooling_matrices(&self, widths: &[usize]) -> Vec<Option<SparsePooling>> {
        let pre_out: Vec<usize> =
            widths.iter().map(|&c| self.config.pre_dim.unwrap_or(c)).collect();
        let Some(target) = self.config.target_dim else {
            return widths
                .iter()
                .map(|&c| {
                    self.config
                        .pre_dim
                        .map(|p| SparsePooling::from_dense(&adaptive_pool_matrix(c, p), c, p))
                })
                .collect();
        };
        let total: usize = pre_out.iter().sum();
        let q = adaptive_pool_matrix(total, target);
        let mut offset = 0;
        let mut out = Vec::with_capacity(widths.len());
        for (&c, &p) in widths.iter().zip(&pre_out) {
            // Rows offset..offset + p of Q, composed with P_i when there is one.
            let q_i = &q[offset * target..(offset + p) * target];
            let combined = match self.config.pre_dim {
                Some(_) => matmul(&adaptive_pool_matrix(c, p), c, p, q_i, target),
                None => q_i.to_vec(),
            };
            out.push(Some(SparsePooling::from_dense(&combined, c, target)));
            offset += p;
        }
        out
    }
}

/// One optional pooling per layer, shared between calls.
type LayerPoolings = Arc<Vec<Option<SparsePooling>>>;

/// A channel-mixing matrix `[inputs, outputs]` kept as its non-zero entries.
#[derive(Clone, Debug)]
struct SparsePooling {
    /// `(input channel, output channel, weight)`, sorted by input channel.
    entries: Vec<(usize, usize, f32)>,
    outputs: usize,
}

impl SparsePooling {
    fn from_dense(m: &[f64], inputs: usize, outputs: usize) -> Self {
        let mut entries = Vec::new();
        for j in 0..inputs {
            for k in 0..outputs {
                let w = m[j * outputs + k];
                if w != 0.0 {
                    entries.push((j, k, w as f32));
                }
            }
        }
        Self { entries, outputs }
    }

    /// `[B, inputs, h, w]` (host) -> `[B, outputs, h, w]` (host).
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let plane = h * w;
        let input = x.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; b * self.outputs * plane];
        for bi in 0..b {
            let src = &input[bi * c * plane..(bi + 1) * c * plane];
            let dst = &mut out[bi * self.outputs * plane..(bi + 1) * self.outputs * plane];
            for &(j, k, weight) in &self.entries {
                let s = &src[j * plane..(j + 1) * plane];
                for (o, &v) in dst[k * plane..(k + 1) * plane].iter_mut().zip(s) {
                    *o += weight * v;
                }
            }
        }
        Ok(Tensor::from_vec(out, (b, self.outputs, h, w), &Device::Cpu)?)
    }
}

fn dims4(x: &Tensor) -> Result<(usize, usize, usize, usize)> {
    match *x.dims() {
        [b, c, h, w] if b > 0 && c > 0 && h > 0 && w > 0 => Ok((b, c, h, w)),
        _ => Err(Error::InputShape {
            expected: "[B, C, h, w] with positive sizes".into(),
            got: x.dims().to_vec(),
        }),
    }
}

/// The `[len, out]` row-major matrix of `adaptive_avg_pool1d(len → out)`.
pub(crate) fn adaptive_pool_matrix(len: usize, out: usize) -> Vec<f64> {
    let mut m = vec![0f64; len * out];
    for k in 0..out {
        let start = k * len / out;
        let end = ((k + 1) * len).div_ceil(out);
        let weight = 1.0 / (end - start) as f64;
        for j in start..end {
            m[j * out + k] = weight;
        }
    }
    m
}

/// `[n, k] × [k, m]` row-major, f64.
fn matmul(a: &[f64], n: usize, k: usize, b: &[f64], m: usize) -> Vec<f64> {
    let mut out = vec![0f64; n * m];
    for i in 0..n {
        for l in 0..k {
            let v = a[i * k + l];
            if v != 0.0 {
                for (o, &bv) in out[i * m..(i + 1) * m].iter_mut().zip(&b[l * m..(l + 1) * m]) {
                    *o += v * bv;
                }
            }
        }
    }
    out
}
