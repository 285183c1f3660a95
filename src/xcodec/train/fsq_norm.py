"""Training-only batch standardisation of the FSQ input digits (the fix for issue 12's code collapse).

Trained from scratch, the encoder's Adam updates move the FSQ input of every frame the same
way (a common shift and a growing gain), out to where the tanh bound saturates; there the
straight-through gradient is zero and every frame keeps one code while the decoder learns
an average sound (bench/RESULTS.md ``train_collapse``). Standardising each digit over the
batch's frames inside the training graph takes the common shift and the gain out of what
the quantiser sees, and out of the gradient too (the normalisation's Jacobian removes
both), so the digits keep spreading over the levels whatever the encoder does.

Data path (training; F frames, D = len(quantization_levels) digits)::

    fused (B, F, quantization_dim) --project_in--> digits (B, F, D)
    digits --standardise per digit over all B x F frames (global batch under DDP)--> (B, F, D)
    --bound (twice, as the model does)--> round (straight-through) --> project_out

Left alone, the raw digits' offset and scale drift freely once the loss no longer depends
on them: the gradient along those directions is rounding noise, which Adam scales up to
full-size steps (measured: a per-digit spread of 5e5 after 200 tiny steps, which would
overflow fp16). :attr:`FsqInputNorm.drift_penalty` (recipe ``loss_weights.fsq_drift``)
holds the raw digits near zero mean and unit spread, so the normalisation stays close to
the identity and the folded weights close to the trained ones.

The running mean and variance (exponential average, as BatchNorm keeps) are folded into
``project_in`` for inference (:meth:`FsqInputNorm.folded`): ``(W x + b - mean) / std`` is
again one ``Linear``, so a checkpoint this writes has the X-Codec2 layout and the FSQ math
of inference (and transformers parity) is unchanged. In eval mode the running statistics
are used, which is what the folded checkpoint computes.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from xcodec.layers.fsq import ProjectedFSQ

__all__ = ["FsqInputNorm", "quantize_with_input_norm"]


class FsqInputNorm(nn.Module):
    """Standardise (batch, frames, digits) FSQ inputs per digit; no learned scale or shift.

    A learned gain would let the digits grow into the saturated tanh again, which is the
    failure this removes. momentum: weight of the newest batch in the running statistics
    (the first batch sets them). Under ``torch.distributed`` with more than one process the
    batch statistics are those of the global batch (all-reduced, differentiably), so N
    processes with batch B / N compute what one process with batch B does.
    """

    def __init__(self, digits: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum must be in (0, 1], got {momentum}")
        self.momentum = momentum
        self.eps = eps
        self.running_mean: torch.Tensor
        self.running_var: torch.Tensor
        self.num_batches: torch.Tensor
        self.register_buffer("running_mean", torch.zeros(digits))
        self.register_buffer("running_var", torch.ones(digits))
        self.register_buffer("num_batches", torch.zeros((), dtype=torch.long))
        # mean over digits of batch mean^2 + log(batch variance)^2 of the last training call
        # (None in eval): zero for zero-mean, unit-spread raw digits; a loss term keeps them so.
        self.drift_penalty: torch.Tensor | None = None

    def forward(self, digits: torch.Tensor) -> torch.Tensor:
        """digits: (batch, frames, D) float32 -> (batch, frames, D) standardised per digit."""
        if self.training:
            mean, var = _batch_statistics(digits.reshape(-1, digits.shape[-1]))
            with torch.no_grad():
                if int(self.num_batches) == 0:
                    self.running_mean.copy_(mean)
                    self.running_var.copy_(var)
                else:
                    self.running_mean.lerp_(mean.detach(), self.momentum)
                    self.running_var.lerp_(var.detach(), self.momentum)
                self.num_batches.add_(1)
            self.drift_penalty = (mean.square() + (var + self.eps).log().square()).mean()
        else:
            mean, var = self.running_mean, self.running_var
            self.drift_penalty = None
        return (digits - mean) / (var + self.eps).sqrt()

    @torch.no_grad()
    def folded(self, project_in: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight (D, dim), bias (D,)) of the one ``Linear`` that computes ``self(project_in(x))`` in eval mode."""
        std = (self.running_var + self.eps).sqrt()
        weight = project_in.weight.float() / std[:, None]
        bias = (project_in.bias.float() - self.running_mean) / std
        return weight.to(project_in.weight.dtype), bias.to(project_in.bias.dtype)


def _batch_statistics(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """values: (N, D) -> (mean (D,), biased variance (D,)), over every process's N rows when distributed.

    Two passes (mean, then squared deviations): the raw digits may be in the thousands
    while their spread is small, where E[x^2] - E[x]^2 would cancel catastrophically.
    """
    import torch.distributed as dist

    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    count = torch.tensor(float(values.shape[0]), device=values.device)
    total = values.sum(dim=0)
    if distributed:
        from torch.distributed.nn.functional import all_reduce

        dist.all_reduce(count)
        total = all_reduce(total)
    mean = total / count
    squares = (values - mean).square().sum(dim=0)
    if distributed:
        squares = all_reduce(squares)
    return mean, squares / count


def quantize_with_input_norm(
    quantizer: ProjectedFSQ, norm: FsqInputNorm, fused: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``quantizer(fused)`` with ``norm`` between ``project_in`` and the bound.

    fused: (batch, frames, dim) -> (quantised (batch, frames, dim), indices (batch, frames) int32).
    The projection and the rounding run in float32 under autocast, as ``ProjectedFSQ`` does.
    """
    device_type = fused.device.type
    autocast_on = device_type in ("cpu", "cuda") and torch.is_autocast_enabled(device_type)
    with torch.autocast(device_type, enabled=False) if autocast_on else contextlib.nullcontext():
        project_in = quantizer.project_in
        digits = F.linear(fused.float(), project_in.weight.float(), project_in.bias.float())
        digits = norm(digits)
        if quantizer.bound_twice:
            digits = quantizer.quantizer.bound(digits)
        unit, indices = quantizer.quantizer(digits)
    return quantizer.project_out(unit.to(quantizer.project_out.weight.dtype)), indices
