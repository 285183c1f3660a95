"""Per-item lengths through a padded batch: masks, conv output lengths, padding made invisible.

A padded batch is batch-invariant when every item's valid outputs equal what it gets
alone. Layers that look across time see the padding unless told where each item ends;
these helpers tell them, and know nothing of any particular codec.

Conventions: ``lengths`` is a ``(batch,)`` integer tensor of valid steps per item, each
item's valid steps being a prefix of the time axis. ``None`` means "every item is full
length" and every helper then returns its input untouched, so an unpadded batch costs
nothing: call :func:`lengths_if_padded` once at the top of a model and pass its result
down.

API
---
Lengths and masks:
    ``lengths_to_mask(lengths, max_length) -> (batch, max_length) bool``
    ``mask_to_lengths(mask) -> (batch,) int64``: counts the valid steps of a
        ``(batch, time)`` or ``(batch, 1, time)`` 0/1 mask (its ones must form a prefix).
    ``lengths_if_padded(lengths, max_length) -> lengths | None``: None when no item is
        shorter than ``max_length`` (so the fast unmasked path runs).
    ``attention_key_mask(lengths, max_length) -> (batch, 1, 1, max_length) bool``: a
        ``scaled_dot_product_attention`` mask, True where keys may be attended.
Lengths through layers:
    ``conv_output_lengths(lengths, kernel_size, stride=1, padding=0, dilation=1)``
    ``conv1d_output_lengths(conv, lengths)``: the same, read off an ``nn.Conv1d``.
    ``conv_transpose_output_lengths(lengths, kernel_size, stride=1, padding=0, output_padding=0, dilation=1)``
Making the padding invisible, ``x`` of shape ``(batch, ..., time)`` unless ``dim`` says:
    ``zero_padding(x, lengths, dim=-1)``: zeros past each length; call before every
        zero-padded convolution (its alone-run sees zeros there).
    ``replicate_pad(x, lengths, left, right)``: ``F.pad(x, (left, right), "replicate")``
        as each item alone gets it: the ``right`` steps after each item's end hold its
        last valid step. Touches only those steps (no pass over the whole tensor).
    ``masked_group_norm(x, norm, lengths)``: ``nn.GroupNorm`` whose statistics cover the
        valid steps only.

Past-the-end outputs of all these are unspecified (finite for finite inputs); only the
valid prefix is meaningful.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "attention_key_mask",
    "conv1d_output_lengths",
    "conv_output_lengths",
    "conv_transpose_output_lengths",
    "lengths_if_padded",
    "lengths_to_mask",
    "mask_to_lengths",
    "masked_group_norm",
    "replicate_pad",
    "zero_padding",
]


def lengths_to_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """(batch,) lengths -> (batch, max_length) bool, True on each item's first ``length`` steps."""
    steps = torch.arange(max_length, device=lengths.device)
    return steps[None, :] < lengths[:, None]


def mask_to_lengths(mask: torch.Tensor) -> torch.Tensor:
    """(batch, time) or (batch, 1, time) 0/1 or bool mask -> (batch,) int64 count of valid steps."""
    return mask.reshape(mask.shape[0], -1).to(torch.long).sum(dim=-1)


def lengths_if_padded(lengths: torch.Tensor | None, max_length: int) -> torch.Tensor | None:
    """``lengths`` as int64 clamped to ``max_length``, or None if every item fills ``max_length``.

    The None answer is what keeps an unpadded batch on the plain (reference) path.
    """
    if lengths is None:
        return None
    lengths = lengths.to(torch.long).clamp(max=max_length)
    if torch.compiler.is_compiling():
        # No value-dependent branch in a compiled graph: the masked path gives the same
        # values on a full batch, only slower.
        return lengths
    if bool((lengths == max_length).all()):
        return None
    return lengths


def attention_key_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """(batch,) lengths -> (batch, 1, 1, max_length) bool; True where a key may be attended.

    An item of length 0 would leave a query with no key (NaN from softmax), so it keeps
    its first key; its outputs are meaningless anyway.
    """
    return lengths_to_mask(lengths.clamp(min=1), max_length)[:, None, None, :]


def conv_output_lengths(
    lengths: torch.Tensor,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    clamp: bool = True,
) -> torch.Tensor:
    """Valid output steps of a convolution over each item's valid input alone (PyTorch's formula).

    ``padding`` is the total per side (symmetric). Lengths too short for one output give 0,
    or with ``clamp=False`` the formula's value (negative: how far from one output it is).
    """
    span = dilation * (kernel_size - 1) + 1
    out = torch.div(lengths + 2 * padding - span, stride, rounding_mode="floor") + 1
    return out.clamp(min=0) if clamp else out


