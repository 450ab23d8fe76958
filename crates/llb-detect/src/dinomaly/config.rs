//! Dinomaly configuration: architecture, loss, optimiser, schedule and anomaly-map settings,
//! with presets named after their source.

use crate::{Error, Result};

/// How the trainable weights are initialised (biases and layer-norm shifts start at 0, layer-norm
/// scales at 1 in every case).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum WeightInit {
    /// Linear weights from a normal distribution with standard deviation `std`, truncated to
    /// `[-bound, bound]` (official Dinomaly: `std = 0.01`, `bound = 0.03`).
    TruncNormal {
        /// Standard deviation of the normal distribution.
        std: f64,
        /// Values outside `[-bound, bound]` are redrawn.
        bound: f64,
    },
    /// PyTorch's `nn.Linear` default: weights and biases uniform in `±1/sqrt(fan_in)`
    /// (LLBNAD builds the same network without re-initialising it).
    TorchDefault,
}

/// Hard-point mining in the loss: the gradient of the easiest points is scaled down.
///
/// Point distance is `1 − cos` between encoder and decoder token features. At iteration `it`
/// the easy fraction is `p = easy_fraction · min(1, it / easy_fraction_ramp_iters)` (no ramp
/// when `easy_fraction_ramp_iters` is 0); the tokens below the distance of the
/// `⌊(1 − p)·n⌋`-th hardest token of the batch are easy.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardMiningConfig {
    /// Final fraction `p` of tokens treated as easy, in `[0, 1)`.
    pub easy_fraction: f64,
    /// Iterations over which `p` ramps linearly from 0 to `easy_fraction`; 0 means fixed.
    pub easy_fraction_ramp_iters: usize,
    /// Factor applied to the gradient of easy tokens, in `[0, 1]` (0 stops it).
    pub easy_grad_factor: f64,
}

/// The optimiser: AdamW with decoupled weight decay, optionally AMSGrad and StableAdamW's
/// per-tensor update clipping, after clipping the global gradient norm.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Adam's `(beta1, beta2)`.
    pub betas: [f64; 2],
    /// Adam's epsilon added to the denominator.
    pub eps: f64,
    /// Decoupled weight decay: every step multiplies weights by `1 − lr · weight_decay`.
    pub weight_decay: f64,
    /// Use the AMSGrad maximum of the second moment.
    pub amsgrad: bool,
    /// StableAdamW: divide a tensor's step by `max(1, RMS(g / denom) / update_clip)`.
    /// `None` gives plain AdamW.
    pub update_clip: Option<f64>,
    /// Clip the global L2 norm of all gradients to this value before the step.
    pub grad_clip_norm: Option<f64>,
}

/// Learning-rate schedule over the iterations.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum LrSchedule {
    /// Official Dinomaly `WarmCosineScheduler`: linear from 0 to `lr` over `warmup_iters`
    /// (`numpy.linspace`, so iteration 0 has rate 0), then cosine from `lr` to `final_lr` over
    /// the remaining iterations.
    WarmCosine {
        /// Warm-up iterations.
        warmup_iters: usize,
        /// Rate at the end of training.
        final_lr: f64,
    },
    /// Step decay: `lr` until `decay_at_fraction` of the iterations, then `lr · decay_rate`.
    Step {
        /// Where the decay happens, as a fraction of the iterations.
        decay_at_fraction: f64,
        /// Multiplier applied at the decay.
        decay_rate: f64,
    },
    /// Constant `lr`.
    Constant,
}

/// How long training runs: a fixed number of optimiser steps, or a number of passes over the
/// training set (LLBNAD trains for epochs, so a stage-1 sub-model on `1/K` of the images costs
/// `1/K` of a full fit).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrainingLength {
    /// This many iterations whatever the number of training images.
    Iterations(usize),
    /// This many epochs of `⌊N / batch⌋` iterations each (at least one iteration in all).
    Epochs(f64),
}

impl TrainingLength {
    /// Iterations for `n_images` training images at `batch_size` images per batch.
    pub fn iterations(self, n_images: usize, batch_size: usize) -> usize {
        match self {
            TrainingLength::Iterations(n) => n,
            TrainingLength::Epochs(epochs) => {
                let per_epoch = n_images / batch_size.min(n_images).max(1);
                ((epochs * per_epoch as f64).ceil() as usize).max(1)
            }
        }
    }
}

