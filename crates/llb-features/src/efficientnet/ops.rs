//! Convolution building blocks with batch norm folded in at load time, TF "SAME" padding and a
//! direct depthwise kernel (candle runs grouped convolutions one group at a time).

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::Result;

/// Padding `(before, after)` of TF "SAME" for one spatial axis: the output has `ceil(size /
/// stride)` positions and the odd extra pixel goes after (bottom/right).
pub(crate) fn tf_same_padding(size: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2)
}

/// What follows the convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Activation {
    /// Nothing.
    Identity,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `max(x, 0)`.
    Relu,
}

impl Activation {
    fn apply(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Identity => x.clone(),
            Self::Relu6 => x.clamp(0f32, 6f32)?,
            Self::Relu => x.relu()?,
        })
    }

    fn scalar(self, v: f32) -> f32 {
        match self {
            Self::Identity => v,
            Self::Relu6 => v.clamp(0.0, 6.0),
            Self::Relu => v.max(0.0),
        }
    }
}

/// How the convolution pads its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Padding {
    /// TF "SAME", computed per input size (asymmetric for even sizes and stride 2).
    TfSame,
    /// Symmetric zero padding of this many pixels (PyTorch `padding=`).
    Symmetric(usize),
}

/// A bias-free convolution followed by an eval-mode batch norm, folded into one convolution
/// with bias: `w' = w * γ / sqrt(σ² + eps)`, `b' = β - μ * γ / sqrt(σ² + eps)`.
#[derive(Clone, Debug)]
pub(crate) struct ConvBn {
    /// `[O, I / groups, k, k]`.
    weight: Tensor,
    /// `[O]`.
    bias: Tensor,
    /// The weights on the host, for the depthwise kernel and the pointwise epilogue.
    host: Option<HostWeights>,
    kernel: usize,
    stride: usize,
    groups: usize,
    padding: Padding,
    activation: Activation,
}

/// Folded depthwise weights `[O, k, k]` (empty for a pointwise convolution) and bias `[O]` on
/// the host.
#[derive(Clone)]
struct HostWeights {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl std::fmt::Debug for HostWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostWeights({} weights, {} biases)", self.weight.len(), self.bias.len())
    }
}

/// The shape of a [`ConvBn`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvSpec {
    pub(crate) in_channels: usize,
    pub(crate) out_channels: usize,
    pub(crate) kernel: usize,
    pub(crate) stride: usize,
    /// 1 for a full convolution, `in_channels` for a depthwise one.
    pub(crate) groups: usize,
    pub(crate) padding: Padding,
    pub(crate) activation: Activation,
    pub(crate) bn_eps: f64,
}

