//! The EfficientNet-Lite network (`efficientnet_pytorch` key names) and its [`Encoder`].

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::config::{
    EfficientNetLiteConfig, EfficientNetLiteEncoderConfig, HEAD_CHANNELS, MbConvSpec, STEM_CHANNELS,
};
use super::ops::{Activation, ConvBn, ConvSpec, Padding, global_mean};
use crate::{Encoder, Error, InputSpec, Result};

/// One inverted-residual block: optional 1×1 expansion, depthwise convolution, 1×1 projection,
/// identity skip when the shape is kept.
#[derive(Clone, Debug)]
struct MbConv {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    skip: bool,
}

impl MbConv {
    fn new(vb: VarBuilder, spec: &MbConvSpec, bn_eps: f64) -> Result<Self> {
        let hidden = spec.in_channels * spec.expand_ratio;
        let conv = |cin, cout, kernel, stride, groups, activation| ConvSpec {
            in_channels: cin,
            out_channels: cout,
            kernel,
            stride,
            groups,
            padding: Padding::TfSame,
            activation,
            bn_eps,
        };
        let expand = if spec.expand_ratio != 1 {
            let c = conv(spec.in_channels, hidden, 1, 1, 1, Activation::Relu6);
            Some(ConvBn::new(vb.pp("_expand_conv"), vb.pp("_bn0"), c)?)
        } else {
            None
        };
        let c = conv(hidden, hidden, spec.kernel, spec.stride, hidden, Activation::Relu6);
        let depthwise = ConvBn::new(vb.pp("_depthwise_conv"), vb.pp("_bn1"), c)?;
        let c = conv(hidden, spec.out_channels, 1, 1, 1, Activation::Identity);
        let project = ConvBn::new(vb.pp("_project_conv"), vb.pp("_bn2"), c)?;
        let skip = spec.stride == 1 && spec.in_channels == spec.out_channels;
        Ok(Self { expand, depthwise, project, skip })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = match &self.expand {
            Some(e) => e.forward(x)?,
            None => x.clone(),
        };
        let h = self.project.forward(&self.depthwise.forward(&h)?)?;
        Ok(if self.skip { (h + x)? } else { h })
    }
}

/// The ImageNet classification head: 1×1 convolution to 1280 channels, BN, ReLU6, global
/// average pooling, linear layer.
#[derive(Clone, Debug)]
struct Head {
    conv: ConvBn,
    fc_weight: Tensor,
    fc_bias: Tensor,
}

/// EfficientNet-Lite with batch norm folded into the convolutions (eval mode), f32.
///
/// Tensor names follow `efficientnet_pytorch`: `_conv_stem`, `_bn0`,
/// `_blocks.N.{_expand_conv,_bn0,_depthwise_conv,_bn1,_project_conv,_bn2}`, and for the head
/// `_conv_head`, `_bn1`, `_fc`.
#[derive(Clone, Debug)]
pub struct EfficientNetLite {
    config: EfficientNetLiteConfig,
    stem: ConvBn,
    blocks: Vec<MbConv>,
    head: Option<Head>,
}

