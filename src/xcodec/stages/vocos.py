"""The Vocos decoder's GroupNorm ResNet block, on ``(batch, time, hidden)`` sequences.

The decoder (:class:`xcodec.models.xcodec2.Xcodec2Decoder`'s backbone) is ResNet blocks,
pre-norm transformer layers (:mod:`xcodec.layers.transformer`) and an ISTFT head
(:mod:`xcodec.layers.istft`). Attribute names match the Transformers layout so state-dict
keys carry over one to one.

Batch invariance: with per-item ``lengths`` (batch,) of valid frames, padded frames are
zeroed before each conv and left out of GroupNorm statistics, so every item's valid
output equals its alone-run. ``None`` is the plain (reference) computation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xcodec.ops.masking import masked_group_norm, zero_padding

__all__ = ["ResNetBlock"]


class ResNetBlock(nn.Module):
    """Two (GroupNorm -> SiLU -> conv3) stages with a skip: (batch, time, C) -> (batch, time, C)."""

    def __init__(self, channels: int, num_groups: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups, channels, eps=1e-6, affine=True)
        self.conv1 = nn.Conv1d(channels, channels, kernel_size=3, padding=1)
        self.norm2 = nn.GroupNorm(num_groups, channels, eps=1e-6, affine=True)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size=3, padding=1)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, time, C); lengths: (batch,) valid frames or None (all valid).

        Plain channels-first convs: at 1024 channels and a few hundred frames they beat the
        channels-last kernels of :mod:`xcodec.ops.layout` (11 against 18 ms at 250 frames).
        """
        x = x.transpose(1, 2)
        h = self.conv1(zero_padding(F.silu(masked_group_norm(x, self.norm1, lengths)), lengths))
        h = F.silu(masked_group_norm(h, self.norm2, lengths))
        h = F.dropout(h, p=self.dropout, training=self.training)
        return (self.conv2(zero_padding(h, lengths)) + x).transpose(1, 2)
