//! EfficientNet-Lite configurations: the per-variant multipliers and the derived block list.

use crate::{Error, Result};

/// `(repeats, kernel, stride, expand ratio, input channels, output channels)` of the seven
/// stages of EfficientNet-B0, which every Lite variant scales (TF `efficientnet_builder`).
const BASE_STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// Stem output channels (fixed, not scaled, in the Lite variants).
pub(crate) const STEM_CHANNELS: usize = 32;
/// Head output channels (fixed, not scaled, in the Lite variants).
pub(crate) const HEAD_CHANNELS: usize = 1280;

/// An EfficientNet-Lite variant.
///
/// Lite differs from EfficientNet by ReLU6 instead of swish, no squeeze-excitation, stem and
/// head channels fixed at 32 and 1280, and the first and last stages' repeats left unscaled.
/// Convolutions use TF "SAME" padding; batch norm uses eps 1e-3.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EfficientNetLiteConfig {
    /// Name used in encoder names and cache keys, e.g. `efficientnet-lite0`.
    pub name: String,
    /// Channel multiplier (channels are rounded to multiples of 8).
    pub width_multiplier: f64,
    /// Repeat multiplier of the middle stages (rounded up).
    pub depth_multiplier: f64,
    /// Batch-norm epsilon.
    pub bn_eps: f64,
    /// Number of ImageNet classes of the optional classification head.
    pub num_classes: usize,
}

/// One inverted-residual (MBConv) block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MbConvSpec {
    /// Depthwise kernel size.
    pub kernel: usize,
    /// Depthwise stride.
    pub stride: usize,
    /// Expansion ratio (1: no expansion convolution).
    pub expand_ratio: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Total stride of the block's output relative to the input image.
    pub output_stride: usize,
}

impl EfficientNetLiteConfig {
    fn preset(name: &str, width_multiplier: f64, depth_multiplier: f64) -> Self {
        Self {
            name: name.into(),
            width_multiplier,
            depth_multiplier,
            bn_eps: 1e-3,
            num_classes: 1000,
        }
    }

    /// EfficientNet-Lite0 (width 1.0, depth 1.0, 224 px), from TF `efficientnet_lite_builder`.
    pub fn lite0() -> Self {
        Self::preset("efficientnet-lite0", 1.0, 1.0)
    }

    /// EfficientNet-Lite1 (width 1.0, depth 1.1, 240 px), from TF `efficientnet_lite_builder`.
    pub fn lite1() -> Self {
        Self::preset("efficientnet-lite1", 1.0, 1.1)
    }

    /// EfficientNet-Lite2 (width 1.1, depth 1.2, 260 px), from TF `efficientnet_lite_builder`.
    pub fn lite2() -> Self {
        Self::preset("efficientnet-lite2", 1.1, 1.2)
    }

