"""Causal local (windowed) self-attention with a learned distance bias: DistillNeuCodec's transformer.

The computation of lucidrains' ``local_attention`` 1.11.2 as DistillNeuCodec configures it
(``LocalMHA(causal=True, prenorm=True, exact_windowsize=False)``, no rotary embedding, a
``DynamicPositionBias`` shared by the layers of one stack, a GEGLU feed-forward), written
here so the library does not depend on that package:

* the sequence (zero-padded to a multiple of ``window``) is cut into windows of ``window``
  frames; the queries of window ``w`` see the keys of windows ``w - 1`` and ``w`` (the
  first window only its own), never a later frame (causal). So a frame attends to between
  ``t % window + 1`` and ``window + t % window + 1`` frames back, not a fixed span
  (``exact_windowsize=False``);
* the score of query ``i`` and key ``j`` gets ``bias[head, i - j]``, an MLP of the distance
  (``DynamicPositionBias``: 1 -> d -> d -> heads, SiLU), for distances ``0 .. 2 window - 1``;
* each layer is ``x + attention(LayerNorm(x))`` then ``x + feed_forward(x)``, the
  feed-forward beginning with its own LayerNorm; no final norm.

Module names differ from the package's (``position_bias``, ``attention``, ``feed_forward``);
:mod:`xcodec.checkpoints.distill_neucodec` maps the original keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DynamicPositionBias", "GegluFeedForward", "LocalSelfAttention", "LocalTransformer"]


class DynamicPositionBias(nn.Module):
    """Per-head additive attention bias from the query-key distance: (heads, window, 2 window)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        # Indices 0, 2, 4 hold the linears, as in the reference's nn.Sequential.
        self.mlp = nn.Sequential(
            nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, heads)
        )

    def forward(self, window: int) -> torch.Tensor:
        """Bias of the queries of one window (rows) against the keys of it and the window before (columns).

        Row i is the query at position ``window + i`` of the 2-window span; column j the key
        at position j; the value is ``mlp(|window + i - j|)`` for each head.
        """
        device = next(self.parameters()).device
        span = 2 * window
        # Always float32 (the reference's dtype): in bfloat16 distances past 256 would round.
        table = torch.arange(span, dtype=torch.float, device=device)[:, None]
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                table = F.linear(table, module.weight.float(), module.bias.float())
            else:
                table = module(table)  # (span, heads) after the last linear
        query_position = torch.arange(window, span, device=device)
        key_position = torch.arange(span, device=device)
        distance = (query_position[:, None] - key_position[None, :]).abs()
        return table[distance].permute(2, 0, 1)


class LocalSelfAttention(nn.Module):
    """Pre-norm causal windowed multi-head attention (``LocalMHA``): (batch, frames, dim) -> (batch, frames, dim)."""

    # Attention scores held at once (elements): 2**27 floats = 512 MiB in float32, about
    # three 1500-frame windows of the published model per item.
    max_scores: int = 2**27

    def __init__(self, dim: int, heads: int, head_dim: int, window: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim
        self.window = window
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * heads * head_dim, bias=False)
        self.to_out = nn.Linear(heads * head_dim, dim, bias=False)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, frames, dim); bias: (heads, window, 2 window) from :class:`DynamicPositionBias`, or None."""
        B, N, _ = x.shape
        w = self.window
        query, key, value = self.to_qkv(self.norm(x)).chunk(3, dim=-1)
        # Zero frames up to a whole number of windows: they lie after every real query, so
        # the causal mask hides them; their own outputs are cut off below.
        pad = -N % w
        windows = (N + pad) // w

        def split(t: torch.Tensor) -> torch.Tensor:
            # (B, N, heads * head_dim) -> (B, heads, windows, w, head_dim)
            t = F.pad(t, (0, 0, 0, pad))
            return t.view(B, windows, w, self.heads, self.head_dim).permute(0, 3, 1, 2, 4)

        query, key, value = split(query), split(key), split(value)
        query = query * self.head_dim**-0.5
        # Keys/values of the window before (zeros before the first, masked below) and this one.
        key = torch.cat([F.pad(key, (0, 0, 0, 0, 1, 0))[:, :, :-1], key], dim=3)
        value = torch.cat([F.pad(value, (0, 0, 0, 0, 1, 0))[:, :, :-1], value], dim=3)
        # Query i of a window sits at span position w + i; key j at j. Causal: j <= w + i.
        # The first window has no previous one: its first w key slots are padding.
        position = torch.arange(2 * w, device=x.device)
        masked = position[None, :] > (position[w:, None])  # (w, 2w)
        masked = masked[None].expand(windows, w, 2 * w).clone()
        masked[0, :, :w] = True
        # Windows are independent: score a group at a time so long inputs need bounded memory
        # (the same arithmetic per window as all at once).
        group = max(1, self.max_scores // max(1, B * self.heads * w * 2 * w))
        outputs = []
        for start in range(0, windows, group):
            part = slice(start, start + group)
            scores = query[:, :, part] @ key[:, :, part].transpose(-1, -2)  # (B, heads, group, w, 2w)
            if bias is not None:
                scores = scores + bias[None, :, None]
            scores = scores.masked_fill(masked[part], -torch.finfo(scores.dtype).max)
            outputs.append(scores.softmax(dim=-1) @ value[:, :, part])  # (B, heads, group, w, head_dim)
        out = torch.cat(outputs, dim=2) if len(outputs) > 1 else outputs[0]
        out = out.permute(0, 2, 3, 1, 4).reshape(B, windows * w, self.heads * self.head_dim)[:, :N]
        return self.to_out(out)


class GegluFeedForward(nn.Module):
    """LayerNorm -> Linear(dim, 2 inner) -> a * GELU(gate) -> Linear(inner, dim); no biases."""

    def __init__(self, dim: int, mult: float = 4.0) -> None:
        super().__init__()
        inner = int(dim * mult * 2 / 3)
        self.norm = nn.LayerNorm(dim)
        self.proj_in = nn.Linear(dim, 2 * inner, bias=False)
        self.proj_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, frames, dim) -> (batch, frames, dim)."""
        hidden, gate = self.proj_in(self.norm(x)).chunk(2, dim=-1)
        return self.proj_out(hidden * F.gelu(gate))


class LocalTransformerLayer(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int, window: int, ff_mult: float) -> None:
        super().__init__()
        self.attention = LocalSelfAttention(dim, heads, head_dim, window)
        self.feed_forward = GegluFeedForward(dim, ff_mult)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attention(x, bias)
        return x + self.feed_forward(x)


class LocalTransformer(nn.Module):
    """``depth`` causal local-attention layers sharing one distance bias: (batch, frames, dim) -> same.

    Frame t's output depends on frames ``t - 2 window + 1 .. t`` of each layer's input only
    (causal, two windows at most), so items of a batch never mix and trailing padding
    never reaches earlier frames.
    """

    def __init__(
        self, dim: int, depth: int, heads: int, head_dim: int, window: int, ff_mult: float = 4.0
    ) -> None:
        super().__init__()
        self.window = window
        self.position_bias = DynamicPositionBias(dim // 2, heads)
        self.layers = nn.ModuleList(
            LocalTransformerLayer(dim, heads, head_dim, window, ff_mult) for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.position_bias(self.window).to(x.dtype)
        for layer in self.layers:
            x = layer(x, bias)
        return x
