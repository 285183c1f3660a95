"""Hostile input to the simple API: each case has one documented outcome (Codec.encode/decode docstrings).

All tests use a tiny random X-Codec2 (tests/_tiny.py) and audio synthesised here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from _asserts import assert_close_to_peak, assert_codes_vary
from _tiny import tiny_xcodec2

from xcodec.api import BatchError, Codec
from xcodec.audio import resample
from xcodec.errors import AudioError, XcodecError

SR = 16000


@pytest.fixture(scope="module")
def codec() -> Codec:
    torch.manual_seed(0)
    return Codec(tiny_xcodec2())


def _tone(seconds: float, sample_rate: int = SR, seed: int = 0) -> np.ndarray:
    """A chirp plus noise, amplitude about 0.5, float32 (samples,)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    chirp = 0.4 * np.sin(2 * np.pi * (200 + 300 * t) * t)
    return (chirp + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def _model_codes(codec: Codec, waveform: np.ndarray | torch.Tensor) -> torch.Tensor:
    """What the model itself gives a 16 kHz mono waveform, (num_codebooks, frames)."""
    wave = torch.as_tensor(np.asarray(waveform, dtype=np.float32))
    with torch.inference_mode():
        out = codec.model.tokenize(wave[None])
    return out.audio_codes[0, :, : int(out.code_lengths[0])]


# ---- empty and tiny inputs ---------------------------------------------------------------


def test_empty_array_raises_naming_the_item(codec: Codec) -> None:
    with pytest.raises(AudioError, match=r"item 0.*empty"):
        codec.encode(np.zeros(0, dtype=np.float32), sampling_rate=SR)


def test_zero_length_and_zero_byte_files_raise_naming_the_file(codec: Codec, tmp_path: Path) -> None:
    no_frames = tmp_path / "no_frames.wav"
    sf.write(no_frames, np.zeros(0, dtype=np.float32), SR)
    zero_bytes = tmp_path / "zero_bytes.wav"
    zero_bytes.write_bytes(b"")
    for path in (no_frames, zero_bytes):
        with pytest.raises(AudioError, match=path.name):
            codec.encode(path)


def test_shorter_than_one_hop_gets_one_frame(codec: Codec) -> None:
    short = _tone(0.005)  # 80 samples, a quarter hop
    codes = codec.encode(short, sampling_rate=SR)
    assert isinstance(codes, torch.Tensor)
    assert codes.shape == (1, 1)
    torch.testing.assert_close(codes, _model_codes(codec, short), rtol=0, atol=0)
    audio = codec.decode(codes)
    assert isinstance(audio, torch.Tensor) and audio.shape == (codec.hop_length,)


def test_pure_silence_is_encoded_without_warning(codec: Codec, recwarn: pytest.WarningsRecorder) -> None:
    silence = np.zeros(SR, dtype=np.float32)
    codes = codec.encode(silence, sampling_rate=SR)
    assert isinstance(codes, torch.Tensor)
    torch.testing.assert_close(codes, _model_codes(codec, silence), rtol=0, atol=0)
    audio = codec.decode(codes)
    assert isinstance(audio, torch.Tensor) and bool(torch.isfinite(audio).all())
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


# ---- bad sample values ---------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_raise_naming_the_item(codec: Codec, bad: float) -> None:
    wave = _tone(0.5)
    wave[100] = bad
    with pytest.raises(AudioError, match=r"item 0.*NaN or infinite"):
        codec.encode(wave, sampling_rate=SR)


def test_non_finite_file_raises_naming_the_file(codec: Codec, tmp_path: Path) -> None:
    wave = _tone(0.5)
    wave[7] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, wave, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav.*NaN"):
        codec.encode(path)


def test_values_beyond_full_scale_warn_and_are_kept(codec: Codec, tmp_path: Path) -> None:
    loud = 3.0 * _tone(0.5)
    with pytest.warns(UserWarning, match=r"item 0: samples reach 1\.[0-9]+|item 0: samples reach"):
        codes = codec.encode(loud, sampling_rate=SR)
    assert_codes_vary(codes, min_distinct=3)
    torch.testing.assert_close(codes, _model_codes(codec, loud), rtol=0, atol=0)
    # The loud input is not clipped: its codes differ from those of the clipped signal.
    assert not torch.equal(torch.as_tensor(codes), _model_codes(codec, np.clip(loud, -1, 1)))
    path = tmp_path / "loud.wav"
    sf.write(path, loud, SR, subtype="FLOAT")
    with pytest.warns(UserWarning, match="loud.wav"):
        from_file = codec.encode(path)
    torch.testing.assert_close(from_file, codes, rtol=0, atol=0)


# ---- sample formats and rates ----------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "full_scale"), [(np.int16, 2**15), (np.int32, 2**31)])
def test_integer_pcm_arrays_are_scaled_by_full_scale(codec: Codec, dtype: type, full_scale: int) -> None:
    pcm: np.ndarray = np.round(_tone(0.5) * (full_scale - 1)).astype(dtype)
    codes = codec.encode(pcm, sampling_rate=SR)
    assert_codes_vary(codes, min_distinct=3)
    torch.testing.assert_close(codes, _model_codes(codec, pcm / full_scale), rtol=0, atol=0)


def test_float64_is_cast_to_float32(codec: Codec) -> None:
    wave = _tone(0.5).astype(np.float64) + 1e-12  # float64-only detail vanishes in the cast
    codes = codec.encode(wave, sampling_rate=SR)
    assert_codes_vary(codes, min_distinct=3)
    torch.testing.assert_close(codes, _model_codes(codec, wave.astype(np.float32)), rtol=0, atol=0)
    tensor_codes = codec.encode(torch.from_numpy(wave), sampling_rate=SR)
    torch.testing.assert_close(tensor_codes, codes, rtol=0, atol=0)


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_other_rates_are_resampled(codec: Codec, rate: int) -> None:
    wave = _tone(0.6, rate)
    codes = codec.encode(wave, sampling_rate=rate)
    expected = _model_codes(codec, resample(wave, rate, SR))
    assert_codes_vary(expected, min_distinct=3)
    torch.testing.assert_close(codes, expected, rtol=0, atol=0)
    assert abs(expected.shape[-1] - 0.6 * codec.frame_rate) <= 1


@pytest.mark.parametrize("channels", [2, 6])
def test_multichannel_files_are_mixed_to_mono(codec: Codec, tmp_path: Path, channels: int) -> None:
    rows = np.stack([_tone(0.5, seed=c) * (c + 1) / channels for c in range(channels)])  # (channels, samples)
    path = tmp_path / f"{channels}ch.wav"
    sf.write(path, rows.T, SR, subtype="FLOAT")
    codes = codec.encode(path)
    assert_codes_vary(codes, min_distinct=3)
    torch.testing.assert_close(codes, _model_codes(codec, rows.mean(axis=0)), rtol=0, atol=0)
    assert codec.prepare(path).mixed_down
    # Channels-first arrays take the same path.
    torch.testing.assert_close(codec.encode(rows, sampling_rate=SR), codes, rtol=0, atol=0)


@pytest.mark.parametrize("subtype", ["PCM_24", "FLOAT"])
def test_24_bit_and_float_files(codec: Codec, tmp_path: Path, subtype: str) -> None:
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, _tone(0.5), SR, subtype=subtype)
    stored, _ = sf.read(path, dtype="float32")
    assert sf.info(path).subtype == subtype
    codes = codec.encode(path)
    assert_codes_vary(codes, min_distinct=3)
    torch.testing.assert_close(codes, _model_codes(codec, stored), rtol=0, atol=0)


