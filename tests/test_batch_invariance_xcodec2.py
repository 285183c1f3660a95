"""X-Codec2 batch invariance: an item's codes and audio in a padded batch equal its alone-run.

"Alone" is the plain (reference) computation on the item by itself: its own features from
the extractor (``padded_length(n)`` samples), or its own first ``L`` codes for decode.
Codes must be identical, audio within 1e-4. Length mixes cover the awkward spots (1
sample, hop +- 1, multiples of the hop, which the "always pad" quirk gives an extra
frame, very different lengths, a batch of one) plus seeded random mixes, on a tiny model
with perturbed weights. A control shows the reference path, given the same batches, is
not invariant, so these tests can fail.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch
from _asserts import assert_close_to_peak, assert_codes_vary
from _oracle import require_oracle
from _tiny import tiny_xcodec2
from torch import nn

from xcodec.api import Codec
from xcodec.features import Xcodec2FeatureExtractor
from xcodec.models.xcodec2 import Xcodec2Model
from xcodec.ops.masking import (
    attention_key_mask,
    conv1d_output_lengths,
    conv_transpose_output_lengths,
    lengths_if_padded,
    lengths_to_mask,
    mask_to_lengths,
    masked_group_norm,
    replicate_pad,
    zero_padding,
)

HOP = 320
AUDIO_TOLERANCE = 1e-4  # of the expected audio's peak (the control below: absolute)
EXTRACTOR = Xcodec2FeatureExtractor()


def _random_mixes(seed: int, count: int) -> list[list[int]]:
    rng = random.Random(seed)
    mixes = []
    for _ in range(count):
        lengths = []
        for _ in range(rng.randint(2, 5)):
            if rng.random() < 0.5:
                lengths.append(max(1, HOP * rng.randint(1, 12) + rng.choice([-1, 0, 1])))
            else:
                lengths.append(rng.randint(1, 12 * HOP))
        mixes.append(lengths)
    return mixes


LENGTH_MIXES = [
    [HOP * 3 + 17],  # a batch of one
    [1, HOP - 1, HOP, HOP + 1, 3 * HOP],  # around the first multiples of the hop
    [2 * HOP - 1, 2 * HOP, 2 * HOP + 1, 5 * HOP],
    [1, 14 * HOP + 5],  # very different lengths
    *_random_mixes(seed=11, count=3),
]


@pytest.fixture(scope="module")
def model() -> Xcodec2Model:
    torch.set_num_threads(1)
    return tiny_xcodec2(seed=3)


def _waveforms(lengths: list[int], seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [0.15 * torch.randn(n, generator=generator) for n in lengths]


def _pad(items: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, longest) zero-padded waveforms and their (batch,) lengths."""
    lengths = torch.tensor([item.numel() for item in items])
    batch = torch.zeros(len(items), int(lengths.max()))
    for index, item in enumerate(items):
        batch[index, : item.numel()] = item
    return batch, lengths


def _features(items: list[torch.Tensor]) -> dict[str, Any]:
    features = EXTRACTOR(items, return_tensors="pt")
    return {
        key: features[key]
        for key in ("input_values", "input_features", "padding_mask", "input_features_mask")
    }