/// Padding used by the Gaussian blur at the map border.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlurPadding {
    /// Zeros outside the map (a PyTorch `Conv2d` with `padding = k // 2`).
    Zero,
    /// Mirror including the edge pixel (`scipy.ndimage.gaussian_filter`'s default `reflect`).
    Reflect,
}

/// How token distances become a pixel anomaly map.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapConfig {
    /// Gaussian standard deviation in output pixels (0 disables the blur).
    pub blur_sigma_px: f64,
    /// Kernel radius in pixels: the kernel has `2·radius + 1` taps.
    pub blur_radius_px: usize,
    /// Border handling of the blur.
    pub blur_padding: BlurPadding,
}

/// Everything that defines a Dinomaly fit (the encoder is chosen elsewhere: the model takes its
/// features).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DinomalyConfig {
    /// Channels per attention head; heads = feature channels / `head_dim` (DINOv2: 64).
    pub head_dim: usize,
    /// Number of decoder blocks.
    pub decoder_depth: usize,
    /// Number of loose-reconstruction groups; encoder layers and decoder blocks are split into
    /// this many equal contiguous groups.
    pub n_groups: usize,
    /// Hidden width of the bottleneck and decoder MLPs, as a multiple of the channels.
    pub mlp_ratio: usize,
    /// Dropout probability of the noisy bottleneck (input, hidden and output).
    pub dropout: f64,
    /// Epsilon of the decoder layer norms.
    pub layer_norm_eps: f64,
    /// Weight initialisation.
    pub init: WeightInit,
    /// Hard-point mining in the loss.
    pub hard_mining: HardMiningConfig,
    /// Optimiser.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule.
    pub schedule: LrSchedule,
    /// Training length; the warm-up, the hard-mining ramp and the step decay are counted in
    /// iterations of the resolved total.
    pub length: TrainingLength,
    /// Images per training batch (capped at the number of training images).
    pub batch_size: usize,
    /// Images per forward pass when scoring.
    pub inference_batch_size: usize,
    /// Seed of every random choice: weight init, batch order and dropout masks.
    pub seed: u64,
    /// Anomaly-map settings.
    pub map: MapConfig,
}

impl DinomalyConfig {
    /// Official Dinomaly, one model per class (Guo et al., "Dinomaly: The Less Is More
    /// Philosophy in Multi-Class Unsupervised Anomaly Detection", CVPR 2025; code
    /// `guojiajeremy/Dinomaly`, `dinomaly_mvtec_sep.py` and `utils.py`): dropout 0.2, 8 linear
    /// attention blocks with layer-norm eps 1e-8, StableAdamW (AMSGrad) lr 2e-3 with warm-up 100
    /// and cosine to 2e-4, global grad clip 0.1, 5,000 iterations at batch 16, hard mining
    /// `p` 0 → 0.9 over 1,000 iterations with factor 0.1, and the evaluation blur (5×5 kernel,
    /// σ = 4, zero padding). The official map averages the two groups; ours sums them (a
    /// constant factor 2).
    pub fn guo2025() -> Self {
        Self {
            head_dim: 64,
            decoder_depth: 8,
            n_groups: 2,
            mlp_ratio: 4,
            dropout: 0.2,
            layer_norm_eps: 1e-8,
            init: WeightInit::TruncNormal { std: 0.01, bound: 0.03 },
            hard_mining: HardMiningConfig {
                easy_fraction: 0.9,
                easy_fraction_ramp_iters: 1000,
                easy_grad_factor: 0.1,
            },
            optimizer: OptimizerConfig {
                lr: 2e-3,
                betas: [0.9, 0.999],
                eps: 1e-8,
                weight_decay: 1e-4,
                amsgrad: true,
                update_clip: Some(1.0),
                grad_clip_norm: Some(0.1),
            },
            schedule: LrSchedule::WarmCosine { warmup_iters: 100, final_lr: 2e-4 },
            length: TrainingLength::Iterations(5000),
            batch_size: 16,
            inference_batch_size: 16,
            seed: 1,
            map: MapConfig {
                blur_sigma_px: 4.0,
                blur_radius_px: 2,
                blur_padding: BlurPadding::Zero,
            },
        }
    }

