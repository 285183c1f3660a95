"""Finite scalar quantisation (Mentzer et al. 2023) with the linear projections around it.

Each of ``len(levels)`` dimensions is squashed into a bounded range and rounded to one of
``levels[d]`` values; a code is the mixed-radix number of those digits (first dimension
least significant), so ``prod(levels)`` codes exist and no codebook is learned.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FiniteScalarQuantizer", "ProjectedFSQ"]


class FiniteScalarQuantizer(nn.Module):
    """Bound, round and index ``(..., len(levels))`` vectors; no trainable state.

    The buffers are non-persistent (derived from ``levels``), so a checkpoint carries none.
    """

    def __init__(self, levels: Sequence[int]) -> None:
        super().__init__()
        self.quantization_levels = [int(level) for level in levels]
        levels_t = torch.tensor(self.quantization_levels, dtype=torch.int32)
        # Mixed radix: digit d is worth prod(levels[:d]).
        basis = torch.cumprod(torch.tensor([1, *self.quantization_levels[:-1]]), dim=0, dtype=torch.int32)
        all_indices = torch.arange(math.prod(self.quantization_levels))[:, None]
        self.levels: torch.Tensor
        self.basis: torch.Tensor
        self.codebook: torch.Tensor
        self.register_buffer("levels", levels_t, persistent=False)
        self.register_buffer("basis", basis, persistent=False)
        # codebook[i] = the normalised vector (values in [-1, 1]) code i stands for.
        self.register_buffer("codebook", self._digits_to_unit(all_indices), persistent=False)

    @property
    def codebook_size(self) -> int:
        return math.prod(self.quantization_levels)

    def _digits_to_unit(self, indices: torch.Tensor) -> torch.Tensor:
        half_width = self.levels // 2
        digits = (indices // self.basis) % self.levels
        return (digits - half_width) / half_width

    def bound(self, x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
        """Squash ``x`` (..., dims) with a shifted tanh into ``[-(L-1)/2, (L-1)/2]`` (even L: offset by 1/2).

        ``eps`` widens the range a little so rounding can reach the outermost levels.
        """
        half_range = (self.levels - 1) * (1 + eps) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0)
        shift = (offset / half_range).atanh()
        return (x + shift).tanh() * half_range - offset

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (..., dims) -> (unit codes (..., dims) in [-1, 1], indices (...) int32).

        Runs in float32 whatever the input dtype: rounding at a reduced precision would
        pick different codes than the reference. Returns the codes in the input dtype.
        """
        input_dtype = x.dtype
        x = self.bound(x.float())
        half_width = self.levels // 2
        rounded = x.round()
        # Straight-through estimator: the forward value is `rounded` exactly (x - round(x)
        # is computed without error, Sterbenz), so inference codes are unchanged, and the
        # backward pass treats rounding as the identity (xcodec.train trains through it;
        # pinned by tests/test_train_parts.py::test_ste_gives_encoder_gradient).
        unit = (x + (rounded - x).detach()) / half_width
        # The reference recovers digits from the unit codes, not from `rounded`; same values.
        digits = unit * half_width + half_width
        indices = (digits * self.basis).sum(dim=-1).to(torch.int32)
        return unit.to(input_dtype), indices

    def indices_to_unit(self, indices: torch.Tensor) -> torch.Tensor:
        """indices: (...) integer -> (..., dims) normalised codes in [-1, 1] (a codebook lookup)."""
        return self.codebook[indices]


class ProjectedFSQ(nn.Module):
    """A single FSQ codebook between a down- and an up-projection (X-Codec2's ``ResidualFSQ`` with one stage).

    ``bound_twice``: X-Codec2's original code bounds once in the residual wrapper and again
    inside FSQ; the published weights were trained that way, so the second ``tanh`` is part
    of the model, not a bug to fix. Pinned by tests/test_xcodec2_model.py
    (``test_fsq_matches_reference``).
    """

    def __init__(self, dim: int, levels: Sequence[int], *, bound_twice: bool = True) -> None:
        super().__init__()
        self.quantizer = FiniteScalarQuantizer(levels)
        self.project_in = nn.Linear(dim, len(levels))
        self.project_out = nn.Linear(len(levels), dim)
        self.bound_twice = bound_twice

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (batch, time, dim) -> (quantised (batch, time, dim), indices (batch, time) int32).

        Differentiable: the rounding passes gradients straight through (see
        :meth:`FiniteScalarQuantizer.forward`), which is how training reaches the encoder.
        """
        # Under autocast (mixed-precision training) the projection would run in bf16/fp16
        # and move codes; the decisions stay float32. Inference (no autocast) and export
        # trace no context manager at all.
        device_type = x.device.type
        autocast_on = device_type in ("cpu", "cuda") and torch.is_autocast_enabled(device_type)
        with torch.autocast(device_type, enabled=False) if autocast_on else contextlib.nullcontext():
            if x.dtype == torch.float32:
                digits_in = self.project_in(x)
            else:
                # Reduced precision: the rounding decisions are made in float32 (a 1024 x 8
                # product, nothing to save), so bf16/fp16 codes differ from fp32 ones only
                # where the features fed in do.
                digits_in = F.linear(x.float(), self.project_in.weight.float(), self.project_in.bias.float())
            if self.bound_twice:
                digits_in = self.quantizer.bound(digits_in)
            unit, indices = self.quantizer(digits_in)
        return self.project_out(unit.to(self.project_out.weight.dtype)), indices

    def from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """indices: (batch, time) integer -> (batch, time, dim)."""
        return self.project_out(self.quantizer.indices_to_unit(indices).to(self.project_out.weight.dtype))