# ---- bad codes for decode ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        (torch.tensor([[0, 5, -1]]), r"codes\[0\]: code values must lie in \[0, 256\), found -1\.\.5"),
        (torch.tensor([[0, 256, 3]]), r"codes\[0\]: code values must lie in \[0, 256\), found 0\.\.256"),
        (torch.zeros(2, 4, dtype=torch.long), r"codes\[0\]: 2 codebooks .*takes 1 to 1"),
        (torch.zeros(1, 1, 4, 1, dtype=torch.long), r"codes\[0\]: expected shape \(num_codebooks, frames\)"),
        (torch.zeros(1, 4), r"codes\[0\]: codes must be integers"),
        (torch.zeros(1, 0, dtype=torch.long), r"codes\[0\]: no frames"),
    ],
)
def test_bad_codes_raise_a_clear_error(codec: Codec, codes: torch.Tensor, message: str) -> None:
    assert codec.codebook_size == 256  # the messages above name the tiny model's range
    with pytest.raises(XcodecError, match=message):
        codec.decode(codes)


# ---- one bad item in a batch ---------------------------------------------------------------------


def test_encode_batch_with_one_bad_item_returns_the_others(codec: Codec, tmp_path: Path) -> None:
    good_a, good_b = _tone(0.4, seed=1), _tone(0.7, seed=2)
    bad = good_a.copy()
    bad[3] = np.nan
    missing = tmp_path / "missing.wav"
    with pytest.raises(BatchError) as caught:
        codec.encode([good_a, bad, good_b, np.zeros(0, dtype=np.float32)], sampling_rate=SR)
    error = caught.value
    assert [e.index for e in error.errors] == [1, 3]
    assert "item 1" in str(error.errors[0]) and "NaN" in str(error.errors[0])
    assert error.results[1] is None and error.results[3] is None
    assert_codes_vary(error.results[0], min_distinct=3)
    assert_codes_vary(error.results[2], min_distinct=3)
    torch.testing.assert_close(error.results[0], _model_codes(codec, good_a), rtol=0, atol=0)
    torch.testing.assert_close(error.results[2], _model_codes(codec, good_b), rtol=0, atol=0)
    with pytest.raises(BatchError, match=r"missing\.wav") as caught_file:
        codec.encode([missing, good_a], sampling_rate=SR)
    assert caught_file.value.results[0] is None and caught_file.value.results[1] is not None


def test_decode_batch_with_one_bad_item_returns_the_others(codec: Codec) -> None:
    good = _model_codes(codec, _tone(0.3))
    assert_codes_vary(good, min_distinct=3)
    with pytest.raises(BatchError, match=r"codes\[1\]") as caught:
        codec.decode([good, torch.full((1, 5), 999), good[:, :4]])
    error = caught.value
    assert [e.index for e in error.errors] == [1]
    assert error.results[1] is None
    solo = codec.decode(good)
    assert isinstance(solo, torch.Tensor)
    assert_close_to_peak(error.results[0], solo, 1e-4)
    assert error.results[2] is not None and error.results[2].shape == (4 * codec.hop_length,)
