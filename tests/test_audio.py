"""Audio I/O: round trips through every format we promise, and errors that name the file."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from xcodec.audio import (
    DEFAULT_RESAMPLE_QUALITY,
    LoadedAudio,
    as_waveform,
    load_audio,
    resample,
    save_audio,
    to_mono,
)
from xcodec.errors import AudioError


def _multichannel(num_channels: int, num_samples: int, sample_rate: int, seed: int = 0) -> np.ndarray:
    """(channels, samples) float64 in (-0.9, 0.9): a different tone plus noise per channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sample_rate
    rows = [
        0.5 * np.sin(2 * np.pi * (300 + 170 * c) * t) + 0.1 * rng.standard_normal(num_samples)
        for c in range(num_channels)
    ]
    return np.clip(np.stack(rows), -0.9, 0.9)


# Reading back as float32 rounds by at most half a float32 step below 1.0.
FLOAT32_ROUNDING = 2.0**-25
# (extension, subtype, largest expected error after a float64 write -> float32 read):
# integer subtypes add their quantisation step; FLOAT must give the float32 value exactly.
LOSSLESS = [
    ("wav", "PCM_16", 2.0**-15),
    ("wav", "PCM_24", 2.0**-23 + FLOAT32_ROUNDING),
    ("wav", "PCM_32", 2.0**-31 + FLOAT32_ROUNDING),
    ("wav", "FLOAT", 0.0),
    ("wav", "DOUBLE", FLOAT32_ROUNDING),
    ("flac", "PCM_16", 2.0**-15),
    ("flac", "PCM_24", 2.0**-23 + FLOAT32_ROUNDING),
]


@pytest.mark.parametrize(("extension", "subtype", "tolerance"), LOSSLESS, ids=lambda v: str(v))
@pytest.mark.parametrize("num_channels", [1, 2, 3])
def test_lossless_round_trip(
    tmp_path: Path, extension: str, subtype: str, tolerance: float, num_channels: int
) -> None:
    rate = 22050 if num_channels == 3 else 16000
    original = _multichannel(num_channels, 3001, rate, seed=num_channels)
    path = tmp_path / f"clip.{extension}"
    sf.write(path, original.T, rate, subtype=subtype)

    kept = load_audio(path, mono=False)
    assert kept.waveform.dtype == torch.float32
    assert kept.waveform.shape == (num_channels, 3001)
    assert (kept.sample_rate, kept.original_sample_rate, kept.num_channels) == (rate, rate, num_channels)
    assert kept.path == path and not kept.mixed_down
    if subtype == "FLOAT":
        assert np.array_equal(kept.waveform.numpy(), original.astype(np.float32))
    else:
        assert np.abs(kept.waveform.numpy() - original).max() <= tolerance

    mixed = load_audio(path)
    assert mixed.waveform.shape == (3001,)
    assert mixed.mixed_down == (num_channels > 1)
    # Mono is the float32 average of the channels as read.
    expected = kept.waveform.numpy().mean(axis=0)
    assert np.array_equal(mixed.waveform.numpy(), expected)


def test_integer_pcm_is_scaled_exactly(tmp_path: Path) -> None:
    pcm = np.array([-32768, -16384, -1, 0, 1, 12345, 32767], dtype=np.int16)
    sf.write(tmp_path / "pcm.wav", pcm, 8000, subtype="PCM_16")
    loaded = load_audio(tmp_path / "pcm.wav")
    assert np.array_equal(loaded.waveform.numpy(), pcm.astype(np.float32) / 32768)
    pcm24 = np.array([-(2**31), 2**8, (2**31) - 2**8], dtype=np.int32)  # 24-bit values in int32
    sf.write(tmp_path / "pcm24.flac", pcm24, 8000, subtype="PCM_24")
    loaded = load_audio(tmp_path / "pcm24.flac")
    assert np.array_equal(loaded.waveform.numpy(), (pcm24.astype(np.float64) / 2**31).astype(np.float32))


def test_ogg_vorbis_round_trip(tmp_path: Path) -> None:
    original = _multichannel(2, 16000, 16000, seed=5)
    sf.write(tmp_path / "clip.ogg", original.T, 16000, subtype="VORBIS")
    loaded = load_audio(tmp_path / "clip.ogg", mono=False)
    assert loaded.waveform.shape == (2, 16000) and loaded.num_channels == 2
    # Lossy (Vorbis drops much of the added noise): still clearly the same signal, SNR > 10 dB.
    error = loaded.waveform.numpy() - original
    assert 10 * np.log10((original**2).sum() / (error**2).sum()) > 10


