"""``torch.compile(..., fullgraph=True)`` of both codecs: tokens equal eager, audio within 1e-4 of peak.

Compiled regions must hold no graph break: the fast paths switch to their traceable form
under ``torch.compiler.is_compiling()`` (no ``out=``, no value-dependent Python branches,
no per-length chunking). Inductor on 2 CPU cores is slow, so the tiny configs are used,
``dynamic=False``, and the default suite compiles ``forward`` on a padded batch of 2 (it
runs encode and decode); ``encode``/``decode`` alone and a single input are ``slow``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from _asserts import assert_close_to_peak, assert_codes_vary
from _tiny import perturb_, tiny_xcodec2, tiny_xcodec_dict

from xcodec.configs.xcodec import XcodecConfig
from xcodec.models.xcodec import XcodecModel

AUDIO_TOLERANCE = 1e-4
LENGTHS = (9600, 6400)  # a padded batch: the second item ends 3200 samples early


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _batch(lengths: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, 1, max) zero-padded noise and its (batch, max) int32 padding mask."""
    generator = torch.Generator().manual_seed(seed)
    audio = torch.zeros(len(lengths), 1, max(lengths))
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.int32)
    for item, length in enumerate(lengths):
        audio[item, 0, :length] = 0.1 * torch.randn(length, generator=generator)
        mask[item, :length] = 1
    return audio, mask


def _compiled(function: Callable[..., Any]) -> Callable[..., Any]:
    return torch.compile(function, fullgraph=True, dynamic=False)


def _xcodec2_inputs(model: Any, lengths: tuple[int, ...]) -> dict[str, torch.Tensor]:
    audio, _ = _batch(lengths)
    extractor = model._feature_extractor()
    items = [audio[item, 0, :length].numpy() for item, length in enumerate(lengths)]
    return dict(extractor(audio=items, sampling_rate=16000, padding=True, return_tensors="pt"))


def _assert_same(compiled: Any, eager: Any) -> None:
    if getattr(eager, "audio_codes", None) is not None:
        assert_codes_vary(eager.audio_codes)
        assert torch.equal(compiled.audio_codes, eager.audio_codes)
    if getattr(eager, "audio_values", None) is not None:
        assert compiled.audio_values.shape == eager.audio_values.shape
        assert_close_to_peak(compiled.audio_values, eager.audio_values, AUDIO_TOLERANCE)


@pytest.fixture(scope="module")
def xcodec2() -> Any:
    return tiny_xcodec2()


@pytest.fixture(scope="module")
def xcodec() -> XcodecModel:
    torch.manual_seed(0)
    model = perturb_(XcodecModel(XcodecConfig.from_dict(tiny_xcodec_dict())).eval())
    with torch.no_grad():
        # Random codebooks: the zero-initialised ones give one code for every frame.
        for name, buffer in model.named_buffers():
            if name.endswith("codebook.embed"):
                buffer.copy_(torch.randn_like(buffer))
    return model


def test_xcodec2_forward_padded_batch(xcodec2: Any) -> None:
    inputs = _xcodec2_inputs(xcodec2, LENGTHS)
    with torch.inference_mode():
        eager = xcodec2(**inputs)
        compiled = _compiled(xcodec2)(**inputs)
    _assert_same(compiled, eager)


def test_xcodec_forward_padded_batch(xcodec: XcodecModel) -> None:
    audio, mask = _batch(LENGTHS)
    with torch.inference_mode():
        eager = xcodec(audio, padding_mask=mask, bandwidth=0.8)
        compiled = _compiled(xcodec)(audio, padding_mask=mask, bandwidth=0.8)
    _assert_same(compiled, eager)


@pytest.mark.slow
@pytest.mark.parametrize("lengths", [LENGTHS, (8000,)], ids=["batch", "single"])
def test_xcodec2_encode_decode(xcodec2: Any, lengths: tuple[int, ...]) -> None:
    inputs = _xcodec2_inputs(xcodec2, lengths)
    with torch.inference_mode():
        eager_codes = xcodec2.encode(**inputs)
        _assert_same(_compiled(xcodec2.encode)(**inputs), eager_codes)
        eager_audio = xcodec2.decode(eager_codes.audio_codes)
        _assert_same(_compiled(xcodec2.decode)(eager_codes.audio_codes), eager_audio)
        if len(lengths) == 1:
            _assert_same(_compiled(xcodec2)(**inputs), xcodec2(**inputs))


@pytest.mark.slow
@pytest.mark.parametrize("lengths", [LENGTHS, (8000,)], ids=["batch", "single"])
def test_xcodec_encode_decode(xcodec: XcodecModel, lengths: tuple[int, ...]) -> None:
    audio, mask = _batch(lengths)
    with torch.inference_mode():
        eager_codes = xcodec.encode(audio, padding_mask=mask, bandwidth=0.8)
        _assert_same(_compiled(xcodec.encode)(audio, padding_mask=mask, bandwidth=0.8), eager_codes)
        codes = eager_codes.audio_codes
        eager_audio = xcodec.decode(codes, code_lengths=eager_codes.code_lengths)
        compiled_audio = _compiled(xcodec.decode)(codes, code_lengths=eager_codes.code_lengths)
        _assert_same(compiled_audio, eager_audio)
        if len(lengths) == 1:
            _assert_same(_compiled(xcodec)(audio, bandwidth=0.8), xcodec(audio, bandwidth=0.8))
