"""Long audio in bounded memory: overlapping windows aligned to the hop, stitched back.

Encoding. An item longer than one window is cut into windows of ``window_frames`` code
frames (``window_frames * hop_length`` samples) that start on frame boundaries, so frame
``j`` of a window starting at frame ``s`` is global frame ``s + j``. Consecutive windows
overlap by ``2 * context_frames``; each window contributes only its central frames, so
every kept frame has at least ``context_frames`` of real audio on both sides (the first
and the last window keep their outer edge, which is the file's edge there too). The last
window is moved back to end where the audio ends, so all windows but none are short and
the last one's tail frames (X-Codec2's "always pad" frame included) are the file's own.

Decoding. Codes are cut with the same plan; each window is decoded alone, and the
decoded windows are joined with a linear cross-fade ``crossfade_frames`` wide centred on
each join (inside the overlap, so both sides of a fade still have context).

An item no longer than one window takes the model's whole-file path unchanged.

This module only plans, slices and stitches. The model calls come in as functions, so
the caller (:class:`xcodec.api.Codec`) batches windows of many items together.

Why these defaults (30 s windows, 2 s context, 1 s cross-fade): see ``DEFAULT_*`` below
and the measurements recorded there.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from xcodec.errors import ArgumentError

if TYPE_CHECKING:
    import torch

# torch is imported inside the stitching functions only: the planning (WindowConfig,
# plan_windows) is pure Python and serves the torch-free onnxruntime backend too
# (xcodec.onnx.windows; tests/test_onnx.py checks it never imports torch).

__all__ = [
    "DEFAULT_CONTEXT_SECONDS",
    "DEFAULT_CROSSFADE_SECONDS",
    "DEFAULT_WINDOW_SECONDS",
    "Window",
    "WindowConfig",
    "plan_windows",
    "stitch_audio",
    "stitch_codes",
]

# Measured choices (see the module docstring of this file and the report in bench/):
DEFAULT_WINDOW_SECONDS = 30.0
DEFAULT_CONTEXT_SECONDS = 2.0
DEFAULT_CROSSFADE_SECONDS = 1.0


@dataclasses.dataclass(frozen=True)
class WindowConfig:
    """Window geometry in seconds; converted to whole code frames by :meth:`frames`.

    window_seconds: length of one window (what the model sees at once); items no longer
        than this are processed whole.
    context_seconds: frames discarded at each inner edge of a window; two neighbouring
        windows overlap by twice this.
    crossfade_seconds: width of the linear cross-fade at each join of decoded audio; at
        most ``context_seconds`` (the fade must lie where both windows have context).
    """

    window_seconds: float = DEFAULT_WINDOW_SECONDS
    context_seconds: float = DEFAULT_CONTEXT_SECONDS
    crossfade_seconds: float = DEFAULT_CROSSFADE_SECONDS

    def frames(self, frame_rate: float) -> tuple[int, int, int]:
        """(window_frames, context_frames, crossfade_frames) at ``frame_rate`` frames per second."""
        window = round(self.window_seconds * frame_rate)
        context = round(self.context_seconds * frame_rate)
        crossfade = round(self.crossfade_seconds * frame_rate)
        if context < 0 or window - 2 * context < 1:
            raise ArgumentError(
                f"a window of {self.window_seconds} s needs more than twice its context "
                f"({self.context_seconds} s) to keep any frames"
            )
        if not 0 <= crossfade <= context:
            raise ArgumentError(
                f"crossfade_seconds ({self.crossfade_seconds}) must lie in [0, context_seconds = {self.context_seconds}]"
            )
        return window, context, crossfade


@dataclasses.dataclass(frozen=True)
class Window:
    """One window, in global code frames.

    start/stop: frames the window covers, [start, stop); the audio is
        ``[start * hop, stop * hop)`` cut at the item's end.
    keep_start/keep_stop: the global frames taken from this window, [keep_start, keep_stop);
        ``keep_stop`` None means "to the end of what the window yields" (the last window).
    """

    start: int
    stop: int
    keep_start: int
    keep_stop: int | None


def plan_windows(
    num_frames: int, window_frames: int, context_frames: int, *, whole_up_to: int | None = None
) -> list[Window]:
    """Windows covering ``num_frames`` frames; a single whole window when they fit in one.

    whole_up_to: the most frames processed whole (default ``window_frames``).

    Full windows are ``window_frames`` long and start every ``window_frames - 2 *
    context_frames`` frames; the last one is moved back to end at ``num_frames``, which
    only gives it more left context. Every join lies mid-way through the overlap of its
    two windows, so at least ``context_frames`` inside both.
    """
    if num_frames <= (window_frames if whole_up_to is None else whole_up_to):
        return [Window(0, num_frames, 0, None)]
    step = window_frames - 2 * context_frames
    count = 1 + math.ceil((num_frames - window_frames) / step)
    starts = [k * step for k in range(count - 1)] + [num_frames - window_frames]
    # Each join sits mid-way through the overlap of its two windows, so a frame comes from
    # the window where it lies farthest from an inner edge. For two regular windows that is
    # ``context_frames`` inside both; the moved-back last window overlaps its neighbour
    # more, and the midpoint gives the frames of that extra overlap their better context.
    joins = [(starts[k] + window_frames - 1 + starts[k + 1]) // 2 + 1 for k in range(count - 1)]
    keep_starts = [0, *joins]
    keep_stops: list[int | None] = [*joins, None]
    return [
        Window(start, start + window_frames, keep_start, keep_stop)
        for start, keep_start, keep_stop in zip(starts, keep_starts, keep_stops, strict=True)
    ]


def window_audio(waveform: torch.Tensor, window: Window, hop_length: int) -> torch.Tensor:
    """The samples of ``window``, (samples,), a view of ``waveform`` (samples,)."""
    return waveform[window.start * hop_length : window.stop * hop_length]


def stitch_codes(windows: Sequence[Window], window_codes: Sequence[torch.Tensor]) -> torch.Tensor:
    """Join each window's kept frames: window codes (num_codebooks, frames) -> (num_codebooks, total)."""
    import torch

    pieces = []
    for window, codes in zip(windows, window_codes, strict=True):
        stop = codes.shape[-1] if window.keep_stop is None else window.keep_stop - window.start
        if stop > codes.shape[-1]:
            raise RuntimeError(
                f"a window of frames [{window.start}, {window.stop}) gave {codes.shape[-1]} frames, "
                f"fewer than the {stop} the plan keeps"
            )
        pieces.append(codes[:, window.keep_start - window.start : stop])
    return torch.cat(pieces, dim=-1)


