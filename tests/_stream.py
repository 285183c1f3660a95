"""Decode helpers shared by the streaming tests: the offline decode and a stream pushed in given sizes."""

from __future__ import annotations

from typing import Any

import torch

from xcodec.streaming import decoder_stream


def offline_decode(model: Any, codes: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """codes: (batch, codebooks, frames) -> (batch, samples), the model's whole-input decode."""
    with torch.inference_mode():
        return model.decode(codes, **kwargs).audio_values[:, 0]


def streamed_decode(
    model: Any, codes: torch.Tensor, sizes: list[int], stream_type: type | None = None, **options: Any
) -> torch.Tensor:
    """codes (batch, codebooks, frames) pushed ``sizes[i]`` frames at a time, then flushed -> (batch, samples).

    A batch of one is pushed as solo (codebooks, n) chunks, the way a single stream is used.
    stream_type: when given, the stream ``decoder_stream`` picks must be of this type.
    """
    stream = decoder_stream(model, codes.shape[0], **options)
    if stream_type is not None:
        assert isinstance(stream, stream_type), type(stream)
    solo = codes.shape[0] == 1
    pieces, start = [], 0
    for size in sizes:
        piece = stream.push(codes[0, :, start : start + size] if solo else codes[:, :, start : start + size])
        pieces.append(piece[None] if solo else piece)
        start += size
    assert start == codes.shape[2]
    last = stream.flush()
    pieces.append(last[None] if solo else last)
    return torch.cat(pieces, dim=1)