    /// Dinomaly as LLBNAD trains it (Zhang et al., arXiv 2508.07441; code
    /// `hustzhangyuxin/LLBNAD`, `configs/benchmark/dinomaly/dinomaly_100e.py`): same network
    /// without re-initialisation, fixed `p = 0.9` with factor 0, Adam lr 5e-3 with betas
    /// (0.5, 0.999), step decay ×0.1 at 80 % of training, grad clip 5, batch 16, 1,000
    /// iterations (the repository's config name; its shipped config runs 10), and
    /// `scipy.ndimage.gaussian_filter(σ = 4)` on the summed map (radius 16, reflect).
    pub fn llbnad() -> Self {
        Self {
            init: WeightInit::TorchDefault,
            hard_mining: HardMiningConfig {
                easy_fraction: 0.9,
                easy_fraction_ramp_iters: 0,
                easy_grad_factor: 0.0,
            },
            optimizer: OptimizerConfig {
                lr: 5e-3,
                betas: [0.5, 0.999],
                eps: 1e-8,
                weight_decay: 0.0,
                amsgrad: false,
                update_clip: None,
                grad_clip_norm: Some(5.0),
            },
            schedule: LrSchedule::Step { decay_at_fraction: 0.8, decay_rate: 0.1 },
            length: TrainingLength::Iterations(1000),
            seed: 42,
            map: MapConfig {
                blur_sigma_px: 4.0,
                blur_radius_px: 16,
                blur_padding: BlurPadding::Reflect,
            },
            ..Self::guo2025()
        }
    }