impl ConvBn {
    /// Reads `conv` `weight` and the batch norm `bn` (`weight`, `bias`, `running_mean`,
    /// `running_var`) and folds them.
    pub(crate) fn new(conv: VarBuilder, bn: VarBuilder, spec: ConvSpec) -> Result<Self> {
        let ConvSpec { in_channels, out_channels: o, kernel: k, groups, .. } = spec;
        let weight = conv.get((o, in_channels / groups, k, k), "weight")?.to_dtype(DType::F64)?;
        let gamma = bn.get(o, "weight")?.to_dtype(DType::F64)?;
        let beta = bn.get(o, "bias")?.to_dtype(DType::F64)?;
        let mean = bn.get(o, "running_mean")?.to_dtype(DType::F64)?;
        let var = bn.get(o, "running_var")?.to_dtype(DType::F64)?;
        let scale = (gamma / (var + spec.bn_eps)?.sqrt()?)?;
        let bias = (beta - (mean * &scale)?)?.to_dtype(DType::F32)?;
        let weight = weight.broadcast_mul(&scale.reshape((o, 1, 1, 1))?)?.to_dtype(DType::F32)?;
        let host = if groups > 1 || k == 1 {
            let weight =
                if groups > 1 { weight.flatten_all()?.to_vec1::<f32>()? } else { Vec::new() };
            Some(HostWeights { weight, bias: bias.to_vec1::<f32>()? })
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            host,
            kernel: k,
            stride: spec.stride,
            groups,
            padding: spec.padding,
            activation: spec.activation,
        })
    }

    /// Applies the convolution, bias and activation to `[B, C, H, W]` f32.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let (pad_h, pad_w) = match self.padding {
            Padding::TfSame => (
                tf_same_padding(h, self.kernel, self.stride),
                tf_same_padding(w, self.kernel, self.stride),
            ),
            Padding::Symmetric(p) => ((p, p), (p, p)),
        };
        if let (Some(host), Device::Cpu, true) = (&self.host, x.device(), self.groups > 1) {
            return self.depthwise_cpu(x, &host.weight, &host.bias, pad_h, pad_w);
        }
        if self.kernel == 1 && self.stride == 1 && self.groups == 1 {
            let (b, c, h, w) = x.dims4()?;
            let o = self.weight.dim(0)?;
            let wm = self.weight.reshape((o, c))?;
            if let (Some(host), Device::Cpu) = (&self.host, x.device()) {
                // One plain matrix product per image, then bias and activation in one pass.
                let mut out = Vec::with_capacity(b * o * h * w);
                for i in 0..b {
                    let y = wm.matmul(&x.get(i)?.reshape((c, h * w))?)?;
                    out.extend(y.flatten_all()?.to_vec1::<f32>()?);
                }
                for (plane, &bias) in out.chunks_mut(h * w).zip(host.bias.iter().cycle()) {
                    for v in plane {
                        *v = self.activation.scalar(*v + bias);
                    }
                }
                return Ok(Tensor::from_vec(out, (b, o, h, w), x.device())?);
            }
            let y = wm.broadcast_matmul(&x.reshape((b, c, h * w))?)?;
            let y = y.broadcast_add(&self.bias.reshape((1, o, 1))?)?.reshape((b, o, h, w))?;
            return self.activation.apply(&y);
        }
        let x = x.pad_with_zeros(2, pad_h.0, pad_h.1)?.pad_with_zeros(3, pad_w.0, pad_w.1)?;
        let y = x.conv2d(&self.weight, 0, self.stride, 1, self.groups)?;
        let y = y.broadcast_add(&self.bias.reshape((1, (), 1, 1))?)?;
        self.activation.apply(&y)
    }

    /// A direct depthwise convolution on the host, one channel plane at a time, split over the
    /// available threads.
    fn depthwise_cpu(
        &self,
        x: &Tensor,
        weight: &[f32],
        bias: &[f32],
        pad_h: (usize, usize),
        pad_w: (usize, usize),
    ) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let (k, s) = (self.kernel, self.stride);
        let (hp, wp) = (h + pad_h.0 + pad_h.1, w + pad_w.0 + pad_w.1);
        let (ho, wo) = ((hp - k) / s + 1, (wp - k) / s + 1);
        let input = x.flatten_all()?.to_vec1::<f32>()?;
        let mut output = vec![0f32; b * c * ho * wo];
        let planes = b * c;
        let threads =
            std::thread::available_parallelism().map_or(1, |n| n.get()).min(planes).max(1);
        let per = planes.div_ceil(threads);
        let act = self.activation;
        std::thread::scope(|scope| {
            for (t, out_chunk) in output.chunks_mut(per * ho * wo).enumerate() {
                let input = &input;
                scope.spawn(move || {
                    let mut padded = vec![0f32; hp * wp];
                    for (j, out_plane) in out_chunk.chunks_mut(ho * wo).enumerate() {
                        let plane = t * per + j;
                        let ch = plane % c;
                        let src = &input[plane * h * w..(plane + 1) * h * w];
                        for y in 0..h {
                            let row = (y + pad_h.0) * wp + pad_w.0;
                            padded[row..row + w].copy_from_slice(&src[y * w..(y + 1) * w]);
                        }
                        let wk = &weight[ch * k * k..(ch + 1) * k * k];
                        out_plane.fill(bias[ch]);
                        for oy in 0..ho {
                            let out_row = &mut out_plane[oy * wo..(oy + 1) * wo];
                            for ky in 0..k {
                                let in_row = &padded[(oy * s + ky) * wp..(oy * s + ky + 1) * wp];
                                for kx in 0..k {
                                    let wv = wk[ky * k + kx];
                                    for (ox, o) in out_row.iter_mut().enumerate() {
                                        *o += wv * in_row[ox * s + kx];
                                    }
                                }
                            }
                        }
                        for o in out_plane.iter_mut() {
                            *o = act.scalar(*o);
                        }
                    }
                });
            }
        });
        Ok(Tensor::from_vec(output, (b, c, ho, wo), x.device())?)
    }
}

/// Global average pooling `[B, C, H, W] -> [B, C]`.
pub(crate) fn global_mean(x: &Tensor) -> Result<Tensor> {
    Ok(x.flatten_from(2)?.mean(D::Minus1)?)
}
