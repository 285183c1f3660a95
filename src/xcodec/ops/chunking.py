"""Run a convolutional stage over time chunks with halos (overlap-save), for speed and memory.

The high-rate stages of the codecs' convolutional encoders and decoders are local: an
output step depends on the input only within a finite reach. Running such a stage on
a whole 20 s clip makes tensors of 60-200 MB; glibc hands each one back to the kernel
when it is freed (its mmap threshold stops growing at 32 MB), so every layer pays page
faults again (10 million for one X-Codec2 encode of 20 s: more than half of its time),
and every elementwise pass streams from DRAM. Cut into chunks of a second or two, the
same stage reuses a few megabytes that stay in the cache, and its memory no longer grows
with the length of the input.

Each chunk ``[start, start + chunk)`` of the input is run with ``halo`` extra input steps
on both sides (cut at the true ends), and only the outputs that belong to the chunk are
kept. An output within ``halo`` of a cut would see the cut as an edge (zero or replicate
padding); the halo is chosen larger than the stage's reach, so every kept output sees
only real input, as in the whole run. The results equal the whole run up to the order of
floating-point sums inside the convolutions (observed: about 1e-6 relative).

Items of a batch go through one at a time (the stages treat items independently), so
the chunk's memory does not grow with the batch. Padded batches: the stage gets each
item's valid steps inside the chunk (clamped to the chunk), so an item that ends inside
a chunk is padded there exactly as when it runs whole, and an item's input is cut a
halo past its end (its outputs beyond its valid ones are unspecified; they come back
as zeros). On an accelerator the stage runs whole: its kernels want large tensors, and
it has no page faults to avoid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from xcodec.ops.layout import is_time_major

__all__ = [
    "ChunkedStage",
    "StridedBlock",
    "chunked_prefix",
    "conv_reach",
    "run_chunked",
    "run_strided_stage",
    "stack_reach",
]

ChunkedStage = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def conv_reach(conv: torch.nn.Conv1d) -> int:
    """Input steps an output of ``conv`` reads on its farther side, from its own position."""
    (kernel,), (dilation,), padding = conv.kernel_size, conv.dilation, conv.padding
    if isinstance(padding, str):
        raise ValueError(f"conv_reach takes numeric padding, got {padding!r}")
    return max(padding[0], (kernel - 1) * dilation - padding[0])


class StridedBlock(Protocol):
    """A downsampling block: its first conv carries the stride; ``reach`` is in its input steps."""

    conv1: torch.nn.Conv1d

    def reach(self) -> int: ...


def chunked_prefix(ratios: Sequence[int], max_stride: int) -> tuple[int, int]:
    """How many leading ``ratios`` run chunked, and their product (at most ``max_stride``).

    The encoders chunk the blocks whose output runs at ``1/max_stride`` of the audio rate
    or faster: past that, the halo widens by the next stride while the tensors are small.
    """
    count, stride = 0, 1
    for ratio in ratios:
        if stride * ratio > max_stride:
            break
        stride *= ratio
        count += 1
    return count, stride


def stack_reach(blocks: Sequence[StridedBlock], reach: int = 0) -> tuple[int, int]:
    """Reach (in input steps, either side) of ``blocks`` run in order after a stage of ``reach``.

    Returns the reach and the product of the blocks' strides (the rate of whatever follows).
    """
    rate = 1
    for block in blocks:
        reach += rate * block.reach()
        rate *= block.conv1.stride[0]
    return reach, rate


def run_strided_stage(
    stage: ChunkedStage, x: torch.Tensor, lengths: torch.Tensor | None, *, chunk: int, stride: int, reach: int
) -> torch.Tensor:
    """A downsampling ``stage`` (by ``stride``) in chunks of ``chunk`` input steps, or whole if 0.

    The chunk is rounded down to the stride; the halo is the reach plus one stride,
    rounded up to the stride (see :func:`run_chunked`).
    """
    chunk = chunk // stride * stride
    if not chunk:
        return stage(x, lengths)
    halo = -(-(reach + stride) // stride) * stride
    return run_chunked(stage, x, lengths, chunk=chunk, halo=halo, down=stride)


def run_chunked(
    stage: ChunkedStage,
    x: torch.Tensor,
    lengths: torch.Tensor | None,
    *,
    chunk: int,
    halo: int,
    down: int = 1,
    up: int = 1,
) -> torch.Tensor:
    """``stage(x, lengths)`` computed chunk by chunk: (batch, C, T) -> (batch, C', T * up / down).

    stage: ``(x_slice, slice_lengths or None) -> output`` with ``x_slice.shape[-1] * up /
        down`` steps; it must be local: no output may depend on input further than ``halo``
        steps away (in input steps, measured from the output's own position).
    x: (batch, C, T); lengths: (batch,) valid input steps per item, or None.
    chunk, halo: in input steps, multiples of ``down`` (so every chunk starts on an
        output step). The stage's output length must shift with its input: a slice that
        starts ``down * n`` steps later gives ``up * n`` fewer outputs (true of convolution
        stacks whose strides multiply to ``down``), so ``T`` itself may be anything.
    Inputs no longer than ``chunk + 2 * halo`` run whole (chunking would only add work).
    """
    B, _, T = x.shape
    if chunk % down or halo % down:
        raise ValueError(f"chunk ({chunk}) and halo ({halo}) must be multiples of {down}")
    if x.device.type != "cpu" or chunk + 2 * halo >= T or torch.compiler.is_compiling():
        # Accelerators have no page-fault problem and want large kernels: run whole. A
        # compiled graph runs whole too (per-item ends are data-dependent Python ints).
        return stage(x, lengths)
    # Steps past an item's end only feed its outputs past its valid ones (unspecified, 0
    # here), so each item runs to a halo past its end: a padded batch costs the items'
    # own lengths. The longest runs to the end and sets the output length for all.
    ends = [T] * B
    if lengths is not None:
        ends = [min(T, -(-(int(length) + halo) // down) * down) for length in lengths.tolist()]
        ends[max(range(B), key=lambda item: ends[item])] = T
    outputs = [
        _run_item(
            stage,
            x[item : item + 1, :, : ends[item]],
            None if lengths is None else lengths[item : item + 1],
            chunk,
            halo,
            down,
            up,
        )
        for item in range(B)
    ]
    full = max(output.shape[-1] for output in outputs)
    outputs = [torch.nn.functional.pad(output, (0, full - output.shape[-1])) for output in outputs]
    if all(is_time_major(output) for output in outputs):
        # Keep the stage's time-major storage (xcodec.ops.layout) for what follows.
        return torch.cat([output.transpose(1, 2) for output in outputs]).transpose(1, 2)
    return torch.cat(outputs)


def _run_item(
    stage: ChunkedStage,
    x: torch.Tensor,
    lengths: torch.Tensor | None,
    chunk: int,
    halo: int,
    down: int,
    up: int,
) -> torch.Tensor:
    """One item (1, C, T) through ``stage`` chunk by chunk; each chunk's central outputs kept."""
    T = x.shape[-1]
    if chunk + 2 * halo >= T:
        return stage(x, lengths)
    pieces = []
    for start in range(0, T, chunk):
        low, high = max(0, start - halo), min(T, start + chunk + halo)
        piece_lengths = None if lengths is None else (lengths - low).clamp(min=0, max=high - low)
        output = stage(x[..., low:high], piece_lengths)
        first = (start - low) * up // down
        pieces.append(output[..., first : first + chunk * up // down])
    if all(is_time_major(piece) for piece in pieces):
        return torch.cat([piece.transpose(1, 2) for piece in pieces], dim=1).transpose(1, 2)
    return torch.cat(pieces, dim=-1)
