"""Vocos-style decoder blocks: GroupNorm ResNet blocks, a pre-norm transformer layer, an ISTFT head.

Everything here works on ``(batch, time, hidden)`` sequences (the ResNet blocks transpose
to channels-first internally), as in X-Codec2's decoder. Attribute names match the
Transformers layout so state-dict keys carry over one to one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

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

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": F.silu,
    "swish": F.silu,
    "gelu": F.gelu,
    "relu": F.relu,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
}


def activation_function(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The elementwise function a Transformers ``hidden_act`` string names."""
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unsupported activation {name!r}; known: {sorted(_ACTIVATIONS)}") from None


class ResNetBlock(nn.Module):
    """Two (GroupNorm -> SiLU -> conv3) stages with a skip: (batch, time, C) -> (batch, time, C)."""

    def __init__(self, channels: int, num_groups: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups, channels, eps=1e-6, affine=True)
        self.conv1 = nn.Conv1d(channels, channels, kernel_size=3, padding=1)
        self.norm2 = nn.GroupNorm(num_groups, channels, eps=1e-6, affine=True)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size=3, padding=1)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        h = self.conv1(F.silu(self.norm1(x)))
        h = F.silu(self.norm2(h))
        h = F.dropout(h, p=self.dropout, training=self.training)
        return (self.conv2(h) + x).transpose(1, 2)


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
    """Bidirectional multi-head (or grouped-query) attention, no mask: (batch, time, hidden) -> same."""

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
        self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """x: (batch, time, hidden); rotary: cos/sin broadcastable to (batch, heads, time, head_dim)."""
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
            q, k, v, dropout_p=self.dropout if self.training else 0.0, scale=self.head_dim**-0.5
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
        return self.fc2(self.activation(self.fc1(x)))


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
        self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rotary)
        return x + self.mlp(self.post_attention_layernorm(x))


class ISTFTHead(nn.Module):
    """Linear -> (log-magnitude, phase) -> inverse STFT with "same" padding (Vocos).

    (batch, frames, hidden) -> (batch, 1, frames * hop_length). torch.istft has no
    "same" mode, so the overlap-add is written out: inverse real FFT per frame, Hann
    window, overlap-add with ``fold``, crop ``(n_fft - hop) / 2`` each side, divide by
    the summed squared window.
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_magnitude, phase = self.linear(x).chunk(2, dim=-1)
        # Complex math needs float32 (no ComplexHalf FFT); the clamp (at 100) is the original's.
        magnitude = log_magnitude.float().exp().clamp(max=1e2)
        spectrum = torch.polar(magnitude, phase.float())
        frames = torch.fft.irfft(spectrum, self.n_fft, dim=-1, norm="backward").transpose(1, 2)
        window = self.window.float()
        audio = self._overlap_add(frames * window[None, :, None])
        num_frames = spectrum.shape[1]
        envelope = self._overlap_add(window.square()[None, :, None].expand(1, -1, num_frames))
        # The floor only matters at the very edges, where few frames overlap.
        return (audio / envelope.clamp(min=1e-11)).unsqueeze(1)
