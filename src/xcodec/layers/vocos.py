"""Vocos-style decoder blocks: GroupNorm ResNet blocks, a pre-norm transformer layer, an ISTFT head.

Everything here works on ``(batch, time, hidden)`` sequences (the ResNet blocks transpose
to channels-first internally), as in X-Codec2's decoder. Attribute names match the
Transformers layout so state-dict keys carry over one to one.

Batch invariance: the ResNet blocks and the ISTFT head take optional per-item ``lengths``
(batch,) of valid frames, the transformer layer an ``attention_mask`` built from them
(:func:`xcodec.layers.masking.attention_key_mask`). With them, padded frames are zeroed
before each conv, left out of GroupNorm statistics, masked as attention keys and left out
of the overlap-add and its window envelope, so every item's valid output equals its
alone-run. ``None`` everywhere is the plain (reference) computation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xcodec.layers.activations import activation_function
from xcodec.layers.masking import masked_group_norm, zero_padding

__all__ = [
    "MLP",
    "ISTFTHead",
    "RMSNorm",
    "ResNetBlock",
    "RotaryEmbedding",
    "SelfAttention",
    "TransformerLayer",
    "activation_function",
]


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
        channels-last kernels of :mod:`xcodec.layers.layout` (11 against 18 ms at 250 frames).
        """
        x = x.transpose(1, 2)
        h = self.conv1(zero_padding(F.silu(masked_group_norm(x, self.norm1, lengths)), lengths))
        h = F.silu(masked_group_norm(h, self.norm2, lengths))
        h = F.dropout(h, p=self.dropout, training=self.training)
        return (self.conv2(zero_padding(h, lengths)) + x).transpose(1, 2)


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last axis, computed in float32 (T5/Llama style)."""

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        input_dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(input_dtype)


class RotaryEmbedding(nn.Module):
    """cos/sin tables of rotary position embedding ("rotate half" layout), for given positions."""

    def __init__(self, head_dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        self.inv_freq: torch.Tensor
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """positions: (n,) -> cos, sin each (n, head_dim) in ``dtype``."""
        angles = positions[:, None].float() * self.inv_freq[None, :].float()
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos().to(dtype), angles.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (i, i + head_dim/2) of ``x`` by the angles in cos/sin (broadcast against x)."""
    return x * cos + _rotate_half(x) * sin


class SelfAttention(nn.Module):
    """Bidirectional multi-head (or grouped-query) attention: (batch, time, hidden) -> same."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        bias: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads})")
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.dropout = dropout
        self.q_proj = nn.Linear(hidden_size, num_heads * head_dim, bias=bias)
        self.k_proj = nn.Linear(hidden_size, num_kv_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(hidden_size, num_kv_heads * head_dim, bias=bias)
        self.o_proj = nn.Linear(num_heads * head_dim, hidden_size, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (batch, time, hidden); rotary: cos/sin broadcastable to (batch, heads, time, head_dim);
        attention_mask: bool broadcastable to (batch, heads, time, time), True where a query may
        attend a key (e.g. :func:`xcodec.layers.masking.attention_key_mask`), or None."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        if rotary is not None:
            cos, sin = rotary
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if self.num_kv_heads != self.num_heads:
            repeats = self.num_heads // self.num_kv_heads
            k = k.repeat_interleave(repeats, dim=1)
            v = v.repeat_interleave(repeats, dim=1)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attention_mask,
            dropout_p=self.dropout if self.training else 0.0,
            scale=self.head_dim**-0.5,
        )
        return self.o_proj(out.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim))


class MLP(nn.Module):
    """fc1 -> activation -> fc2, no biases: (..., hidden) -> (..., hidden)."""

    def __init__(self, hidden_size: int, intermediate_size: int, activation: str = "silu") -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.fc2 = nn.Linear(intermediate_size, hidden_size, bias=False)
        self.activation = activation_function(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.fc1(x)
        if self.activation is F.silu and not (torch.is_grad_enabled() and hidden.requires_grad):
            # In place: the (time, intermediate) tensor is the layer's largest; no copy of it.
            return self.fc2(F.silu(hidden, inplace=True))
        return self.fc2(self.activation(hidden))


class TransformerLayer(nn.Module):
    """Pre-RMSNorm attention and MLP, each with a residual: (batch, time, hidden) -> same."""

    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        *,
        eps: float = 1e-6,
        activation: str = "silu",
        attention_bias: bool = False,
        attention_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.self_attn = SelfAttention(
            hidden_size, num_heads, num_kv_heads, head_dim, bias=attention_bias, dropout=attention_dropout
        )
        self.mlp = MLP(hidden_size, intermediate_size, activation)
        self.input_layernorm = RMSNorm(hidden_size, eps=eps)
        self.post_attention_layernorm = RMSNorm(hidden_size, eps=eps)

    def forward(
        self,
        x: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rotary, attention_mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class ISTFTHead(nn.Module):
    """Linear -> (log-magnitude, phase) -> inverse STFT with "same" padding (Vocos).

    (batch, frames, hidden) -> (batch, 1, frames * hop_length). torch.istft has no
    "same" mode, so the overlap-add is written out: inverse real FFT per frame, Hann
    window, overlap-add with ``fold``, crop ``(n_fft - hop) / 2`` each side, divide by
    the summed squared window.

    With ``lengths``, an item's frames past its length are dropped from both the overlap-add
    and the window envelope, so its first ``lengths * hop_length`` samples equal its
    alone-run (whose envelope tapers at its own end, not at the batch's).
    """

    def __init__(self, hidden_size: int, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.padding = (n_fft - hop_length) // 2
        self.linear = nn.Linear(hidden_size, n_fft + 2)
        self.window: torch.Tensor
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: (batch, n_fft, num_frames) -> (batch, samples) with the "same" crop applied."""
        _, _, num_frames = frames.shape
        output_size = (num_frames - 1) * self.hop_length + self.n_fft
        summed = F.fold(
            frames, output_size=(1, output_size), kernel_size=(1, self.n_fft), stride=(1, self.hop_length)
        )
        return summed[:, 0, 0, self.padding : output_size - self.padding]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, frames, hidden); lengths: (batch,) valid frames or None -> (batch, 1, frames * hop)."""
        log_magnitude, phase = self.linear(x).chunk(2, dim=-1)
        # Complex math needs float32 (no ComplexHalf FFT); the clamp (at 100) is the original's.
        magnitude = log_magnitude.float().exp().clamp(max=1e2)
        spectrum = torch.polar(magnitude, phase.float())
        frames = torch.fft.irfft(spectrum, self.n_fft, dim=-1, norm="backward").transpose(1, 2)
        window = self.window.float()
        num_frames = spectrum.shape[1]
        audio = self._overlap_add(zero_padding(frames * window[None, :, None], lengths))
        if lengths is None:
            envelope = self._overlap_add(window.square()[None, :, None].expand(1, -1, num_frames))
        else:
            # Each item's own envelope: only its valid frames overlap-add their windows.
            squared = window.square()[None, :, None].expand(x.shape[0], -1, num_frames)
            envelope = self._overlap_add(zero_padding(squared, lengths))
        # The floor only matters at the very edges, where few frames overlap.
        return (audio / envelope.clamp(min=1e-11)).unsqueeze(1)
