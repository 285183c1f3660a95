"""``xcodec decode --stream``: codes in (an .npz, or tokens on stdin), audio out as it is final.

stdin (``-``) carries whitespace-separated integers or ``<|s_N|>`` tokens (as a TTS model
prints them), frame by frame (``num_codebooks`` values per frame for X-Codec); audio is
decoded and written as soon as a chunk of frames is in, and stdout is flushed after each
piece, so ``... | xcodec decode --stream --model M - | aplay -r 16000 -f FLOAT_LE`` plays
while the tokens arrive. Output: raw float32 little-endian PCM, or a WAV stream (``--wav``,
IEEE float, its sizes left open as streaming WAV writers do).
"""

from __future__ import annotations

import argparse
import os
import re
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from xcodec.errors import ArgumentError

__all__ = ["add_stream_options", "parse_tokens", "run_stream_decode"]

_TOKEN = re.compile(r"<\|s_(\d+)\|>|(\d+)")


def add_stream_options(parser: argparse.ArgumentParser) -> None:
    """The ``--stream`` flag of ``xcodec decode`` and its options."""
    group = parser.add_argument_group("streaming (--stream)")
    group.add_argument(
        "--stream",
        action="store_true",
        help="decode one input (an .npz or - for tokens on stdin) while it arrives; PCM to stdout",
    )
    group.add_argument(
        "--wav", action="store_true", help="with --stream: a WAV stream instead of raw float32"
    )
    group.add_argument(
        "--chunk-frames", type=int, default=None, help="frames per push (default: 1 on stdin, 25 for .npz)"
    )
    for name in ("left-context", "lookahead", "crossfade"):
        group.add_argument(
            f"--{name}", type=int, default=None, help=f"X-Codec2/NeuCodec window {name} (frames)"
        )


def parse_tokens(text: str) -> tuple[list[int], str]:
    """Codes in ``text`` (integers or ``<|s_N|>``), and the unfinished tail to keep for the next read.

    Anything else raises :class:`ArgumentError` naming the bad token.
    """
    tail = ""
    if text and not text[-1].isspace():
        cut = max(text.rfind(c) for c in " \t\n\r")
        text, tail = text[: cut + 1], text[cut + 1 :]
    codes: list[int] = []
    for word in text.split():
        pieces = list(_TOKEN.finditer(word))
        if not pieces or "".join(m.group(0) for m in pieces) != word:
            raise ArgumentError(f"stdin: {word!r} is neither an integer code nor a <|s_N|> token")
        codes.extend(int(m.group(1) or m.group(2)) for m in pieces)
    return codes, tail


def _stdin_frames(num_codebooks: int, chunk: int) -> Iterator[torch.Tensor]:
    """(num_codebooks, n) chunks of the codes on stdin, as soon as ``chunk`` frames (or the end) are in."""
    values: list[int] = []
    tail = ""
    fd = sys.stdin.fileno()
    while True:
        data = os.read(fd, 65536)
        text = tail + data.decode("utf-8", errors="replace")
        if not data:
            text += " "
        found, tail = parse_tokens(text)
        values.extend(found)
        whole = len(values) // num_codebooks
        if whole >= chunk or (not data and whole):
            take = whole * num_codebooks
            frames = torch.tensor(values[:take], dtype=torch.long).reshape(whole, num_codebooks).T
            del values[:take]
            yield frames
        if not data:
            if values:
                raise ArgumentError(
                    f"stdin ended inside a frame: {len(values)} value(s) left over, {num_codebooks} per frame"
                )
            return


def _npz_frames(path: Path, chunk: int) -> tuple[Iterator[torch.Tensor], int | None]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            codes = torch.from_numpy(np.asarray(npz["audio_codes"]).astype(np.int64))
            num_samples = int(npz["num_samples"]) if "num_samples" in npz else None
    except Exception as exc:
        raise ArgumentError(f"{path}: not a codes file written by `xcodec encode` ({exc})") from exc
    if codes.dim() == 3 and codes.shape[0] == 1:
        codes = codes[0]
    if codes.dim() != 2:
        raise ArgumentError(f"{path}: audio_codes must be (num_codebooks, frames), got {tuple(codes.shape)}")
    return (codes[:, i : i + chunk] for i in range(0, codes.shape[1], chunk)), num_samples


def _wav_header(sample_rate: int) -> bytes:
    """A mono 32-bit float WAV header whose sizes are left open (0xFFFFFFFF): the length is not known yet."""
    fmt = struct.pack("<HHIIHH", 3, 1, sample_rate, sample_rate * 4, 4, 32)
    return (
        b"RIFF"
        + struct.pack("<I", 0xFFFFFFFF)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", 0xFFFFFFFF)
    )


def run_stream_decode(
    args: argparse.Namespace, load_codec: Callable[..., Any], out: BinaryIO | None = None
) -> int:
    """Run ``xcodec decode --stream``; job errors raise :class:`XcodecError` (the CLI exits 2)."""
    if len(args.codes) != 1:
        raise ArgumentError(f"--stream decodes one input (an .npz or -), got {len(args.codes)}")
    source = args.codes[0]
    options = {
        key: value
        for key, value in (
            ("left_context", args.left_context),
            ("lookahead", args.lookahead),
            ("crossfade", args.crossfade),
        )
        if value is not None
    }
    chunk = args.chunk_frames or (1 if source == "-" else 25)
    if chunk < 1:
        raise ArgumentError(f"--chunk-frames must be at least 1, got {chunk}")
    num_samples = None
    if source != "-":
        frames, num_samples = _npz_frames(Path(source), chunk)
    model_id = args.model
    if model_id is None and source != "-":
        with np.load(source, allow_pickle=False) as npz:
            model_id = str(npz["model"]) if "model" in npz else None
    if model_id is None:
        raise ArgumentError("--stream needs --model (codes on stdin name no model)")
    codec = load_codec(args, model_id, parts="decoder")
    stream = codec.decoder_stream(**options)
    if source == "-":
        frames = _stdin_frames(codec.num_codebooks, chunk)
    sink = out if out is not None else sys.stdout.buffer
    if args.wav:
        sink.write(_wav_header(codec.sample_rate))
    written = 0

    def emit(audio: torch.Tensor) -> None:
        nonlocal written
        if num_samples is not None:
            audio = audio[: max(0, num_samples - written)]
        written += audio.numel()
        sink.write(audio.numpy().astype("<f4").tobytes())
        sink.flush()

    try:
        for piece in frames:
            emit(stream.push(piece))
        emit(stream.flush())
    except BrokenPipeError:  # the player went away: nothing left to do
        return 0
    return 0
