"""The simple API (xcodec.api): load, encode paths/arrays/tensors, decode, batching, description.

A tiny random X-Codec2 checkpoint (tests/_tiny.py) stands in for the published ones;
every code is compared with the model's own ``tokenize`` of the same waveform.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from _asserts import assert_close_to_peak, assert_codes_vary, assert_not_near_zero
from _tiny import save_tiny_xcodec2

from xcodec.api import Codec, load
from xcodec.audio import load_audio
from xcodec.base import CodecModel
from xcodec.models.xcodec2 import Xcodec2Model

SR = 16000


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_xcodec2")
    save_tiny_xcodec2(folder)
    return folder


@pytest.fixture(scope="module")
def codec(checkpoint: Path) -> Codec:
    return load(checkpoint, device="cpu")


def _wave(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * (150 + 100 * seed) * t) + 0.05 * rng.standard_normal(t.size)).astype(
        np.float32
    )


def _model_codes(model: CodecModel, waveform: np.ndarray | torch.Tensor) -> torch.Tensor:
    wave = torch.as_tensor(np.asarray(waveform, dtype=np.float32))
    with torch.inference_mode():
        out = model.tokenize(wave[None])
    return out.audio_codes[0, :, : int(out.code_lengths[0])]


def test_load_describes_the_codec(codec: Codec, checkpoint: Path) -> None:
    model = Xcodec2Model.from_pretrained(checkpoint)
    assert isinstance(codec.model, Xcodec2Model)
    assert codec.sample_rate == 16000 == model.sample_rate
    assert codec.hop_length == 320
    assert codec.frame_rate == pytest.approx(50.0)
    assert codec.num_codebooks == 1
    assert codec.codebook_size == 4**4 == model.codebook_size
    assert codec.device == torch.device("cpu")
    assert codec.model_id == str(checkpoint)
    # On the CPU one model call holds one window of audio at most.
    assert codec.max_batch_seconds == pytest.approx(codec.windows.window_seconds)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(codec.model.state_dict()[name], tensor, rtol=0, atol=0)


def test_paths_arrays_and_tensors_get_the_models_codes(codec: Codec, tmp_path: Path) -> None:
    wav, flac = tmp_path / "a.wav", tmp_path / "b.flac"
    sf.write(wav, _wave(0.9, 1), SR, subtype="FLOAT")
    sf.write(flac, _wave(1.3, 2), SR)  # 16-bit: the codes are those of the quantised samples
    codes = codec.encode([wav, str(flac)])
    assert isinstance(codes, list) and len(codes) == 2
    for got in codes:
        assert_codes_vary(got, min_distinct=3)
    for path, got in zip([wav, flac], codes, strict=True):
        expected = _model_codes(codec.model, load_audio(path).waveform)
        assert got.dtype == torch.int64 and got.device == torch.device("cpu")
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    wave = _wave(0.7, 3)
    from_array = codec.encode(wave, sampling_rate=SR)
    from_tensor = codec.encode(torch.from_numpy(wave), sampling_rate=SR)
    assert_codes_vary(from_array, min_distinct=3)
    torch.testing.assert_close(from_array, _model_codes(codec.model, wave), rtol=0, atol=0)
    torch.testing.assert_close(from_tensor, from_array, rtol=0, atol=0)


def test_single_input_returns_a_tensor_and_a_list_returns_a_list(codec: Codec) -> None:
    wave = _wave(0.5, 4)
    single = codec.encode(wave, sampling_rate=SR)
    listed = codec.encode([wave], sampling_rate=SR)
    assert isinstance(single, torch.Tensor) and isinstance(listed, list)
    assert_codes_vary(single, min_distinct=3)
    torch.testing.assert_close(listed[0], single, rtol=0, atol=0)
    audio_single = codec.decode(single)
    audio_listed = codec.decode(listed)
    assert isinstance(audio_single, torch.Tensor) and isinstance(audio_listed, list)
    assert_not_near_zero(audio_single)
    torch.testing.assert_close(audio_listed[0], audio_single, rtol=0, atol=0)


def test_batch_of_different_lengths_equals_each_item_alone(codec: Codec) -> None:
    # Lengths that are not multiples of the hop, one shorter than a hop, and a repeat.
    lengths = [16000, 5003, 200, 12345, 5003, 961]
    waves = [_wave(n / SR, seed) for seed, n in enumerate(lengths)]
    batch = codec.encode(waves, sampling_rate=SR)
    assert isinstance(batch, list)
    assert_codes_vary(torch.cat([codes.reshape(-1) for codes in batch]), min_distinct=4)
    for wave, got in zip(waves, batch, strict=True):
        torch.testing.assert_close(got, _model_codes(codec.model, wave), rtol=0, atol=0)
    decoded = codec.decode(batch)
    assert isinstance(decoded, list)
    for codes, audio in zip(batch, decoded, strict=True):
        with torch.inference_mode():
            alone = codec.model.detokenize(codes[None]).audio[0]
        assert audio.shape == (codes.shape[-1] * codec.hop_length,)
        assert_close_to_peak(audio, alone, 1e-4)


def test_small_batch_budget_gives_the_same_codes(checkpoint: Path) -> None:
    # A budget below one item forces one item per model call; results must not change.
    waves = [_wave(0.4, 7), _wave(0.9, 8)]
    roomy = load(checkpoint, max_batch_seconds=60.0).encode(waves, sampling_rate=SR)
    tight = load(checkpoint, max_batch_seconds=0.1).encode(waves, sampling_rate=SR)
    assert_codes_vary(torch.cat([codes.reshape(-1) for codes in roomy]), min_distinct=3)
    for a, b in zip(roomy, tight, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_decode_accepts_a_padded_batch_tensor_and_numpy(codec: Codec) -> None:
    codes = codec.encode(_wave(0.6, 5), sampling_rate=SR)
    assert isinstance(codes, torch.Tensor)
    assert_codes_vary(codes, min_distinct=3)  # so the flipped item differs from the first
    stacked = torch.stack([codes, codes.flip(-1)])  # (batch, num_codebooks, frames)
    decoded = codec.decode(stacked)
    assert isinstance(decoded, list) and len(decoded) == 2
    assert_close_to_peak(decoded[0], codec.decode(codes), 1e-4)
    assert_close_to_peak(decoded[1], codec.decode(codes.flip(-1)), 1e-4)
    from_numpy = codec.decode(codes.numpy().astype(np.int32))
    torch.testing.assert_close(from_numpy, codec.decode(codes), rtol=0, atol=0)


def test_stereo_tensor_is_mixed_down_and_44k_resampled(codec: Codec) -> None:
    from xcodec.audio import resample

    rate = 44100
    t = torch.arange(int(0.5 * rate)) / rate
    stereo = torch.stack([0.3 * torch.sin(2 * torch.pi * 220 * t), 0.1 * torch.sin(2 * torch.pi * 330 * t)])
    codes = codec.encode(stereo, sampling_rate=rate)
    mono16k = resample(stereo.mean(0).numpy(), rate, SR)
    assert_codes_vary(codes, min_distinct=2)
    torch.testing.assert_close(codes, _model_codes(codec.model, mono16k), rtol=0, atol=0)