def conv1d_output_lengths(conv: nn.Conv1d, lengths: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """:func:`conv_output_lengths` with the kernel, stride, padding and dilation of ``conv``."""
    if isinstance(conv.padding, str):
        raise ValueError(f"string padding {conv.padding!r} is not supported; give the padding in steps")
    return conv_output_lengths(
        lengths, conv.kernel_size[0], conv.stride[0], conv.padding[0], conv.dilation[0], clamp
    )


def conv_transpose_output_lengths(
    lengths: torch.Tensor,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    output_padding: int = 0,
    dilation: int = 1,
) -> torch.Tensor:
    """Valid output steps of a transposed convolution over each item's valid input alone."""
    span = dilation * (kernel_size - 1) + 1
    return ((lengths - 1) * stride - 2 * padding + span + output_padding).clamp(min=0)


def _step_mask(x: torch.Tensor, lengths: torch.Tensor, dim: int) -> torch.Tensor:
    """Bool mask broadcastable against ``x``: True on valid steps of axis ``dim``."""
    dim = dim % x.dim()
    mask = lengths_to_mask(lengths.to(x.device), x.shape[dim])  # (batch, time)
    shape = [1] * x.dim()
    shape[0], shape[dim] = x.shape[0], x.shape[dim]
    return mask.view(shape)


def zero_padding(x: torch.Tensor, lengths: torch.Tensor | None, dim: int = -1) -> torch.Tensor:
    """``x`` (batch, ...) with the steps of axis ``dim`` past each item's length set to 0.

    Uses ``where`` rather than a product, so NaN or Inf in the padding cannot leak through.
    """
    if lengths is None:
        return x
    return torch.where(_step_mask(x, lengths, dim), x, torch.zeros((), dtype=x.dtype, device=x.device))


def replicate_pad(x: torch.Tensor, lengths: torch.Tensor | None, left: int, right: int) -> torch.Tensor:
    """(batch, channels, time) -> (batch, channels, left + time + right), replicate-padded per item.

    Item i's steps ``[left + lengths[i], left + lengths[i] + right)`` repeat its last valid
    step, as the item alone padded this way would have them (clipped to the output);
    steps further on are left as they are: a filter that reads ``right`` steps past its
    input's end never reaches them from a valid output.
    """
    padded = F.pad(x, (left, right), mode="replicate")
    if lengths is None or right == 0:
        return padded
    B, C, T = x.shape
    last = (lengths.to(device=x.device, dtype=torch.long) - 1).clamp(min=0, max=T - 1).view(B, 1, 1)
    last_value = x.gather(-1, last.expand(B, C, 1))  # (batch, channels, 1)
    positions = (left + last + 1 + torch.arange(right, device=x.device)).clamp(max=left + T + right - 1)
    # Writes into the fresh padded tensor only: no pass over the valid steps.
    return padded.scatter_(-1, positions.expand(B, C, right), last_value.expand(B, C, right))


def masked_group_norm(x: torch.Tensor, norm: nn.GroupNorm, lengths: torch.Tensor | None) -> torch.Tensor:
    """``norm(x)`` for x (batch, channels, time), statistics over each item's valid steps only.

    Same arithmetic as ``nn.GroupNorm`` (biased variance, ``eps`` inside the root); computed
    in float32 at least, then cast back to ``x``'s dtype.
    """
    if lengths is None:
        return norm(x)
    B, C, T = x.shape
    groups = norm.num_groups
    valid = _step_mask(x, lengths, -1).view(B, 1, 1, T)
    compute_dtype = torch.promote_types(x.dtype, torch.float32)
    grouped = x.to(compute_dtype).view(B, groups, C // groups, T)
    count = (lengths.to(device=x.device, dtype=compute_dtype).clamp(min=1) * (C // groups)).view(B, 1, 1, 1)
    zero = torch.zeros((), dtype=compute_dtype, device=x.device)
    mean = torch.where(valid, grouped, zero).sum(dim=(2, 3), keepdim=True) / count
    centred = grouped - mean
    variance = torch.where(valid, centred, zero).square().sum(dim=(2, 3), keepdim=True) / count
    normalised = (centred * torch.rsqrt(variance + norm.eps)).view(B, C, T)
    if norm.affine:
        normalised = (
            normalised * norm.weight.to(compute_dtype)[None, :, None]
            + norm.bias.to(compute_dtype)[None, :, None]
        )
    return normalised.to(x.dtype)