    /// This project's CPU-scale preset (llb): [`Self::guo2025`] shortened to 10 epochs at
    /// batch 8 (70 iterations on 60 images; a stage-1 sub-model on a third of them trains a
    /// third as long), warm-up 10 and the hard-mining ramp over 50 iterations, so that a ViT-S
    /// model on 112 px images trains in about a minute on two cores. On the built-in benchmark
    /// (brick, 112 px), 20 epochs gave 90.1 / 73.2 I-AUROC / P-AUPRO and 10 epochs 89.1 / 72.3.
    pub fn llb_cpu() -> Self {
        let mut config = Self::guo2025();
        config.length = TrainingLength::Epochs(10.0);
        config.batch_size = 8;
        config.inference_batch_size = 8;
        config.schedule = LrSchedule::WarmCosine { warmup_iters: 10, final_lr: 2e-4 };
        config.hard_mining.easy_fraction_ramp_iters = 50;
        config
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first invalid field.
    pub fn validate(&self) -> Result<()> {
        fn bad(field: &'static str, value: impl std::fmt::Debug, reason: &'static str) -> Error {
            Error::Config { field, value: format!("{value:?}"), reason }
        }
        let unit_open = |x: f64| (0.0..1.0).contains(&x);
        if self.head_dim == 0 {
            return Err(bad("head_dim", self.head_dim, "must be positive"));
        }
        if self.n_groups == 0 {
            return Err(bad("n_groups", self.n_groups, "must be positive"));
        }
        if self.decoder_depth == 0 || !self.decoder_depth.is_multiple_of(self.n_groups) {
            return Err(bad(
                "decoder_depth",
                self.decoder_depth,
                "must be a positive multiple of n_groups",
            ));
        }
        if self.mlp_ratio == 0 {
            return Err(bad("mlp_ratio", self.mlp_ratio, "must be positive"));
        }
        if !unit_open(self.dropout) {
            return Err(bad("dropout", self.dropout, "must be in [0, 1)"));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(bad("layer_norm_eps", self.layer_norm_eps, "must be positive"));
        }
        if let WeightInit::TruncNormal { std, bound } = self.init
            && !(std > 0.0 && bound > 0.0 && std.is_finite() && bound.is_finite())
        {
            return Err(bad("init", &self.init, "std and bound must be positive"));
        }
        let hm = &self.hard_mining;
        if !unit_open(hm.easy_fraction) {
            return Err(bad("hard_mining.easy_fraction", hm.easy_fraction, "must be in [0, 1)"));
        }
        if !(0.0..=1.0).contains(&hm.easy_grad_factor) {
            return Err(bad(
                "hard_mining.easy_grad_factor",
                hm.easy_grad_factor,
                "must be in [0, 1]",
            ));
        }
        let opt = &self.optimizer;
        if !(opt.lr >= 0.0 && opt.lr.is_finite()) {
            return Err(bad("optimizer.lr", opt.lr, "must be finite and non-negative"));
        }
        if !opt.betas.iter().all(|&b| unit_open(b)) {
            return Err(bad("optimizer.betas", opt.betas, "must be in [0, 1)"));
        }
        if opt.eps.is_nan() || opt.eps <= 0.0 {
            return Err(bad("optimizer.eps", opt.eps, "must be positive"));
        }
        if !(opt.weight_decay >= 0.0 && opt.weight_decay.is_finite()) {
            return Err(bad("optimizer.weight_decay", opt.weight_decay, "must be non-negative"));
        }
        if opt.update_clip.is_some_and(|c| c.is_nan() || c <= 0.0) {
            return Err(bad("optimizer.update_clip", opt.update_clip, "must be positive"));
        }
        if opt.grad_clip_norm.is_some_and(|c| c.is_nan() || c <= 0.0) {
            return Err(bad("optimizer.grad_clip_norm", opt.grad_clip_norm, "must be positive"));
        }
        match self.schedule {
            LrSchedule::WarmCosine { final_lr, .. }
                if !(final_lr >= 0.0 && final_lr.is_finite()) =>
            {
                return Err(bad("schedule.final_lr", final_lr, "must be finite and non-negative"));
            }
            LrSchedule::Step { decay_at_fraction, decay_rate }
                if !((0.0..=1.0).contains(&decay_at_fraction) && decay_rate >= 0.0) =>
            {
                return Err(bad(
                    "schedule",
                    &self.schedule,
                    "decay_at_fraction in [0, 1], decay_rate >= 0",
                ));
            }
            _ => {}
        }
        match self.length {
            TrainingLength::Iterations(0) => {
                return Err(bad("length", self.length, "needs at least one iteration"));
            }
            TrainingLength::Epochs(e) if !(e > 0.0 && e.is_finite()) => {
                return Err(bad("length", self.length, "epochs must be positive and finite"));
            }
            _ => {}
        }
        if self.batch_size == 0 {
            return Err(bad("batch_size", self.batch_size, "must be positive"));
        }
        if self.inference_batch_size == 0 {
            return Err(bad("inference_batch_size", self.inference_batch_size, "must be positive"));
        }
        let map = &self.map;
        if !(map.blur_sigma_px >= 0.0 && map.blur_sigma_px.is_finite()) {
            return Err(bad(
                "map.blur_sigma_px",
                map.blur_sigma_px,
                "must be finite and non-negative",
            ));
        }
        Ok(())
    }

    /// The easy fraction `p` of hard-point mining at iteration `it` (0-based).
    pub fn easy_fraction_at(&self, it: usize) -> f64 {
        let hm = &self.hard_mining;
        if hm.easy_fraction_ramp_iters == 0 {
            hm.easy_fraction
        } else {
            (hm.easy_fraction * it as f64 / hm.easy_fraction_ramp_iters as f64)
                .min(hm.easy_fraction)
        }
    }

    /// The learning rate at iteration `it` (0-based) of a run of `total` iterations.
    pub fn lr_at(&self, it: usize, total: usize) -> f64 {
        let lr = self.optimizer.lr;
        match self.schedule {
            LrSchedule::Constant => lr,
            LrSchedule::Step { decay_at_fraction, decay_rate } => {
                let at = (decay_at_fraction * total as f64).floor() as usize;
                if it >= at { lr * decay_rate } else { lr }
            }
            LrSchedule::WarmCosine { warmup_iters, final_lr } => {
                if it >= total {
                    final_lr
                } else if it < warmup_iters {
                    if warmup_iters == 1 { 0.0 } else { lr * it as f64 / (warmup_iters - 1) as f64 }
                } else {
                    let len = (total - warmup_iters) as f64;
                    let i = (it - warmup_iters) as f64;
                    final_lr
                        + 0.5 * (lr - final_lr) * (1.0 + (std::f64::consts::PI * i / len).cos())
                }
            }
        }
    }
}
