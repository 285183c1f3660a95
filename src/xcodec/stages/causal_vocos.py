"""X-Codec2-Streaming's decoder blocks: the Vocos ResNet block made causal (issue 15, item 4).

:class:`CausalResNetBlock` is :class:`~xcodec.stages.vocos.ResNetBlock` with its two
3-tap convs left-padded (:class:`~xcodec.layers.causal.CausalConv1d`) and its
GroupNorm-over-time replaced by a per-frame normalisation
(:class:`~xcodec.layers.causal.FrameGroupNorm`) with the same ``weight``/``bias``, so the
block's state-dict keys and shapes are the bidirectional block's and a published
checkpoint's weights load into it unchanged (the start of a decoder-only fine-tune).

Why the per-frame statistics are taken over all channels (one group), not over each of the
32 groups: at the demo's width (128) a group is 4 channels, and normalising 4 numbers per
frame removes half of each frame's information (their mean and scale); over all channels it
removes 2 numbers of 128 (of 1024 at full size), like the LayerNorm of a transformer.
GroupNorm-over-time instead removes a per-group offset and scale shared by the whole clip,
which no causal, time-local norm can reproduce: the fine-tune adapts the weights to it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xcodec.layers.causal import CausalConv1d, FrameGroupNorm
from xcodec.ops.masking import zero_padding

__all__ = ["CausalResNetBlock"]


class CausalResNetBlock(nn.Module):
    """Two (per-frame norm -> SiLU -> causal conv3) stages with a skip: (batch, time, C) -> (batch, time, C)."""

    def __init__(self, channels: int, num_groups: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = FrameGroupNorm(num_groups, channels, eps=1e-6)
        self.conv1 = CausalConv1d(channels, channels, kernel_size=3)
        self.norm2 = FrameGroupNorm(num_groups, channels, eps=1e-6)
        self.conv2 = CausalConv1d(channels, channels, kernel_size=3)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, time, C); lengths: (batch,) valid frames or None.

        Padding sits after each item's valid frames, which a causal block never looks at;
        it is still zeroed before the convs so padded frames stay finite and small.
        """
        x = x.transpose(1, 2)
        h = self.conv1(zero_padding(F.silu(self.norm1(x)), lengths))
        h = F.silu(self.norm2(h))
        h = F.dropout(h, p=self.dropout, training=self.training)
        return (self.conv2(zero_padding(h, lengths)) + x).transpose(1, 2)
