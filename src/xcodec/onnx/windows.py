"""Long-audio windows for the onnxruntime backend: :mod:`xcodec.windowing`'s stitching in numpy.

The plan (:func:`xcodec.windowing.plan_windows`, :class:`~xcodec.windowing.WindowConfig`)
is shared with the PyTorch :class:`xcodec.api.Codec`, so both backends cut an item at the
same frames; these two functions join the pieces as :func:`xcodec.windowing.stitch_codes`
and :func:`xcodec.windowing.stitch_audio` do, in numpy, so :class:`~xcodec.onnx.runtime.OnnxCodec`
never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xcodec.windowing import Window

__all__ = ["codes_frames_for", "stitch_audio", "stitch_codes"]


def codes_frames_for(codec: str, num_samples: int, input_hop_length: int) -> int:
    """Code frames the encoder gives ``num_samples`` samples at the input rate (the models' ``frames_for``).

    X-Codec2 adds one ("always pad" quirk), NeuCodec gives whole hops only (its "code count"
    quirk), X-Codec rounds up.
    """
    if codec == "xcodec2":
        return num_samples // input_hop_length + 1
    if codec == "neucodec":
        return num_samples // input_hop_length
    return -(-num_samples // input_hop_length)


def stitch_codes(windows: Sequence[Window], window_codes: Sequence[np.ndarray]) -> np.ndarray:
    """Join each window's kept frames: window codes (num_codebooks, frames) -> (num_codebooks, total)."""
    pieces = []
    for window, codes in zip(windows, window_codes, strict=True):
        stop = codes.shape[-1] if window.keep_stop is None else window.keep_stop - window.start
        if stop > codes.shape[-1]:
            raise RuntimeError(
                f"a window of frames [{window.start}, {window.stop}) gave {codes.shape[-1]} frames, "
                f"fewer than the {stop} the plan keeps"
            )
        pieces.append(codes[:, window.keep_start - window.start : stop])
    return np.concatenate(pieces, axis=-1)


def stitch_audio(
    windows: Sequence[Window], window_audio: Sequence[np.ndarray], hop_length: int, crossfade_frames: int
) -> np.ndarray:
    """Join decoded windows (samples,) into one waveform (samples,), cross-fading at the joins.

    The same linear fade as :func:`xcodec.windowing.stitch_audio`: over ``crossfade_frames *
    hop_length`` samples centred on each join, weights ``(i + 0.5) / fade`` (float64, then
    the audio's dtype), so a fade and its mirror sum to one.
    """
    last = windows[-1]
    total = last.start * hop_length + int(window_audio[-1].shape[-1])
    dtype = window_audio[0].dtype
    output = np.zeros(total, dtype=dtype)
    half_fade = crossfade_frames * hop_length // 2
    fade = 2 * half_fade
    ramp = ((np.arange(fade, dtype=np.float64) + 0.5) / fade).astype(dtype) if fade else np.zeros(0, dtype)
    for k, (window, audio) in enumerate(zip(windows, window_audio, strict=True)):
        offset = window.start * hop_length
        begin = window.keep_start * hop_length - (half_fade if k > 0 else 0)
        end = total if window.keep_stop is None else window.keep_stop * hop_length + half_fade
        weights = np.ones(end - begin, dtype=dtype)
        if k > 0 and fade:
            weights[:fade] = ramp
        if window.keep_stop is not None and fade:
            weights[-fade:] = ramp[::-1]
        output[begin:end] += audio[begin - offset : end - offset].astype(dtype) * weights
    return output
