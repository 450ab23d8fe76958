//! The ViT trunk (DINOv2 layout: pre-norm blocks, layer-scale, exact GELU) on candle.
//!
//! Weights are re-laid out once at construction for speed, with results identical up to f32
//! rounding: linear weights are stored transposed (`[in, out]`, contiguous) so every projection is
//! one GEMM over all `B·N` tokens; query, key and value are fused into one `[D, 3D]` GEMM with the
//! attention scale `1/√(D/heads)` folded into the query part; the layer-scale vectors are folded
//! into the output projection and `fc2`.
//!
//! On the CPU the blocks run through [`super::cpu`] on plain buffers (same arithmetic, fused
//! passes, no intermediate tensors); on other devices through candle ops.

use super::config::ViTConfig;
use super::cpu::{self, BlockParams, CpuF32, Scratch};
use super::interp::resize_grid;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Mutex;

/// A linear layer stored as `[in, out]` for a plain row-major GEMM.
#[derive(Debug, Clone)]
struct Linear {
    weight_t: Tensor,
    bias: Tensor,
}

impl Linear {
    /// Reads `weight` `[out, in]` and `bias` `[out]` and multiplies output channel `o` by
    /// `out_scale[o]` when given.
    fn new(
        vb: VarBuilder,
        in_dim: usize,
        out_dim: usize,
        out_scale: Option<&Tensor>,
    ) -> Result<Self> {
        let mut weight = vb.get((out_dim, in_dim), "weight")?;
        let mut bias = vb.get(out_dim, "bias")?;
        if let Some(s) = out_scale {
            weight = weight.broadcast_mul(&s.unsqueeze(1)?)?;
            bias = bias.mul(s)?;
        }
        Ok(Self { weight_t: weight.t()?.contiguous()?, bias })
    }

    /// `[M, in]` → `[M, out]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.weight_t)?.broadcast_add(&self.bias)?)
    }
}

#[derive(Debug, Clone)]
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    fn new(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self { weight: vb.get(dim, "weight")?, bias: vb.get(dim, "bias")?, eps: eps as f32 })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps)?)
    }
}

/// One transformer block: `x + ls1·attn(norm1(x))`, then `x + ls2·mlp(norm2(x))`.
#[derive(Debug, Clone)]
struct Block {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    heads: usize,
}

impl Block {
    fn new(vb: VarBuilder, c: &ViTConfig) -> Result<Self> {
        let d = c.hidden_size;
        let scale = 1.0 / ((d / c.num_attention_heads) as f64).sqrt();
        let att = vb.pp("attention").pp("attention");
        let q = Linear::new(att.pp("query"), d, d, None)?;
        let k = Linear::new(att.pp("key"), d, d, None)?;
        let v = Linear::new(att.pp("value"), d, d, None)?;
        let qkv = Linear {
            weight_t: Tensor::cat(&[(q.weight_t * scale)?, k.weight_t, v.weight_t], 1)?
                .contiguous()?,
            bias: Tensor::cat(&[(q.bias * scale)?, k.bias, v.bias], 0)?,
        };
        let ls1 = vb.pp("layer_scale1").get(d, "lambda1")?;
        let ls2 = vb.pp("layer_scale2").get(d, "lambda1")?;
        Ok(Self {
            norm1: LayerNorm::new(vb.pp("norm1"), d, c.layer_norm_eps)?,
            qkv,
            proj: Linear::new(vb.pp("attention").pp("output").pp("dense"), d, d, Some(&ls1))?,
            norm2: LayerNorm::new(vb.pp("norm2"), d, c.layer_norm_eps)?,
            fc1: Linear::new(vb.pp("mlp").pp("fc1"), d, c.intermediate_size, None)?,
            fc2: Linear::new(vb.pp("mlp").pp("fc2"), c.intermediate_size, d, Some(&ls2))?,
            heads: c.num_attention_heads,
        })
    }

