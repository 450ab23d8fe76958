//! WideResNet configurations (torchvision's ResNet with wider bottlenecks).

use crate::{Error, Result};

/// A torchvision-style ResNet with bottleneck blocks (v1.5: the stride sits on the 3×3
/// convolution).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WideResNetConfig {
    /// Name used in encoder names and cache keys, e.g. `wide_resnet50_2`.
    pub name: String,
    /// Number of bottleneck blocks in `layer1..layer4`.
    pub blocks_per_layer: [usize; 4],
    /// Bottleneck width of `layer1` (torchvision's `64 * width_per_group / 64`); doubles per
    /// layer.
    pub base_width: usize,
    /// Batch-norm epsilon.
    pub bn_eps: f64,
}

/// Output channels of a bottleneck of layer `l` (1-based) are `EXPANSION * 64 * 2^(l-1)`.
const EXPANSION: usize = 4;

impl WideResNetConfig {
    /// WideResNet50-2 as torchvision's `wide_resnet50_2` defines it (layers `[3, 4, 6, 3]`,
    /// `width_per_group = 128`), also the layout of `timm/wide_resnet50_2.tv_in1k`.
    pub fn wide_resnet50_2() -> Self {
        Self {
            name: "wide_resnet50_2".into(),
            blocks_per_layer: [3, 4, 6, 3],
            base_width: 128,
            bn_eps: 1e-5,
        }
    }

    /// Checks the sizes.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero block count or width, or a non-positive epsilon.
    pub fn validate(&self) -> Result<()> {
        if self.blocks_per_layer.contains(&0) {
            return Err(Error::Config {
                field: "blocks_per_layer",
                value: format!("{:?}", self.blocks_per_layer),
                reason: "every layer needs 1+ blocks".into(),
            });
        }
        if self.base_width == 0 {
            return Err(Error::Config {
                field: "base_width",
                value: "0".into(),
                reason: "must be positive".into(),
            });
        }
        if !(self.bn_eps.is_finite() && self.bn_eps > 0.0) {
            return Err(Error::Config {
                field: "bn_eps",
                value: self.bn_eps.to_string(),
                reason: "must be finite and positive".into(),
            });
        }
        Ok(())
    }

    /// Output channels of layer `layer` (1-based): 256, 512, 1024, 2048.
    pub fn layer_channels(&self, layer: usize) -> usize {
        (EXPANSION * 64) << (layer - 1)
    }

    /// Bottleneck width of layer `layer` (1-based).
    pub(crate) fn layer_width(&self, layer: usize) -> usize {
        self.base_width << (layer - 1)
    }

    /// Total stride of layer `layer`'s output (1-based): 4, 8, 16, 32.
    pub fn layer_stride(&self, layer: usize) -> usize {
        2 << layer
    }

    /// Every tensor the stem and `layer1..=layer{upto_layer}` read, with its shape, in
    /// torchvision's layout.
    pub fn expected_tensors(&self, upto_layer: usize) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        let bn = |out: &mut Vec<(String, Vec<usize>)>, p: &str, c: usize| {
            for k in ["weight", "bias", "running_mean", "running_var"] {
                out.push((format!("{p}.{k}"), vec![c]));
            }
        };
        out.push(("conv1.weight".into(), vec![64, 3, 7, 7]));
        bn(&mut out, "bn1", 64);
        let mut cin = 64;
        for layer in 1..=upto_layer.min(4) {
            let (width, cout) = (self.layer_width(layer), self.layer_channels(layer));
            for b in 0..self.blocks_per_layer[layer - 1] {
                let p = format!("layer{layer}.{b}");
                out.push((format!("{p}.conv1.weight"), vec![width, cin, 1, 1]));
                bn(&mut out, &format!("{p}.bn1"), width);
                out.push((format!("{p}.conv2.weight"), vec![width, width, 3, 3]));
                bn(&mut out, &format!("{p}.bn2"), width);
                out.push((format!("{p}.conv3.weight"), vec![cout, width, 1, 1]));
                bn(&mut out, &format!("{p}.bn3"), cout);
                if b == 0 {
                    out.push((format!("{p}.downsample.0.weight"), vec![cout, cin, 1, 1]));
                    bn(&mut out, &format!("{p}.downsample.1"), cout);
                }
                cin = cout;
            }
        }
        out
    }
}

/// A WideResNet used as a frozen [`crate::Encoder`]: the network and the layers whose outputs
/// are returned.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WideResNetEncoderConfig {
    /// The network.
    pub model: WideResNetConfig,
    /// Layers (1..=4) whose outputs are returned, in this order; the network is built and run
    /// only up to the deepest one.
    pub out_layers: Vec<usize>,
}

impl WideResNetEncoderConfig {
    /// WideResNet50-2 returning layer2 and layer3 (512 and 1024 channels, strides 8 and 16), as
    /// PatchCore (Roth et al., CVPR 2022) uses it.
    pub fn wide_resnet50_2_patchcore() -> Self {
        Self { model: WideResNetConfig::wide_resnet50_2(), out_layers: vec![2, 3] }
    }

    /// Checks the model and the layer list.
    ///
    /// # Errors
    /// [`Error::Config`] naming `out_layers` when it is empty or holds a layer outside 1..=4.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        if self.out_layers.is_empty() || self.out_layers.iter().any(|&l| !(1..=4).contains(&l)) {
            return Err(Error::Config {
                field: "out_layers",
                value: format!("{:?}", self.out_layers),
                reason: "needs 1+ layers, each in 1..=4".into(),
            });
        }
        Ok(())
    }

    /// The deepest requested layer.
    pub(crate) fn deepest(&self) -> usize {
        self.out_layers.iter().copied().max().unwrap_or(1)
    }
}
