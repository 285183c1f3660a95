"""Streaming decode (issue 15): exact for X-Codec and the ISTFT head, windowed for X-Codec2/NeuCodec.

Tiny models with perturbed weights; every comparison is relative to the offline decode's
peak, and the codes are asserted to vary so that a wrong frame order would show.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _asserts import assert_close_to_peak, assert_codes_vary
from _stream import offline_decode as _offline
from _stream import streamed_decode as _streamed
from _tiny import perturb_, tiny_xcodec2, tiny_xcodec_dict

from xcodec.api import Codec
from xcodec.configs.xcodec import XcodecConfig
from xcodec.errors import XcodecError
from xcodec.layers.istft import ISTFTHead
from xcodec.models.xcodec import XcodecModel
from xcodec.ops.streaming import streaming
from xcodec.streaming import StreamError, decoder_stream

SRC = Path(__file__).resolve().parents[1] / "src"
EXACT = 1e-5  # of the offline decode's peak


@pytest.fixture(scope="module")
def xcodec() -> XcodecModel:
    torch.manual_seed(0)
    model = XcodecModel(XcodecConfig.from_dict(tiny_xcodec_dict())).eval()
    return perturb_(model, seed=3)


@pytest.fixture(scope="module")
def xcodec2():
    return tiny_xcodec2(seed=2)


def _codes(model, frames: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, model.codebook_size, (batch, model.num_codebooks, frames), generator=generator)
    assert_codes_vary(codes)
    return codes


def _chunking(total: int, size: int) -> list[int]:
    return [size] * (total // size) + ([total % size] if total % size else [])


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_xcodec_stream_equals_offline(xcodec, size):
    codes = _codes(xcodec, 23)
    offline = _offline(xcodec, codes)
    assert_close_to_peak(_streamed(xcodec, codes, _chunking(23, size)), offline, EXACT)


def test_xcodec_random_chunkings_and_batch(xcodec):
    """Random chunk sequences (seeded), and a batch of 2 streams equal to each stream alone."""
    codes = _codes(xcodec, 24, batch=2, seed=1)
    offline = _offline(xcodec, codes)
    rng = random.Random(5)
    for _ in range(2):
        sizes, left = [], 24
        while left:
            sizes.append(min(left, rng.randint(1, 9)))
            left -= sizes[-1]
        batched = _streamed(xcodec, codes, sizes)
        assert_close_to_peak(batched, offline, EXACT)
        solo = torch.cat([_streamed(xcodec, codes[i : i + 1], sizes) for i in range(2)])
        assert_close_to_peak(batched, solo, EXACT)


def test_xcodec_fewer_codebooks_and_first_audio(xcodec):
    codes = _codes(xcodec, 20)[:, :2]
    stream = decoder_stream(xcodec)
    early = [stream.push(codes[0, :, i : i + 1]) for i in range(20)]
    # Audio comes out once `reach` frames follow a frame, one hop per frame after that.
    assert sum(piece.numel() for piece in early) == (20 - stream.latency_frames) * xcodec.hop_length
    streamed = torch.cat([*early, stream.flush()])[None]
    assert_close_to_peak(streamed, _offline(xcodec, codes), EXACT)


@pytest.mark.parametrize("sizes", [[1] * 19, [2] * 9 + [1], [7, 7, 5], [3, 1, 5, 10]])
def test_istft_head_streams_exactly(sizes):
    torch.manual_seed(1)
    head = perturb_(ISTFTHead(16, 64, 16), seed=1)
    x = torch.randn(2, 19, 16)
    offline = head(x)
    pieces, start = [], 0
    with streaming(head, 2):
        for size in sizes:
            pieces.append(head(x[:, start : start + size]))
            start += size
        pieces.append(head.flush_stream())
    assert not head.is_streaming
    assert_close_to_peak(torch.cat(pieces, dim=-1), offline, EXACT)


def test_windowed_full_context_equals_offline(xcodec2):
    codes = _codes(xcodec2, 20, batch=2)
    offline = _offline(xcodec2, codes)
    for sizes in ([1] * 20, [3] * 6 + [2], [7, 13]):
        streamed = _streamed(xcodec2, codes, sizes, left_context=20, lookahead=20)
        assert_close_to_peak(streamed, offline, EXACT)


@pytest.mark.parametrize(
    "options", [{}, {"left_context": 3, "lookahead": 1, "crossfade": 2}, {"lookahead": 0}]
)
def test_windowed_length_and_closeness(xcodec2, options):
    """Any options: the offline length; and not far off (a bounded window of a tiny model)."""
    codes = _codes(xcodec2, 25, seed=4)
    offline = _offline(xcodec2, codes)
    streamed = _streamed(xcodec2, codes, [2] * 12 + [1], **options)
    assert streamed.shape == offline.shape
    assert bool(torch.isfinite(streamed).all())
    # Windows differ from the whole decode, but the audio stays of the same size.
    assert 0.2 < float(streamed.abs().max() / offline.abs().max()) < 5


def test_bad_input_errors_keep_the_stream(xcodec):
    codes = _codes(xcodec, 10)[0]
    offline = _offline(xcodec, codes[None])
    stream = decoder_stream(xcodec)
    pieces = [stream.push(codes[:, :4])]
    bad = {
        "out of range": codes[:, 4:6] + xcodec.codebook_size,
        "codebooks": codes[:2, 4:6],
        "empty": codes[:, 4:4],
        "integers": codes[:, 4:6].float(),
    }
    messages = {}
    for name, chunk in bad.items():
        with pytest.raises(XcodecError) as caught:
            stream.push(chunk)
        messages[name] = str(caught.value)
    assert "[0, 16)" in messages["out of range"] and "started with" in messages["codebooks"]
    assert "empty" in messages["empty"] and "integers" in messages["integers"]
    pieces += [stream.push(codes[:, 4:]), stream.flush()]
    assert_close_to_peak(torch.cat(pieces)[None], offline, EXACT)
    with pytest.raises(StreamError, match="push after flush"):
        stream.push(codes[:, :1])
    with pytest.raises(StreamError, match="flush after flush"):
        stream.flush()


def test_nan_latents_raise_and_keep_the_stream(xcodec2):
    codes = _codes(xcodec2, 12, seed=6)[0]
    stream = decoder_stream(xcodec2, left_context=4, lookahead=1)
    first = stream.push(codes[:, :6])
    fc = xcodec2.acoustic_decoder.fc
    saved = fc.bias.detach().clone()
    with torch.no_grad():
        fc.bias[0] = float("nan")
    try:
        with pytest.raises(StreamError, match="non-finite"):
            stream.push(codes[:, 6:9])
    finally:
        with torch.no_grad():
            fc.bias.copy_(saved)
    rest = [stream.push(codes[:, 6:9]), stream.push(codes[:, 9:]), stream.flush()]
    reference = decoder_stream(xcodec2, left_context=4, lookahead=1)
    expected = torch.cat(
        [
            reference.push(codes[:, :6]),
            reference.push(codes[:, 6:9]),
            reference.push(codes[:, 9:]),
            reference.flush(),
        ]
    )
    assert_close_to_peak(torch.cat([first, *rest]), expected, EXACT)


def test_codec_stream_decode_api(xcodec2):
    codec = Codec(xcodec2)
    codes = _codes(xcodec2, 16, seed=7)[0]
    chunks = [codes[:, i : i + 3] for i in range(0, 16, 3)]
    pieces = list(codec.stream_decode(chunks, left_context=16, lookahead=16))
    assert all(piece.dim() == 1 for piece in pieces)
    assert_close_to_peak(torch.cat(pieces)[None], _offline(xcodec2, codes[None]), EXACT)
    stream = codec.decoder_stream(batch_size=2)
    assert stream.batch_size == 2
    with pytest.raises(XcodecError, match="unknown streaming option"):
        codec.decoder_stream(window=3)


def test_cli_decode_stream_through_a_pipe(tmp_path, xcodec2):
    folder = tmp_path / "model"
    xcodec2.save_pretrained(folder)
    codes = _codes(xcodec2, 14, seed=8)[0]
    offline = _offline(xcodec2, codes[None])[0]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    text = " ".join(f"<|s_{int(c)}|>" for c in codes[0])
    command = [sys.executable, "-m", "xcodec.cli", "decode", "--stream", "--model", str(folder), "-"]
    run = subprocess.run(
        [*command, "--left-context", "14", "--lookahead", "14"],
        input=text.encode(),
        capture_output=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr.decode()
    pcm = torch.from_numpy(np.frombuffer(run.stdout, dtype="<f4").copy())
    assert_close_to_peak(pcm, offline, EXACT)
    bad = subprocess.run(command, input=b"1 2 x 3", capture_output=True, env=env, timeout=300)
    assert bad.returncode == 2 and b"'x'" in bad.stderr


def test_stdin_token_parsing_and_decode_without_output(tmp_path):
    from xcodec.cli import main
    from xcodec.streaming_cli import parse_tokens

    assert parse_tokens("<|s_5|><|s_17|> 3 4") == ([5, 17, 3], "4")
    assert parse_tokens("<|s_5|><|s_17|> 3 4\n") == ([5, 17, 3, 4], "")
    assert parse_tokens("1 2 <|s_1") == ([1, 2], "<|s_1")  # the unfinished token waits for more
    with pytest.raises(XcodecError, match="s_x"):
        parse_tokens("<|s_x|> ")
    assert main(["decode", str(tmp_path / "a.npz")]) == 2  # no -o and no --stream


def test_xcodec_property_any_chunking(xcodec):
    """Property: any chunk sequence streams to the offline decode (hypothesis, few examples)."""
    hypothesis = pytest.importorskip("hypothesis")
    strategies = hypothesis.strategies
    codes = _codes(xcodec, 18, seed=9)
    offline = _offline(xcodec, codes)

    @hypothesis.settings(max_examples=6, deadline=None, derandomize=True)
    @hypothesis.given(strategies.lists(strategies.integers(1, 18), min_size=1, max_size=18))
    def check(sizes: list[int]) -> None:
        chunks, left = [], 18
        for size in sizes:
            if left == 0:
                break
            chunks.append(min(size, left))
            left -= chunks[-1]
        if left:
            chunks.append(left)
        assert_close_to_peak(_streamed(xcodec, codes, chunks), offline, EXACT)

    check()