impl EfficientNetLite {
    /// Builds the network from `vb`; the head is read only when `with_head` is set.
    ///
    /// # Errors
    /// An invalid config, or a tensor missing from `vb` or of the wrong shape (candle's error
    /// names the key).
    pub fn new(vb: VarBuilder, config: &EfficientNetLiteConfig, with_head: bool) -> Result<Self> {
        config.validate()?;
        let eps = config.bn_eps;
        let stem = ConvBn::new(
            vb.pp("_conv_stem"),
            vb.pp("_bn0"),
            ConvSpec {
                in_channels: 3,
                out_channels: STEM_CHANNELS,
                kernel: 3,
                stride: 2,
                groups: 1,
                padding: Padding::TfSame,
                activation: Activation::Relu6,
                bn_eps: eps,
            },
        )?;
        let specs = config.blocks();
        let blocks = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| MbConv::new(vb.pp(format!("_blocks.{i}")), spec, eps))
            .collect::<Result<Vec<_>>>()?;
        let head = if with_head {
            let last = specs.last().map_or(STEM_CHANNELS, |b| b.out_channels);
            let conv = ConvBn::new(
                vb.pp("_conv_head"),
                vb.pp("_bn1"),
                ConvSpec {
                    in_channels: last,
                    out_channels: HEAD_CHANNELS,
                    kernel: 1,
                    stride: 1,
                    groups: 1,
                    padding: Padding::TfSame,
                    activation: Activation::Relu6,
                    bn_eps: eps,
                },
            )?;
            let fc = vb.pp("_fc");
            let fc_weight = fc.get((config.num_classes, HEAD_CHANNELS), "weight")?;
            let fc_bias = fc.get(config.num_classes, "bias")?;
            Some(Head { conv, fc_weight, fc_bias })
        } else {
            None
        };
        Ok(Self { config: config.clone(), stem, blocks, head })
    }

    /// Loads the network from a safetensors file in the `efficientnet_pytorch` layout (e.g. the
    /// output of [`crate::convert_pth`]), checking every tensor's presence and shape first.
    /// Extra tensors (`num_batches_tracked`, or the head when `with_head` is off) are ignored.
    ///
    /// # Errors
    /// [`Error::Safetensors`] for an unreadable file, [`Error::MissingTensor`] or
    /// [`Error::TensorShape`] naming the file and key.
    pub fn load(
        path: &Path,
        config: &EfficientNetLiteConfig,
        with_head: bool,
        device: &Device,
    ) -> Result<Self> {
        let tensors = load_checked(path, &config.expected_tensors(with_head), device)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        Self::new(vb, config, with_head)
    }

    /// The configuration.
    pub fn config(&self) -> &EfficientNetLiteConfig {
        &self.config
    }

    /// Number of MBConv blocks.
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Runs the stem and the blocks up to the deepest of `out_blocks` and returns those blocks'
    /// outputs `[B, C_i, h_i, w_i]`, in the order requested.
    ///
    /// # Errors
    /// [`Error::InputShape`] unless `images` is `[B, 3, H, W]` with `B, H, W > 0`;
    /// [`Error::Config`] for a block index past the last block.
    pub fn forward_blocks(&self, images: &Tensor, out_blocks: &[usize]) -> Result<Vec<Tensor>> {
        check_images(images, 1)?;
        let Some(&deepest) = out_blocks.iter().max() else { return Ok(Vec::new()) };
        if deepest >= self.blocks.len() {
            return Err(Error::Config {
                field: "out_blocks",
                value: format!("{out_blocks:?}"),
                reason: format!("the network has {} blocks", self.blocks.len()),
            });
        }
        let mut x = self.stem.forward(&images.to_dtype(DType::F32)?)?;
        let mut kept = vec![None; self.blocks.len()];
        for (i, block) in self.blocks[..=deepest].iter().enumerate() {
            let _span = tracing::trace_span!("mbconv", block = i).entered();
            x = block.forward(&x)?;
            if out_blocks.contains(&i) {
                kept[i] = Some(x.clone());
            }
        }
        Ok(out_blocks.iter().filter_map(|&i| kept[i].clone()).collect())
    }

    /// Runs the whole network and returns the ImageNet logits `[B, num_classes]`.
    ///
    /// # Errors
    /// [`Error::Config`] when the network was built without its head; [`Error::InputShape`]
    /// as [`EfficientNetLite::forward_blocks`].
    pub fn forward_logits(&self, images: &Tensor) -> Result<Tensor> {
        let Some(head) = &self.head else {
            return Err(Error::Config {
                field: "with_head",
                value: "false".into(),
                reason: "logits need the classification head".into(),
            });
        };
        let last = self.blocks.len() - 1;
        let x = self.forward_blocks(images, &[last])?.remove(0);
        let pooled = global_mean(&head.conv.forward(&x)?)?;
        Ok(pooled.matmul(&head.fc_weight.t()?)?.broadcast_add(&head.fc_bias)?)
    }
}