    /// `[B, N, D]` → `[B, N, D]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let hd = d / self.heads;
        let h = self.norm1.forward(x)?.reshape((b * n, d))?;
        let qkv = self
            .qkv
            .forward(&h)?
            .reshape((b, n, 3, self.heads, hd))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
        let att = super::ops::softmax_last_dim(&q.matmul(&k.t()?)?)?;
        let ctx = att.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((b * n, d))?;
        let x = (x + self.proj.forward(&ctx)?.reshape((b, n, d))?)?;
        let h = self.norm2.forward(&x)?.reshape((b * n, d))?;
        let h = super::ops::gelu_erf(&self.fc1.forward(&h)?)?;
        let h = self.fc2.forward(&h)?.reshape((b, n, d))?;
        Ok((x + h)?)
    }

    /// The same as [`Block::forward`] on the CPU token stream `x` (`[B·N, D]` row-major), in
    /// place, through [`cpu::block_forward`].
    fn forward_cpu(&self, x: &mut [f32], b: usize, n: usize, scratch: &mut Scratch) -> Result<()> {
        let v = CpuF32::new;
        let views = [
            v(&self.norm1.weight)?,
            v(&self.norm1.bias)?,
            v(&self.qkv.weight_t)?,
            v(&self.qkv.bias)?,
            v(&self.proj.weight_t)?,
            v(&self.proj.bias)?,
            v(&self.norm2.weight)?,
            v(&self.norm2.bias)?,
            v(&self.fc1.weight_t)?,
            v(&self.fc1.bias)?,
            v(&self.fc2.weight_t)?,
            v(&self.fc2.bias)?,
        ];
        let g = |i: usize| views[i].get();
        let params = BlockParams {
            norm1: (g(0), g(1)),
            qkv: (g(2), g(3)),
            proj: (g(4), g(5)),
            norm2: (g(6), g(7)),
            fc1: (g(8), g(9)),
            fc2: (g(10), g(11)),
            eps: self.norm1.eps,
            heads: self.heads,
        };
        cpu::block_forward(x, b, n, &params, scratch);
        Ok(())
    }
}

/// A DINOv2-style vision transformer truncated after its last needed block.
///
/// Tokens are ordered CLS, registers, patches (row-major over the patch grid), as in Hugging Face
/// `Dinov2WithRegistersModel`.
#[derive(Debug)]
pub struct ViT {
    config: ViTConfig,
    cls_token: Tensor,
    register_tokens: Option<Tensor>,
    pos_cls: Tensor,
    /// The pretrained grid, channel-last `[side, side, D]`, on the CPU for resampling.
    pos_grid: Vec<f32>,
    patch: Linear,
    blocks: Vec<Block>,
    final_norm: LayerNorm,
    pos_cache: Mutex<HashMap<(usize, usize), Tensor>>,
    /// The CPU path's buffers, kept between calls (sized for the largest batch seen) so that
    /// a forward pass does not page in fresh memory for them.
    scratch: Mutex<Scratch>,
    device: Device,
}

