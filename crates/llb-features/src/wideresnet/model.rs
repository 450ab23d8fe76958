//! The WideResNet trunk (torchvision key names) and its [`Encoder`].

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::config::{WideResNetConfig, WideResNetEncoderConfig};
use crate::efficientnet::ops::{Activation, ConvBn, ConvSpec, Padding};
use crate::efficientnet::{check_images, load_checked};
use crate::{Encoder, Error, InputSpec, Result};

/// A bottleneck: 1×1 reduce, 3×3 (carrying the stride), 1×1 expand, residual, ReLU.
#[derive(Clone, Debug)]
struct Bottleneck {
    conv1: ConvBn,
    conv2: ConvBn,
    conv3: ConvBn,
    downsample: Option<ConvBn>,
}

fn spec(
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    activation: Activation,
    eps: f64,
) -> ConvSpec {
    ConvSpec {
        in_channels: cin,
        out_channels: cout,
        kernel,
        stride,
        groups: 1,
        padding: Padding::Symmetric(kernel / 2),
        activation,
        bn_eps: eps,
    }
}

impl Bottleneck {
    fn new(
        vb: VarBuilder,
        cin: usize,
        width: usize,
        cout: usize,
        stride: usize,
        eps: f64,
    ) -> Result<Self> {
        let conv1 = ConvBn::new(
            vb.pp("conv1"),
            vb.pp("bn1"),
            spec(cin, width, 1, 1, Activation::Relu, eps),
        )?;
        let conv2 = ConvBn::new(
            vb.pp("conv2"),
            vb.pp("bn2"),
            spec(width, width, 3, stride, Activation::Relu, eps),
        )?;
        let conv3 = ConvBn::new(
            vb.pp("conv3"),
            vb.pp("bn3"),
            spec(width, cout, 1, 1, Activation::Identity, eps),
        )?;
        let downsample = if stride != 1 || cin != cout {
            let d = vb.pp("downsample");
            Some(ConvBn::new(
                d.pp("0"),
                d.pp("1"),
                spec(cin, cout, 1, stride, Activation::Identity, eps),
            )?)
        } else {
            None
        };
        Ok(Self { conv1, conv2, conv3, downsample })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv3.forward(&self.conv2.forward(&self.conv1.forward(x)?)?)?;
        let identity = match &self.downsample {
            Some(d) => d.forward(x)?,
            None => x.clone(),
        };
        Ok((h + identity)?.relu()?)
    }
}

/// A WideResNet trunk (stem and `layer1..layerN`) with batch norm folded into the convolutions
/// (eval mode), f32, built only up to a chosen layer.
///
/// Tensor names follow torchvision: `conv1`, `bn1`,
/// `layer{1..4}.N.{conv1,bn1,conv2,bn2,conv3,bn3,downsample.0,downsample.1}`.
#[derive(Clone, Debug)]
pub struct WideResNet {
    config: WideResNetConfig,
    stem: ConvBn,
    layers: Vec<Vec<Bottleneck>>,
}

impl WideResNet {
    /// Builds the stem and `layer1..=layer{upto_layer}` from `vb`.
    ///
    /// # Errors
    /// An invalid config or `upto_layer` outside 1..=4 ([`Error::Config`]), or a tensor missing
    /// from `vb` or of the wrong shape.
    pub fn new(vb: VarBuilder, config: &WideResNetConfig, upto_layer: usize) -> Result<Self> {
        config.validate()?;
        if !(1..=4).contains(&upto_layer) {
            return Err(Error::Config {
                field: "upto_layer",
                value: upto_layer.to_string(),
                reason: "must be in 1..=4".into(),
            });
        }
        let eps = config.bn_eps;
        let mut stem_spec = spec(3, 64, 7, 2, Activation::Relu, eps);
        stem_spec.padding = Padding::Symmetric(3);
        let stem = ConvBn::new(vb.pp("conv1"), vb.pp("bn1"), stem_spec)?;
        let mut cin = 64;
        let mut layers = Vec::new();
        for layer in 1..=upto_layer {
            let (width, cout) = (config.layer_width(layer), config.layer_channels(layer));
            let vl = vb.pp(format!("layer{layer}"));
            let mut blocks = Vec::new();
            for b in 0..config.blocks_per_layer[layer - 1] {
                let stride = if b == 0 && layer > 1 { 2 } else { 1 };
                blocks.push(Bottleneck::new(vl.pp(b.to_string()), cin, width, cout, stride, eps)?);
                cin = cout;
            }
            layers.push(blocks);
        }
        Ok(Self { config: config.clone(), stem, layers })
    }