/// Checks `[B, 3, H, W]` with positive sizes that are multiples of `multiple`.
pub(crate) fn check_images(images: &Tensor, multiple: usize) -> Result<()> {
    let dims = images.dims();
    let ok = matches!(dims, &[b, 3, h, w] if b > 0 && h > 0 && w > 0 && h % multiple == 0 && w % multiple == 0);
    if ok {
        Ok(())
    } else {
        Err(Error::InputShape {
            expected: format!("[B, 3, H, W] with B, H, W > 0 and H, W multiples of {multiple}"),
            got: dims.to_vec(),
        })
    }
}

/// Reads a safetensors file and checks that every `(key, shape)` in `expected` is present.
pub(crate) fn load_checked(
    path: &Path,
    expected: &[(String, Vec<usize>)],
    device: &Device,
) -> Result<std::collections::HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| Error::Safetensors { path: path.to_path_buf(), message: e.to_string() })?;
    for (key, shape) in expected {
        let Some(t) = tensors.get(key) else {
            return Err(Error::MissingTensor { path: path.to_path_buf(), key: key.clone() });
        };
        if t.dims() != shape.as_slice() {
            return Err(Error::TensorShape {
                path: path.to_path_buf(),
                key: key.clone(),
                expected: shape.clone(),
                got: t.dims().to_vec(),
            });
        }
    }
    Ok(tensors)
}

/// [`EfficientNetLite`] as a frozen [`Encoder`] returning the configured blocks' outputs.
#[derive(Clone, Debug)]
pub struct EfficientNetLiteEncoder {
    net: EfficientNetLite,
    out_blocks: Vec<usize>,
}

impl EfficientNetLiteEncoder {
    /// Loads the trunk (no head) from a safetensors file in the `efficientnet_pytorch` layout.
    ///
    /// # Errors
    /// An invalid config ([`Error::Config`]), or as [`EfficientNetLite::load`].
    pub fn load(
        path: &Path,
        config: &EfficientNetLiteEncoderConfig,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let net = EfficientNetLite::load(path, &config.model, false, device)?;
        Ok(Self { net, out_blocks: config.out_blocks.clone() })
    }

    /// Wraps an already built network.
    ///
    /// # Errors
    /// [`Error::Config`] when `out_blocks` is empty or names a block the network lacks.
    pub fn from_network(net: EfficientNetLite, out_blocks: Vec<usize>) -> Result<Self> {
        EfficientNetLiteEncoderConfig {
            model: net.config().clone(),
            out_blocks: out_blocks.clone(),
        }
        .validate()?;
        Ok(Self { net, out_blocks })
    }
}

impl Encoder for EfficientNetLiteEncoder {
    fn name(&self) -> String {
        let blocks: Vec<String> = self.out_blocks.iter().map(ToString::to_string).collect();
        format!("{}[{}]", self.net.config().name, blocks.join(","))
    }

    /// The TF EfficientNet-Lite preprocessing `(x - 127) / 128` on 0–255 values, i.e. mean
    /// 127/255 and std 128/255 on `[0, 1]`; sizes multiples of 32 (the total stride).
    fn input_spec(&self) -> InputSpec {
        let mean = (127.0f64 / 255.0) as f32;
        let std = (128.0f64 / 255.0) as f32;
        InputSpec { mean: [mean; 3], std: [std; 3], size_multiple_px: 32 }
    }

    fn forward(&self, images: &Tensor) -> Result<Vec<Tensor>> {
        let _span = tracing::info_span!("efficientnet_lite", name = %self.name()).entered();
        check_images(images, 32)?;
        self.net.forward_blocks(images, &self.out_blocks)
    }
}