@pytest.mark.parametrize(("source_rate", "target_rate"), [(44100, 16000), (8000, 16000), (48000, 24000)])
def test_resampling_on_load(tmp_path: Path, source_rate: int, target_rate: int) -> None:
    seconds = 0.5
    t = np.arange(int(source_rate * seconds)) / source_rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "tone.wav", np.stack([tone, tone]).T, source_rate, subtype="FLOAT")
    loaded = load_audio(tmp_path / "tone.wav", target_sample_rate=target_rate)
    assert (loaded.sample_rate, loaded.original_sample_rate) == (target_rate, source_rate)
    assert loaded.mixed_down and loaded.waveform.dtype == torch.float32
    assert loaded.waveform.shape == (int(target_rate * seconds),)
    # The same as soxr on the float32 mono signal, at the documented quality.
    direct = soxr.resample(
        tone.astype(np.float32), source_rate, target_rate, quality=DEFAULT_RESAMPLE_QUALITY
    )
    assert np.array_equal(loaded.waveform.numpy(), direct)
    # And the tone itself survives (away from the filter's edge transients).
    expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(loaded.num_samples) / target_rate)
    inner = slice(200, -200)
    assert np.abs(loaded.waveform.numpy()[inner] - expected[inner]).max() < 2e-3
    assert loaded.duration == pytest.approx(seconds)


def test_resample_keeps_kind_dtype_and_layout() -> None:
    stereo = _multichannel(2, 4410, 44100)
    as_tensor = resample(torch.from_numpy(stereo).float(), 44100, 16000)
    assert isinstance(as_tensor, torch.Tensor)
    assert as_tensor.dtype == torch.float32 and as_tensor.shape == (2, 1600)
    as_array = resample(stereo, 44100, 16000, quality="VHQ")
    assert isinstance(as_array, np.ndarray) and as_array.dtype == np.float64 and as_array.shape == (2, 1600)
    for channel in range(2):
        one = resample(stereo[channel], 44100, 16000, quality="VHQ")
        assert np.allclose(one, as_array[channel], atol=1e-12)
    same = torch.ones(10)
    assert resample(same, 16000, 16000) is same
    with pytest.raises(AudioError):
        resample(np.zeros(10), 0, 16000)


def test_to_mono() -> None:
    stereo = np.array([[1.0, 0.0, -1.0], [0.0, 0.5, 1.0]], dtype=np.float32)
    assert np.array_equal(to_mono(stereo), np.array([0.5, 0.25, 0.0], dtype=np.float32))
    assert torch.equal(to_mono(torch.from_numpy(stereo)), torch.tensor([0.5, 0.25, 0.0]))
    mono = torch.arange(4.0)
    assert to_mono(mono) is mono
    with pytest.raises(AudioError):
        to_mono(np.zeros((1, 2, 3)))


def test_as_waveform_accepts_common_inputs() -> None:
    pcm = np.array([-32768, 0, 16384, 32767], dtype=np.int16)
    result = as_waveform(pcm, 16000)
    assert isinstance(result, LoadedAudio) and result.path is None
    assert np.array_equal(result.waveform.numpy(), pcm / np.float32(32768))
    pcm32 = np.array([-(2**31), 2**30], dtype=np.int32)
    assert as_waveform(pcm32, 16000).waveform.tolist() == [-1.0, 0.5]
    assert as_waveform(np.array([0, 128, 255], dtype=np.uint8), 8000).waveform.tolist() == [
        -1.0,
        0.0,
        127 / 128,
    ]
    doubles = np.linspace(-1, 1, 7)
    assert torch.equal(as_waveform(doubles, 16000).waveform, torch.from_numpy(doubles).float())
    stereo = torch.tensor([[0.2, 0.4, 0.6], [0.0, 0.0, 0.2]])
    mixed = as_waveform(stereo, 16000)
    assert mixed.mixed_down and mixed.num_channels == 2
    torch.testing.assert_close(mixed.waveform, torch.tensor([0.1, 0.2, 0.4]))
    assert not as_waveform(torch.zeros(1, 5), 16000).mixed_down
    tone = np.sin(2 * np.pi * 440 * np.arange(4410) / 44100)
    resampled = as_waveform(torch.from_numpy(tone), 44100, 16000)
    assert (resampled.sample_rate, resampled.original_sample_rate, resampled.num_samples) == (
        16000,
        44100,
        1600,
    )
    direct = soxr.resample(tone.astype(np.float32), 44100, 16000, quality=DEFAULT_RESAMPLE_QUALITY)
    assert np.array_equal(resampled.waveform.numpy(), direct)


def test_as_waveform_rejects_bad_input() -> None:
    with pytest.raises(AudioError, match="channels-first"):
        as_waveform(np.zeros((1000, 2)), 16000)
    with pytest.raises(AudioError, match="NaN"):
        as_waveform(np.array([0.0, np.nan]), 16000)
    with pytest.raises(AudioError, match="empty"):
        as_waveform(np.zeros(0), 16000)
    with pytest.raises(AudioError, match="dtype"):
        as_waveform(np.array(["a", "b"]), 16000)
    with pytest.raises(AudioError, match="shape"):
        as_waveform(np.zeros((1, 2, 3)), 16000)


# ---------------------------------------------------------------------------------------
# Files that are not usable audio
# ---------------------------------------------------------------------------------------