    /// Loads the trunk up to `upto_layer` from a safetensors file in torchvision's layout (e.g.
    /// `timm/wide_resnet50_2.tv_in1k`), checking every tensor's presence and shape first.
    ///
    /// # Errors
    /// [`Error::Safetensors`] for an unreadable file, [`Error::MissingTensor`] or
    /// [`Error::TensorShape`] naming the file and key, [`Error::Config`] as [`WideResNet::new`].
    pub fn load(
        path: &Path,
        config: &WideResNetConfig,
        upto_layer: usize,
        device: &Device,
    ) -> Result<Self> {
        let tensors = load_checked(path, &config.expected_tensors(upto_layer), device)?;
        Self::new(VarBuilder::from_tensors(tensors, DType::F32, device), config, upto_layer)
    }

    /// The configuration.
    pub fn config(&self) -> &WideResNetConfig {
        &self.config
    }

    /// Runs the trunk up to the deepest of `out_layers` (1-based) and returns those layers'
    /// outputs `[B, C_l, H / 2^(l+1), W / 2^(l+1)]` in the order requested.
    ///
    /// # Errors
    /// [`Error::InputShape`] unless `images` is `[B, 3, H, W]` with positive sizes;
    /// [`Error::Config`] for a layer that was not built.
    pub fn forward_layers(&self, images: &Tensor, out_layers: &[usize]) -> Result<Vec<Tensor>> {
        check_images(images, 1)?;
        let Some(&deepest) = out_layers.iter().max() else { return Ok(Vec::new()) };
        if out_layers.contains(&0) || deepest > self.layers.len() {
            return Err(Error::Config {
                field: "out_layers",
                value: format!("{out_layers:?}"),
                reason: format!("layers 1..={} were built", self.layers.len()),
            });
        }
        let x = self.stem.forward(&images.to_dtype(DType::F32)?)?;
        // Max pooling 3×3, stride 2, padding 1: zero padding equals -inf padding after a ReLU.
        let mut x =
            x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?.max_pool2d_with_stride(3, 2)?;
        let mut kept = vec![None; deepest];
        for (l, blocks) in self.layers[..deepest].iter().enumerate() {
            let _span = tracing::trace_span!("wrn_layer", layer = l + 1).entered();
            for block in blocks {
                x = block.forward(&x)?;
            }
            kept[l] = Some(x.clone());
        }
        Ok(out_layers.iter().filter_map(|&l| kept[l - 1].clone()).collect())
    }
}

/// [`WideResNet`] as a frozen [`Encoder`] returning the configured layers.
#[derive(Clone, Debug)]
pub struct WideResNetEncoder {
    net: WideResNet,
    out_layers: Vec<usize>,
}

impl WideResNetEncoder {
    /// Loads the trunk up to the deepest requested layer from a safetensors file.
    ///
    /// # Errors
    /// An invalid config ([`Error::Config`]), or as [`WideResNet::load`].
    pub fn load(path: &Path, config: &WideResNetEncoderConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let net = WideResNet::load(path, &config.model, config.deepest(), device)?;
        Ok(Self { net, out_layers: config.out_layers.clone() })
    }

    /// Wraps an already built trunk.
    ///
    /// # Errors
    /// [`Error::Config`] when `out_layers` is empty or names a layer the trunk lacks.
    pub fn from_network(net: WideResNet, out_layers: Vec<usize>) -> Result<Self> {
        let config = WideResNetEncoderConfig { model: net.config().clone(), out_layers };
        config.validate()?;
        if config.deepest() > net.layers.len() {
            return Err(Error::Config {
                field: "out_layers",
                value: format!("{:?}", config.out_layers),
                reason: format!("layers 1..={} were built", net.layers.len()),
            });
        }
        Ok(Self { net, out_layers: config.out_layers })
    }
}

impl Encoder for WideResNetEncoder {
    fn name(&self) -> String {
        let layers: Vec<String> = self.out_layers.iter().map(ToString::to_string).collect();
        format!("{}[{}]", self.net.config().name, layers.join(","))
    }

    /// ImageNet mean and std (torchvision); sizes multiples of the deepest layer's stride.
    fn input_spec(&self) -> InputSpec {
        let deepest = self.out_layers.iter().copied().max().unwrap_or(1);
        InputSpec {
            mean: InputSpec::IMAGENET_MEAN,
            std: InputSpec::IMAGENET_STD,
            size_multiple_px: self.net.config().layer_stride(deepest),
        }
    }

    fn forward(&self, images: &Tensor) -> Result<Vec<Tensor>> {
        let _span = tracing::info_span!("wide_resnet", name = %self.name()).entered();
        check_images(images, self.input_spec().size_multiple_px)?;
        self.net.forward_layers(images, &self.out_layers)
    }
}
