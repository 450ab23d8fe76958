"""PyTorch peer of one Dinomaly training step on the CPU, for `cargo xtask bench dinomaly`.

The trainable part of Dinomaly as the official code builds it (bottleneck MLP with dropout,
linear-attention blocks with elu+1 kernels, LayerNorm eps 1e-8, GELU MLPs, two loose
reconstruction groups, hard-mined global cosine loss with a gradient hook, AdamW with AMSGrad and
gradient-norm clipping), eager mode, at the shapes given on the command line.

Usage: python dinomaly_step.py TOKEN_SIDE BATCH THREADS ITERATIONS  -> one JSON line.
"""
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

side, batch, threads, iterations = (int(a) for a in sys.argv[1:5])
torch.set_num_threads(threads)
torch.manual_seed(0)
C, HEADS, DEPTH, GROUPS, LAYERS = 384, 6, 8, 2, 8
N = side * side


class LinearAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, HEADS, c // HEADS).permute(2, 0, 3, 1, 4)
        q, k, v = F.elu(qkv[0]) + 1.0, F.elu(qkv[1]) + 1.0, qkv[2]
        kv = k.transpose(-2, -1) @ v
        z = 1.0 / (q @ k.sum(dim=-2, keepdim=True).transpose(-2, -1))
        out = ((q @ kv) * z).transpose(1, 2).reshape(b, n, c)
        return self.proj(out)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(C, eps=1e-8)
        self.attn = LinearAttention()
        self.norm2 = nn.LayerNorm(C, eps=1e-8)
        self.mlp = nn.Sequential(nn.Linear(C, 4 * C), nn.GELU(), nn.Linear(4 * C, C))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.bottleneck = nn.Sequential(
            nn.Dropout(0.2), nn.Linear(C, 4 * C), nn.GELU(), nn.Dropout(0.2),
            nn.Linear(4 * C, C), nn.Dropout(0.2))
        self.decoder = nn.ModuleList(Block() for _ in range(DEPTH))

    def forward(self, x):
        x = self.bottleneck(x)
        outs = []
        for block in self.decoder:
            x = block(x)
            outs.append(x)
        outs = outs[::-1]
        per = DEPTH // GROUPS
        return [torch.stack(outs[g * per:(g + 1) * per]).mean(0) for g in range(GROUPS)]


def hard_mined_loss(targets, outputs, p=0.9, factor=0.1):
    loss = 0.0
    for e, d in zip(targets, outputs):
        with torch.no_grad():
            dist = 1 - F.cosine_similarity(e, d, dim=-1)
        k = max(int(dist.numel() * (1 - p)), 1)
        thresh = torch.topk(dist.reshape(-1), k=k)[0][-1]
        loss = loss + torch.mean(1 - F.cosine_similarity(e.flatten(1), d.flatten(1), dim=1))
        easy = (dist < thresh).unsqueeze(-1)
        d.register_hook(lambda g, easy=easy: torch.where(easy, g * factor, g))
    return loss / len(targets)


model = Decoder()
opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.999), weight_decay=1e-4,
                        amsgrad=True)
layers = torch.sin(torch.arange(16 * LAYERS * N * C, dtype=torch.float32) * 0.37)
layers = layers.reshape(16, LAYERS, N, C)
groups = [layers[:, :LAYERS // 2].mean(1), layers[:, LAYERS // 2:].mean(1)]


def step(it):
    rows = torch.arange(it * batch, (it + 1) * batch) % 16
    targets = [g[rows] for g in groups]
    outputs = model(torch.stack(targets).mean(0))
    loss = hard_mined_loss(targets, outputs)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
    opt.step()


model.train()
for it in range(2):
    step(it)
times = []
for it in range(iterations):
    start = time.perf_counter()
    step(it)
    times.append(time.perf_counter() - start)
times.sort()
print(json.dumps({"secs": times[len(times) // 2], "torch": torch.__version__,
                  "threads": torch.get_num_threads()}))