impl ViT {
    /// Builds the embeddings, the first `n_blocks` blocks and the final layernorm from `vb`,
    /// whose names are the Hugging Face `Dinov2Model` keys (`embeddings.cls_token`,
    /// `encoder.layer.N.attention.attention.query.weight`, `layernorm.weight`, ...).
    ///
    /// # Errors
    /// An invalid `config`, `n_blocks` beyond the depth, or a missing or misshapen tensor.
    pub fn new(vb: VarBuilder, config: &ViTConfig, n_blocks: usize) -> Result<Self> {
        config.validate()?;
        if n_blocks > config.num_hidden_layers {
            return Err(Error::Config {
                field: "blocks",
                value: n_blocks.to_string(),
                reason: format!("the network has {} blocks", config.num_hidden_layers),
            });
        }
        let d = config.hidden_size;
        let p = config.patch_size;
        let side = config.position_grid_side;
        let emb = vb.pp("embeddings");
        let pos = emb.get((1, side * side + 1, d), "position_embeddings")?;
        let pos_grid = pos.narrow(1, 1, side * side)?.flatten_all()?.to_vec1::<f32>()?;
        let proj = emb.pp("patch_embeddings").pp("projection");
        let patch_w = proj.get((d, 3, p, p), "weight")?.reshape((d, 3 * p * p))?;
        let patch = Linear { weight_t: patch_w.t()?.contiguous()?, bias: proj.get(d, "bias")? };
        let register_tokens = match config.num_register_tokens {
            0 => None,
            r => Some(emb.get((1, r, d), "register_tokens")?),
        };
        let enc = vb.pp("encoder").pp("layer");
        let blocks =
            (0..n_blocks).map(|i| Block::new(enc.pp(i), config)).collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config: config.clone(),
            cls_token: emb.get((1, 1, d), "cls_token")?,
            register_tokens,
            pos_cls: pos.narrow(1, 0, 1)?,
            pos_grid,
            patch,
            blocks,
            final_norm: LayerNorm::new(vb.pp("layernorm"), d, config.layer_norm_eps)?,
            pos_cache: Mutex::new(HashMap::new()),
            scratch: Mutex::new(Scratch::default()),
            device: vb.device().clone(),
        })
    }

    /// The architecture.
    pub fn config(&self) -> &ViTConfig {
        &self.config
    }

    /// Number of blocks built (and run by [`ViT::forward_blocks`]).
    pub fn n_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Runs the blocks up to the largest of `blocks` on the embedded tokens `x` `[B, N, D]` with
    /// candle ops, returning the patch maps `[B, D, h, w]` of each of `blocks`.
    fn run_blocks_candle(
        &self,
        mut x: Tensor,
        blocks: &[usize],
        (h, w): (usize, usize),
        final_norm: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let (b, _, d) = x.dims3()?;
        let first_patch = 1 + self.config.num_register_tokens;
        let last = blocks.iter().copied().max().map_or(0, |m| m + 1);
        let mut outputs: Vec<Option<Tensor>> = vec![None; blocks.len()];
        for (i, block) in self.blocks.iter().enumerate().take(last) {
            let _span = tracing::trace_span!("vit_block", i).entered();
            x = block.forward(&x)?;
            for (slot, _) in outputs.iter_mut().zip(blocks).filter(|(_, want)| **want == i) {
                let mut t = x.narrow(1, first_patch, h * w)?;
                if final_norm {
                    t = self.final_norm.forward(&t.contiguous()?)?;
                }
                *slot = Some(t.transpose(1, 2)?.contiguous()?.reshape((b, d, h, w))?);
            }
        }
        Ok(outputs)
    }

    /// [`ViT::run_blocks_candle`] on the CPU through [`cpu::block_forward`].
    fn run_blocks_cpu(
        &self,
        x: &Tensor,
        blocks: &[usize],
        grid: (usize, usize),
        final_norm: bool,
    ) -> Result<Vec<Option<Tensor>>> {
        let (b, n, _) = x.dims3()?;
        let mut tokens = x.flatten_all()?.to_vec1::<f32>()?;
        // A concurrent call finding the buffers in use allocates its own.
        let mut own = Scratch::default();
        let mut shared = self.scratch.try_lock();
        let scratch = match &mut shared {
            Ok(guard) => &mut **guard,
            Err(_) => &mut own,
        };
        let last = blocks.iter().copied().max().map_or(0, |m| m + 1);
        let mut outputs: Vec<Option<Tensor>> = vec![None; blocks.len()];
        for (i, block) in self.blocks.iter().enumerate().take(last) {
            let _span = tracing::trace_span!("vit_block", i).entered();
            block.forward_cpu(&mut tokens, b, n, scratch)?;
            for (slot, _) in outputs.iter_mut().zip(blocks).filter(|(_, want)| **want == i) {
                *slot = Some(self.patch_maps_cpu(&tokens, b, n, grid, final_norm)?);
            }
        }
        Ok(outputs)
    }

    /// The patch tokens of the CPU token stream `tokens` (`b` images of `n` tokens) as
    /// `[b, D, h, w]`, after the final layernorm if `final_norm`.
    fn patch_maps_cpu(
        &self,
        tokens: &[f32],
        b: usize,
        n: usize,
        (h, w): (usize, usize),
        final_norm: bool,
    ) -> Result<Tensor> {
        let d = self.config.hidden_size;
        let first = 1 + self.config.num_register_tokens;
        let np = h * w;
        let norm = if final_norm {
            Some((CpuF32::new(&self.final_norm.weight)?, CpuF32::new(&self.final_norm.bias)?))
        } else {
            None
        };
        let mut out = vec![0.0_f32; b * d * np];
        out.par_chunks_mut(d * np).enumerate().for_each(|(image, out)| {
            let patches = &tokens[(image * n + first) * d..(image * n + first + np) * d];
            let mut normed = Vec::new();
            let src = match &norm {
                Some((nw, nb)) => {
                    normed.resize(patches.len(), 0.0);
                    cpu::layernorm(patches, &mut normed, nw.get(), nb.get(), self.final_norm.eps);
                    &normed
                }
                None => patches,
            };
            for (p, token) in src.chunks_exact(d).enumerate() {
                for (c, &v) in token.iter().enumerate() {
                    out[c * np + p] = v;
                }
            }
        });
        Ok(Tensor::from_vec(out, (b, d, h, w), &self.device)?)
    }

    /// Position embeddings of the patch grid `[1, h·w, D]`, resampled once per grid size.
    fn patch_positions(&self, h: usize, w: usize) -> Result<Tensor> {
        let mut cache = self.pos_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = cache.get(&(h, w)) {
            return Ok(t.clone());
        }
        let side = self.config.position_grid_side;
        let d = self.config.hidden_size;
        let grid = if (h, w) == (side, side) {
            self.pos_grid.clone()
        } else {
            resize_grid(&self.pos_grid, (side, side, d), (h, w), self.config.pos_interpolation)
        };
        let t = Tensor::from_vec(grid, (1, h * w, d), &self.device)?;
        cache.insert((h, w), t.clone());
        Ok(t)
    }

    /// Runs the network on normalised images `[B, 3, H, W]` (f32, `H` and `W` positive multiples
    /// of the patch size) and returns, for each entry of `blocks` (0-based block indices, each
    /// below [`ViT::n_blocks`]), that block's output patch tokens as `[B, D, H/p, W/p]`, after
    /// the final layernorm if `apply_final_layernorm`. CLS and register tokens are dropped.
    ///
    /// # Errors
    /// [`Error::InputShape`] for a wrong input shape or dtype, [`Error::Config`] for a block index
    /// out of range.
    pub fn forward_blocks(
        &self,
        images: &Tensor,
        blocks: &[usize],
        apply_final_layernorm: bool,
    ) -> Result<Vec<Tensor>> {
        self.forward_blocks_with(images, blocks, apply_final_layernorm, true)
    }

    /// [`ViT::forward_blocks`], running the blocks through [`cpu::block_forward`] when the input
    /// is on the CPU and `cpu_kernels`, through candle ops otherwise.
    pub(super) fn forward_blocks_with(
        &self,
        images: &Tensor,
        blocks: &[usize],
        apply_final_layernorm: bool,
        cpu_kernels: bool,
    ) -> Result<Vec<Tensor>> {
        let p = self.config.patch_size;
        let dims = images.dims().to_vec();
        let shape_ok = dims.len() == 4
            && dims[1] == 3
            && dims[0] > 0
            && dims[2] > 0
            && dims[3] > 0
            && dims[2].is_multiple_of(p)
            && dims[3].is_multiple_of(p);
        if !shape_ok || images.dtype() != DType::F32 {
            return Err(Error::InputShape {
                expected: format!("f32 [B, 3, H, W] with H, W positive multiples of {p}"),
                got: dims,
            });
        }
        if let Some(&bad) = blocks.iter().find(|&&i| i >= self.blocks.len()) {
            return Err(Error::Config {
                field: "blocks",
                value: bad.to_string(),
                reason: format!("only {} blocks were built", self.blocks.len()),
            });
        }
        let (b, hp, wp) = (dims[0], dims[2] / p, dims[3] / p);
        let d = self.config.hidden_size;
        let patches = images
            .reshape((b, 3, hp, p, wp, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b * hp * wp, 3 * p * p))?;
        let patches = self.patch.forward(&patches)?.reshape((b, hp * wp, d))?;
        let patches = patches.broadcast_add(&self.patch_positions(hp, wp)?)?;
        let cls = (&self.cls_token + &self.pos_cls)?.broadcast_as((b, 1, d))?;
        let mut parts = vec![cls];
        if let Some(r) = &self.register_tokens {
            parts.push(r.broadcast_as((b, r.dim(1)?, d))?);
        }
        parts.push(patches);
        let x = Tensor::cat(&parts, 1)?;
        let outputs = if cpu_kernels && x.device().is_cpu() {
            self.run_blocks_cpu(&x, blocks, (hp, wp), apply_final_layernorm)?
        } else {
            self.run_blocks_candle(x, blocks, (hp, wp), apply_final_layernorm)?
        };
        outputs
            .into_iter()
            .zip(blocks)
            .map(|(t, i)| {
                t.ok_or_else(|| Error::Config {
                    field: "blocks",
                    value: i.to_string(),
                    reason: "block was not run".to_owned(),
                })
            })
            .collect()
    }
}