def _expect_error(path: Path, match: str) -> None:
    with pytest.raises(AudioError, match=match) as caught:
        load_audio(path)
    assert str(path) in str(caught.value)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    _expect_error(tmp_path / "nowhere.wav", "no such file")
    _expect_error(tmp_path, "not a file")
    (tmp_path / "empty.wav").write_bytes(b"")
    _expect_error(tmp_path / "empty.wav", "empty")
    sf.write(tmp_path / "silent.wav", np.zeros(0, dtype=np.float32), 16000)
    _expect_error(tmp_path / "silent.wav", "no audio samples")


def test_not_audio(tmp_path: Path) -> None:
    (tmp_path / "notes.wav").write_text("this is a text file, not a recording\n" * 20)
    _expect_error(tmp_path / "notes.wav", "cannot read as audio")
    (tmp_path / "noise.flac").write_bytes(np.random.default_rng(0).bytes(4096))
    _expect_error(tmp_path / "noise.flac", "cannot read as audio")


@pytest.mark.parametrize(
    ("extension", "subtype"), [("wav", "PCM_16"), ("wav", "FLOAT"), ("flac", "PCM_16"), ("ogg", "VORBIS")]
)
def test_truncated_files(tmp_path: Path, extension: str, subtype: str) -> None:
    whole = tmp_path / f"whole.{extension}"
    sf.write(whole, _multichannel(1, 16000, 16000)[0], 16000, subtype=subtype)
    assert load_audio(whole).num_samples == 16000
    cut = tmp_path / f"cut.{extension}"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    _expect_error(cut, "cannot read as audio|truncated")


def test_corrupt_flac(tmp_path: Path) -> None:
    whole = tmp_path / "whole.flac"
    sf.write(whole, _multichannel(1, 16000, 16000)[0], 16000)
    data = bytearray(whole.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 200] = bytes(b ^ 0xFF for b in data[middle : middle + 200])
    (tmp_path / "bad.flac").write_bytes(bytes(data))
    _expect_error(tmp_path / "bad.flac", "cannot read as audio")


def test_non_finite_and_loud_float_files(tmp_path: Path) -> None:
    sf.write(tmp_path / "nan.wav", np.array([0.0, np.nan, 0.1], dtype=np.float32), 16000, subtype="FLOAT")
    _expect_error(tmp_path / "nan.wav", "NaN or infinite")
    sf.write(tmp_path / "inf.wav", np.array([0.0, np.inf], dtype=np.float32), 16000, subtype="FLOAT")
    _expect_error(tmp_path / "inf.wav", "NaN or infinite")
    loud = np.array([0.0, 1.5, -2.0, 0.25], dtype=np.float32)
    sf.write(tmp_path / "loud.wav", loud, 16000, subtype="FLOAT")
    with pytest.warns(UserWarning, match="loud.wav"):
        loaded = load_audio(tmp_path / "loud.wav")
    assert np.array_equal(loaded.waveform.numpy(), loud)


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------


def test_save_audio_round_trips(tmp_path: Path) -> None:
    waveform = torch.from_numpy(_multichannel(1, 4000, 16000)[0]).float()
    exact = save_audio(tmp_path / "exact.wav", waveform, 16000, subtype="FLOAT")
    assert sf.info(exact).subtype == "FLOAT"
    assert torch.equal(load_audio(exact).waveform, waveform)

    default = save_audio(tmp_path / "default.wav", waveform, 16000)
    assert sf.info(default).subtype == "PCM_16"
    assert (load_audio(default).waveform - waveform).abs().max() <= 2.0**-15

    stereo = _multichannel(2, 4000, 24000).astype(np.float32)
    flac = save_audio(tmp_path / "stereo.flac", stereo, 24000)
    info = sf.info(flac)
    assert (info.channels, info.samplerate, info.subtype) == (2, 24000, "PCM_16")
    assert np.abs(load_audio(flac, mono=False).waveform.numpy() - stereo).max() <= 2.0**-15

    ogg = save_audio(tmp_path / "clip.ogg", waveform, 16000)
    assert sf.info(ogg).subtype == "VORBIS"


def test_save_audio_clips_pcm_with_warning(tmp_path: Path) -> None:
    loud = np.array([0.0, 1.5, -1.5, 0.5], dtype=np.float32)
    with pytest.warns(UserWarning, match="clipped"):
        path = save_audio(tmp_path / "loud.wav", loud, 16000)
    read_back = load_audio(path).waveform.numpy()
    assert read_back[1] == pytest.approx(1.0, abs=2.0**-15) and read_back[2] == -1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kept = save_audio(tmp_path / "loud_float.wav", loud, 16000, subtype="FLOAT")
    with pytest.warns(UserWarning):
        assert np.array_equal(load_audio(kept).waveform.numpy(), loud)


def test_save_audio_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"bad\.wav"):
        save_audio(tmp_path / "bad.wav", np.array([np.nan]), 16000)
    with pytest.raises(AudioError, match=r"clip\.ogg"):
        save_audio(tmp_path / "clip.ogg", np.zeros(100), 16000, subtype="PCM_16")