def _ramp(length: int, dtype: torch.dtype) -> torch.Tensor:
    """Rising weights (length,) strictly inside (0, 1), so a fade and its mirror sum to 1."""
    import torch

    return (torch.arange(length, dtype=torch.float64) + 0.5).div(length).to(dtype)


def stitch_audio(
    windows: Sequence[Window],
    window_audio: Sequence[torch.Tensor],
    hop_length: int,
    crossfade_frames: int,
) -> torch.Tensor:
    """Join decoded windows (samples,) into one waveform (samples,), cross-fading at the joins.

    Window ``k`` covers samples ``[start * hop, ...)``. At each join ``b = keep_stop * hop``
    the output is a linear fade from window ``k`` to window ``k + 1`` over
    ``[b - fade / 2, b + fade / 2)``, ``fade = crossfade_frames * hop`` samples.
    """
    import torch

    last = windows[-1]
    total = last.start * hop_length + int(window_audio[-1].shape[-1])
    dtype = window_audio[0].dtype
    output = torch.zeros(total, dtype=dtype)
    half_fade = crossfade_frames * hop_length // 2
    fade = 2 * half_fade
    ramp = _ramp(fade, dtype)
    for k, (window, audio) in enumerate(zip(windows, window_audio, strict=True)):
        offset = window.start * hop_length
        begin = window.keep_start * hop_length - (half_fade if k > 0 else 0)
        end = total if window.keep_stop is None else window.keep_stop * hop_length + half_fade
        weights = torch.ones(end - begin, dtype=dtype)
        if k > 0 and fade:
            weights[:fade] = ramp
        if window.keep_stop is not None and fade:
            weights[-fade:] = ramp.flip(0)
        output[begin:end] += audio[begin - offset : end - offset].to(dtype) * weights
    return output