    /// Checks the multipliers.
    ///
    /// # Errors
    /// [`Error::Config`] for a non-positive or non-finite multiplier or epsilon.
    pub fn validate(&self) -> Result<()> {
        for (field, value) in [
            ("width_multiplier", self.width_multiplier),
            ("depth_multiplier", self.depth_multiplier),
            ("bn_eps", self.bn_eps),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(Error::Config {
                    field,
                    value: value.to_string(),
                    reason: "must be finite and positive".into(),
                });
            }
        }
        Ok(())
    }

    /// Rounds a channel count scaled by the width multiplier to a multiple of 8, never going
    /// below 90 % of the scaled value (TF `round_filters`).
    fn round_filters(&self, channels: usize) -> usize {
        let scaled = channels as f64 * self.width_multiplier;
        let mut rounded = (((scaled + 4.0) as usize) / 8 * 8).max(8);
        if (rounded as f64) < 0.9 * scaled {
            rounded += 8;
        }
        rounded
    }

    /// The blocks in order (`_blocks.0`, `_blocks.1`, ...).
    pub fn blocks(&self) -> Vec<MbConvSpec> {
        let mut out = Vec::new();
        let mut total_stride = 2;
        let last = BASE_STAGES.len() - 1;
        for (i, &(repeats, kernel, stride, expand_ratio, cin, cout)) in
            BASE_STAGES.iter().enumerate()
        {
            let repeats = if i == 0 || i == last {
                repeats
            } else {
                (self.depth_multiplier * repeats as f64).ceil() as usize
            };
            let (cin, cout) = (self.round_filters(cin), self.round_filters(cout));
            for r in 0..repeats {
                let stride = if r == 0 { stride } else { 1 };
                total_stride *= stride;
                out.push(MbConvSpec {
                    kernel,
                    stride,
                    expand_ratio,
                    in_channels: if r == 0 { cin } else { cout },
                    out_channels: cout,
                    output_stride: total_stride,
                });
            }
        }
        out
    }

    /// The index of the last block whose output has total stride `stride` (e.g. 8 or 16),
    /// the usual choice of a feature layer.
    pub fn last_block_with_stride(&self, stride: usize) -> Option<usize> {
        self.blocks().iter().rposition(|b| b.output_stride == stride)
    }

    /// Every tensor the network reads, with its shape, in the `efficientnet_pytorch` layout.
    ///
    /// BN entries are `weight`, `bias`, `running_mean` and `running_var`; the classification
    /// head (`_conv_head`, `_bn1`, `_fc`) is listed when `with_head` is set.
    pub fn expected_tensors(&self, with_head: bool) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        let bn = |out: &mut Vec<(String, Vec<usize>)>, p: &str, c: usize| {
            for k in ["weight", "bias", "running_mean", "running_var"] {
                out.push((format!("{p}.{k}"), vec![c]));
            }
        };
        out.push(("_conv_stem.weight".into(), vec![STEM_CHANNELS, 3, 3, 3]));
        bn(&mut out, "_bn0", STEM_CHANNELS);
        let blocks = self.blocks();
        for (i, b) in blocks.iter().enumerate() {
            let p = format!("_blocks.{i}");
            let hidden = b.in_channels * b.expand_ratio;
            if b.expand_ratio != 1 {
                out.push((format!("{p}._expand_conv.weight"), vec![hidden, b.in_channels, 1, 1]));
                bn(&mut out, &format!("{p}._bn0"), hidden);
            }
            out.push((format!("{p}._depthwise_conv.weight"), vec![hidden, 1, b.kernel, b.kernel]));
            bn(&mut out, &format!("{p}._bn1"), hidden);
            out.push((format!("{p}._project_conv.weight"), vec![b.out_channels, hidden, 1, 1]));
            bn(&mut out, &format!("{p}._bn2"), b.out_channels);
        }
        if with_head {
            let last = blocks.last().map_or(STEM_CHANNELS, |b| b.out_channels);
            out.push(("_conv_head.weight".into(), vec![HEAD_CHANNELS, last, 1, 1]));
            bn(&mut out, "_bn1", HEAD_CHANNELS);
            out.push(("_fc.weight".into(), vec![self.num_classes, HEAD_CHANNELS]));
            out.push(("_fc.bias".into(), vec![self.num_classes]));
        }
        out
    }
}

/// An EfficientNet-Lite used as a frozen [`crate::Encoder`]: the variant and the blocks whose
/// outputs are returned.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EfficientNetLiteEncoderConfig {
    /// The network variant.
    pub model: EfficientNetLiteConfig,
    /// Indices of the blocks whose outputs are returned, in this order; the network runs only
    /// up to the deepest one.
    pub out_blocks: Vec<usize>,
}

impl EfficientNetLiteEncoderConfig {
    /// Lite0 returning its stride-8 and stride-16 features (outputs of blocks 4 and 10, 40 and
    /// 112 channels), the layers a PatchCore-style detector uses (the analogue of WideResNet's
    /// layer2 and layer3).
    pub fn lite0_stride8_16() -> Self {
        let model = EfficientNetLiteConfig::lite0();
        let out_blocks = [8, 16].iter().filter_map(|&s| model.last_block_with_stride(s)).collect();
        Self { model, out_blocks }
    }

    /// Checks the model and that every requested block exists.
    ///
    /// # Errors
    /// [`Error::Config`] naming `out_blocks` when it is empty or holds an index past the last
    /// block.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        let n = self.model.blocks().len();
        if self.out_blocks.is_empty() || self.out_blocks.iter().any(|&b| b >= n) {
            return Err(Error::Config {
                field: "out_blocks",
                value: format!("{:?}", self.out_blocks),
                reason: format!("needs 1+ block indices below {n}"),
            });
        }
        Ok(())
    }
}