def _alone(model: Xcodec2Model, item: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The item's codes (frames,) and forward audio (samples,) from the plain path, alone."""
    with torch.inference_mode():
        out = model(**_features([item]))
    return out.audio_codes[0, 0], out.audio_values[0, 0]


def _max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


def _valid_codes(audio_codes: torch.Tensor, code_lengths: torch.Tensor) -> torch.Tensor:
    """The codes of every item's valid frames, (total frames,), from (batch, codebooks, frames)."""
    return torch.cat([audio_codes[i, :, :n].reshape(-1) for i, n in enumerate(code_lengths.tolist())])


# ---------------------------------------------------------------------------- the model


@pytest.mark.parametrize("lengths", LENGTH_MIXES, ids=lambda lengths: "-".join(map(str, lengths)))
def test_tokenize_and_detokenize_equal_each_item_alone(model: Xcodec2Model, lengths: list[int]) -> None:
    items = _waveforms(lengths, seed=len(lengths))
    waveforms, lengths_t = _pad(items)
    with torch.inference_mode():
        batch = model.tokenize(waveforms, lengths_t)
        decoded = model.detokenize(batch.audio_codes, batch.code_lengths)
    # code_lengths is the count the reference gives the item alone: padded_length(n) / hop.
    assert batch.code_lengths.tolist() == [EXTRACTOR.padded_length(n) // HOP for n in lengths]
    assert decoded.lengths.tolist() == [EXTRACTOR.padded_length(n) for n in lengths]
    assert_codes_vary(_valid_codes(batch.audio_codes, batch.code_lengths), min_distinct=3)
    for index, item in enumerate(items):
        codes_alone, _ = _alone(model, item)
        frames = int(batch.code_lengths[index])
        assert frames == codes_alone.numel()
        assert torch.equal(batch.audio_codes[index, 0, :frames], codes_alone.long()), f"item {index}"
        with torch.inference_mode():
            audio_alone = model.decode(audio_codes=codes_alone[None, None]).audio_values[0, 0]
        samples = int(decoded.lengths[index])
        assert_close_to_peak(
            decoded.audio[index, :samples], audio_alone, AUDIO_TOLERANCE, what=f"item {index}"
        )
        assert torch.all(decoded.audio[index, samples:] == 0)


@pytest.mark.parametrize("lengths", LENGTH_MIXES[1:4], ids=lambda lengths: "-".join(map(str, lengths)))
def test_encode_and_forward_equal_each_item_alone(model: Xcodec2Model, lengths: list[int]) -> None:
    items = _waveforms(lengths, seed=7)
    inputs = _features(items)
    with torch.inference_mode():
        encoded = model.encode(**inputs, batch_invariant=True)
        # The semantic mask is derived from the padding mask: not passing it changes nothing.
        without_features_mask = model.encode(
            inputs["input_values"], inputs["input_features"], inputs["padding_mask"], batch_invariant=True
        )
        forward = model(**inputs, batch_invariant=True)
    assert torch.equal(encoded.audio_codes, without_features_mask.audio_codes)
    assert torch.equal(forward.audio_codes, encoded.audio_codes)
    assert encoded.code_lengths is not None
    assert_codes_vary(_valid_codes(encoded.audio_codes, encoded.code_lengths), min_distinct=3)
    for index, item in enumerate(items):
        codes_alone, audio_alone = _alone(model, item)
        frames = int(encoded.code_lengths[index])
        assert frames == codes_alone.numel()
        assert torch.equal(encoded.audio_codes[index, 0, :frames], codes_alone), f"item {index}"
        samples = audio_alone.numel()
        assert_close_to_peak(forward.audio_values[index, 0, :samples], audio_alone, AUDIO_TOLERANCE)
        assert torch.all(forward.audio_values[index, 0, samples:] == 0)


def test_decode_with_code_lengths_or_mask_equals_each_item_alone(model: Xcodec2Model) -> None:
    generator = torch.Generator().manual_seed(5)
    frames = 11
    code_lengths = torch.tensor([1, 2, frames, 6, frames - 1])
    codes = torch.randint(0, model.codebook_size, (5, 1, frames), generator=generator, dtype=torch.int32)
    codes_mask = lengths_to_mask(code_lengths, frames).to(torch.int32)[:, None, :]  # (batch, 1, frames)
    with torch.inference_mode():
        by_lengths = model.decode(codes, code_lengths=code_lengths).audio_values
        by_mask = model.decode(codes, audio_codes_mask=codes_mask).audio_values
        alone = [
            model.decode(codes[i : i + 1, :, :n]).audio_values[0, 0]
            for i, n in enumerate(code_lengths.tolist())
        ]
    assert torch.equal(by_lengths, by_mask)
    assert_codes_vary(codes, min_distinct=10)
    for index, audio_alone in enumerate(alone):
        samples = audio_alone.numel()
        assert_close_to_peak(
            by_lengths[index, 0, :samples], audio_alone, AUDIO_TOLERANCE, what=f"item {index}"
        )
        assert torch.all(by_lengths[index, 0, samples:] == 0)
    with pytest.raises(ValueError, match="not both"):
        model.decode(codes, audio_codes_mask=codes_mask, code_lengths=code_lengths)
    with pytest.raises(ValueError, match="code_lengths"):
        model.decode(codes, code_lengths=torch.tensor([1, 2, 3, 4, frames + 1]))


def test_reference_path_is_not_batch_invariant(model: Xcodec2Model) -> None:
    """Control: without per-item lengths (the reference behaviour) the same batches differ from alone."""
    items = _waveforms([2 * HOP - 1, 3 * HOP + 100, 1, 14 * HOP + 5], seed=7)
    inputs = _features(items)
    with torch.inference_mode():
        reference = model(**inputs)
        invariant = model(**inputs, batch_invariant=True)
    wrong_codes = wrong_audio = 0.0
    for index, item in enumerate(items):
        codes_alone, audio_alone = _alone(model, item)
        frames, samples = codes_alone.numel(), audio_alone.numel()
        assert torch.equal(invariant.audio_codes[index, 0, :frames], codes_alone)
        wrong_codes += int((reference.audio_codes[index, 0, :frames] != codes_alone).sum())
        wrong_audio = max(
            wrong_audio, _max_difference(reference.audio_values[index, 0, :samples], audio_alone)
        )
        with torch.inference_mode():
            padded_decode = model.decode(reference.audio_codes).audio_values[index, 0, :samples]
            decode_alone = model.decode(codes_alone[None, None]).audio_values[0, 0]
        wrong_audio = max(wrong_audio, _max_difference(padded_decode, decode_alone))
    assert wrong_codes > 0
    assert wrong_audio > 100 * AUDIO_TOLERANCE


def test_unpadded_batch_runs_the_plain_path_bit_for_bit(model: Xcodec2Model) -> None:
    items = _waveforms([5 * HOP + 3] * 3, seed=9)
    inputs = _features(items)
    with torch.inference_mode():
        plain = model.encode(**inputs, output_latents=True)
        invariant = model.encode(**inputs, output_latents=True, batch_invariant=True)
        assert_codes_vary(plain.audio_codes, min_distinct=3)
        assert torch.equal(plain.audio_codes, invariant.audio_codes)
        assert plain.latents is not None and invariant.latents is not None
        assert torch.equal(plain.latents, invariant.latents)
        full = torch.full((3,), plain.audio_codes.shape[-1])
        assert torch.equal(
            model.decode(plain.audio_codes).audio_values,
            model.decode(plain.audio_codes, code_lengths=full).audio_values,
        )


def test_simple_api_mixes_lengths_in_one_batch(model: Xcodec2Model, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Xcodec2Model.batch_invariant is True
    items = _waveforms([HOP * 4, 700, HOP * 9 + 1], seed=4)
    codec = Codec(model)
    calls: list[int] = []
    tokenize = model.tokenize

    def counting_tokenize(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return tokenize(*args, **kwargs)

    monkeypatch.setattr(model, "tokenize", counting_tokenize)
    together = codec.encode(items, sampling_rate=16000)
    decoded = codec.decode(together)
    assert isinstance(together, list) and isinstance(decoded, list)
    assert len(calls) == 1  # one padded batch, not one call per item
    assert_codes_vary(torch.cat([codes.reshape(-1) for codes in together]), min_distinct=3)
    for item, codes, audio in zip(items, together, decoded, strict=True):
        codes_alone = codec.encode(item, sampling_rate=16000)
        audio_alone = codec.decode(codes)
        assert isinstance(codes_alone, torch.Tensor) and isinstance(audio_alone, torch.Tensor)
        assert torch.equal(codes, codes_alone)
        assert_close_to_peak(audio, audio_alone, AUDIO_TOLERANCE)


def test_real_recordings_in_one_padded_batch(model: Xcodec2Model, audio_dir: Path) -> None:
    from xcodec.audio import load_audio

    # A few seconds each, cut at lengths that are not multiples of the hop.
    cuts = {
        "speech_en.flac": 33_001,
        "speech_cn.wav": 17_321,
        "music.wav": 48_000,
        "speech_en_nq_1.wav": 5_111,
    }
    items = [load_audio(audio_dir / name, 16000).waveform[4000 : 4000 + cut] for name, cut in cuts.items()]
    waveforms, lengths = _pad(items)
    with torch.inference_mode():
        batch = model.tokenize(waveforms, lengths)
        decoded = model.detokenize(batch.audio_codes, batch.code_lengths)
        assert_codes_vary(_valid_codes(batch.audio_codes, batch.code_lengths), min_distinct=5)
        for index, item in enumerate(items):
            alone = model.tokenize(item[None])
            frames = int(batch.code_lengths[index])
            assert int(alone.code_lengths[0]) == frames == alone.audio_codes.shape[-1]
            assert torch.equal(batch.audio_codes[index, :, :frames], alone.audio_codes[0]), f"item {index}"
            audio_alone = model.detokenize(alone.audio_codes).audio[0]
            assert_close_to_peak(decoded.audio[index, : audio_alone.numel()], audio_alone, AUDIO_TOLERANCE)


def test_batch_equals_transformers_reference_alone(tmp_path: Path) -> None:
    """The alone-run our tests compare with is the oracle's: invariant batch == transformers, item by item."""
    require_oracle("transformers")
    from test_xcodec2_model import assert_codes_match_or_tie, perturbed_reference, tiny_reference_config

    reference = perturbed_reference(tiny_reference_config(), seed=2)
    reference.save_pretrained(tmp_path)
    ours = Xcodec2Model.from_pretrained(tmp_path)
    items = _waveforms([HOP * 2, 333, HOP * 6 - 1], seed=12)
    waveforms, lengths = _pad(items)
    with torch.inference_mode():
        batch = ours.tokenize(waveforms, lengths)
        decoded = ours.detokenize(batch.audio_codes, batch.code_lengths)
    assert_codes_vary(_valid_codes(batch.audio_codes, batch.code_lengths), min_distinct=3)
    for index, item in enumerate(items):
        inputs = _features([item])
        with torch.no_grad():
            expected = reference.encode(**inputs).audio_codes
            expected_audio = reference.decode(audio_codes=expected).audio_values[0, 0]
        frames = expected.shape[-1]
        assert int(batch.code_lengths[index]) == frames
        assert_codes_match_or_tie(
            reference, inputs, expected.long(), batch.audio_codes[index : index + 1, :, :frames]
        )
        assert_close_to_peak(decoded.audio[index, : expected_audio.numel()], expected_audio, AUDIO_TOLERANCE)


# ---------------------------------------------------------------------------- the helpers


def test_conv_output_lengths_match_real_convolutions() -> None:
    rng = random.Random(0)
    for _ in range(40):
        kernel, stride, dilation = rng.randint(1, 9), rng.randint(1, 5), rng.randint(1, 3)
        padding = rng.randint(0, kernel)
        conv = nn.Conv1d(1, 1, kernel, stride=stride, padding=padding, dilation=dilation)
        lengths = torch.tensor([rng.randint(1, 60) for _ in range(4)])
        for n, predicted in zip(lengths.tolist(), conv1d_output_lengths(conv, lengths).tolist(), strict=True):
            if n + 2 * padding < dilation * (kernel - 1) + 1:
                assert predicted == 0
            else:
                assert conv(torch.zeros(1, 1, n)).shape[-1] == predicted
        padding_t = min(padding, kernel - 1)
        transposed = nn.ConvTranspose1d(1, 1, kernel, stride=stride, padding=padding_t)
        expected = []
        for n in lengths.tolist():
            # PyTorch refuses an empty output; the helper says 0 there.
            fits = (n - 1) * stride - 2 * padding_t + kernel > 0
            expected.append(transposed(torch.zeros(1, 1, n)).shape[-1] if fits else 0)
        assert conv_transpose_output_lengths(lengths, kernel, stride, padding_t).tolist() == expected


def test_padding_helpers_reproduce_each_item_alone() -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(3, 8, 20, generator=generator)
    lengths = torch.tensor([20, 1, 13])
    norm = nn.GroupNorm(4, 8, eps=1e-6)
    with torch.no_grad():
        norm.weight.normal_(generator=generator)
        norm.bias.normal_(generator=generator)
    zeroed = zero_padding(x, lengths)
    normalised = masked_group_norm(x, norm, lengths)
    pad = 5
    padded = replicate_pad(x, lengths, 3, pad)
    for index, n in enumerate(lengths.tolist()):
        item = x[index : index + 1, :, :n]
        reach = min(n + pad, x.shape[-1])
        both_sides = torch.nn.functional.pad(item, (3, pad), mode="replicate")
        assert torch.equal(padded[index : index + 1, :, : 3 + reach], both_sides[..., : 3 + reach])
        assert torch.all(zeroed[index, :, n:] == 0) and torch.equal(zeroed[index, :, :n], x[index, :, :n])
        assert _max_difference(normalised[index : index + 1, :, :n], norm(item)) < 1e-5
    assert lengths_if_padded(torch.tensor([20, 20]), 20) is None
    assert lengths_if_padded(torch.tensor([20, 25]), 20) is None  # clamped to the batch
    assert lengths_if_padded(lengths, 20) is not None
    assert mask_to_lengths(lengths_to_mask(lengths, 20)[:, None, :]).tolist() == lengths.tolist()
    # A zero-length item keeps one key so attention stays finite.
    assert attention_key_mask(torch.tensor([0, 3]), 4)[:, 0, 0].tolist() == [
        [True, False, False, False],
        [True, True, True, False],
    ]
    assert zero_padding(x, None) is x
