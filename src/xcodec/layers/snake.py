"""Snake activations: DAC's ``Snake1d`` and BigVGAN's ``SnakeBeta`` (periodic, per channel).

Both map (batch, channels, time) -> (batch, channels, time) and keep the input's memory
layout; their no-gradient paths compute in one buffer with the same operations.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Snake1d", "SnakeBeta"]


class Snake1d(nn.Module):
    """Snake activation ``x + sin(alpha x)^2 / alpha`` with one learnt ``alpha`` per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(batch, channels, time) -> (batch, channels, time), in the input's memory layout."""
        # The 1e-9 keeps alpha = 0 finite; written as in DAC so the rounding is the same.
        inverse_alpha = (self.alpha + 1e-9).reciprocal()
        if torch.is_grad_enabled() and (hidden_states.requires_grad or self.alpha.requires_grad):
            return hidden_states + inverse_alpha * torch.sin(self.alpha * hidden_states).pow(2)
        # One buffer instead of four: the same operations on the same values (products and
        # sums commute exactly, pow(2) is a product).
        wave = torch.mul(hidden_states, self.alpha)
        return wave.sin_().square_().mul_(inverse_alpha).add_(hidden_states)


class SnakeBeta(nn.Module):
    """``x + sin(x * e^alpha)^2 / e^beta`` per channel (alpha, beta stored as logarithms).

    x: (batch, channels, time) -> (batch, channels, time).
    """

    # Keeps 1 / e^beta finite; part of the reference arithmetic, so it stays.
    no_div_by_zero = 1e-9

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frequency = self.alpha.exp()[None, :, None]
        inverse_magnitude = 1.0 / (self.beta.exp()[None, :, None] + self.no_div_by_zero)
        return x + inverse_magnitude * torch.sin(x * frequency).pow(2)

    def forward_(self, x: torch.Tensor, channel_dim: int = 1) -> torch.Tensor:
        """In place, channels on ``channel_dim``; the same arithmetic as :meth:`forward`
        (``pow(2)`` is a product, and ``+``/``*`` commute exactly)."""
        shape = [1] * x.dim()
        shape[channel_dim] = -1
        frequency = self.alpha.exp().to(x.dtype).view(shape)
        inverse_magnitude = (1.0 / (self.beta.exp() + self.no_div_by_zero)).to(x.dtype).view(shape)
        wave = torch.mul(x, frequency)
        wave.sin_().square_().mul_(inverse_magnitude)
        return x.add_(wave)
