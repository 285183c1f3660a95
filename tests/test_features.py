"""Feature extractors against their oracles.

Oracles: ``kaldi_native_fbank`` (Kaldi's own C++ filterbank) for the raw log-mel;
Transformers' ``SeamlessM4TFeatureExtractor`` for normalised, stride-stacked features;
Transformers' ``Xcodec2FeatureExtractor`` itself for everything at once, with its
``torchaudio.compliance.kaldi.fbank`` call (torchaudio is not installable here) routed to
``kaldi_native_fbank``; Transformers' ``DacFeatureExtractor`` for X-Codec.

Tolerance on log-mel values. A log-mel bin far below its frame's strongest bin holds an
energy below the float32 rounding of that frame's FFT, so two float32 implementations (or
ours in float32 vs float64) differ there by up to ~1 in the log. The 1e-3 bound is
therefore asserted on every bin within ``DYNAMIC_RANGE`` nats (about 43 dB) of its frame's
top bin, and the remaining bins are checked in the linear domain relative to that top bin.
"""

from __future__ import annotations

import importlib
import json
import math
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _oracle import require_oracle

from xcodec.configs.base import ConfigError
from xcodec.errors import AudioError
from xcodec.features import (
    KALDI_WAVEFORM_SCALE,
    PREPROCESSOR_CONFIG_NAME,
    BatchFeature,
    Xcodec2FeatureExtractor,
    XcodecFeatureExtractor,
    kaldi_fbank,
)

knf = require_oracle("kaldi_native_fbank")

SAMPLE_RATE = 16000
DYNAMIC_RANGE = 10.0  # nats below the frame's top bin where the 1e-3 bound is asserted
LOG_TOLERANCE = 1e-3
LINEAR_TOLERANCE = 1e-4  # |E_ours - E_kaldi| / max(E_kaldi in frame)
RECORDINGS = ["speech_en.flac", "speech_cn.wav", "music.wav", "speech_en_nq_1.wav"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _kaldi_reference(waveform: np.ndarray, **overrides: float) -> np.ndarray:
    """kaldi_native_fbank with the options the X-Codec2 reference passes to kaldi.fbank."""
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = SAMPLE_RATE
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = True
    opts.frame_opts.window_type = "povey"
    opts.frame_opts.preemph_coeff = 0.97
    opts.frame_opts.remove_dc_offset = True
    opts.frame_opts.frame_length_ms = 25.0
    opts.frame_opts.frame_shift_ms = 10.0
    opts.mel_opts.num_bins = int(overrides.get("num_mel_bins", 80))
    opts.mel_opts.low_freq = 20.0
    opts.mel_opts.high_freq = SAMPLE_RATE // 2
    opts.use_energy = False
    opts.use_log_fbank = True
    opts.use_power = True
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(SAMPLE_RATE, np.asarray(waveform, dtype=np.float32).tolist())
    fbank.input_finished()
    return np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])


def _assert_log_mel_close(ours: np.ndarray, reference: np.ndarray) -> None:
    assert ours.shape == reference.shape
    headroom = reference - reference.max(axis=-1, keepdims=True)
    strong = headroom > -DYNAMIC_RANGE
    assert strong.mean() > 0.4, "test signal has too little energy to be a meaningful check"
    assert np.abs(ours - reference)[strong].max() <= LOG_TOLERANCE
    scale = np.exp(reference).max(axis=-1, keepdims=True)
    assert (np.abs(np.exp(ours) - np.exp(reference)) / scale).max() <= LINEAR_TOLERANCE


def _synthetic(kind: str, num_samples: int, seed: int) -> np.ndarray:
    """Audio with a noise floor about 20 dB under the signal (see the module docstring)."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / SAMPLE_RATE
    if kind == "chirp":
        signal = 0.3 * np.sin(2 * np.pi * (60 * t + 2500 * t**2))
    elif kind == "tones":
        signal = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 3100 * t + 1.0)
        signal *= 0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)
    elif kind == "noise":
        signal = 0.2 * rng.standard_normal(num_samples)
    else:
        raise ValueError(kind)
    floor = 0.02 * rng.standard_normal(num_samples)
    return (signal + floor).astype(np.float32)


# ---------------------------------------------------------------------------------------
# Raw filterbank vs kaldi_native_fbank
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "num_samples"),
    [("chirp", 32000), ("tones", 7777), ("noise", 400), ("noise", 12345), ("chirp", 16161)],
)
def test_fbank_matches_kaldi_native(kind: str, num_samples: int) -> None:
    audio = _synthetic(kind, num_samples, seed=num_samples)
    scaled = audio * KALDI_WAVEFORM_SCALE
    ours = kaldi_fbank(torch.from_numpy(scaled)[None])[0].numpy()
    _assert_log_mel_close(ours, _kaldi_reference(scaled))


def test_fbank_batch_rows_are_independent() -> None:
    """A batch row's filterbank is that waveform's own (rows never mix)."""
    first = _synthetic("chirp", 8000, seed=1) * KALDI_WAVEFORM_SCALE
    second = _synthetic("noise", 8000, seed=2) * KALDI_WAVEFORM_SCALE
    batch = kaldi_fbank(torch.from_numpy(np.stack([first, second])))
    torch.testing.assert_close(batch[1], kaldi_fbank(torch.from_numpy(second)[None])[0], rtol=0, atol=1e-5)
    _assert_log_mel_close(batch[0].numpy(), _kaldi_reference(first))


def test_fbank_on_recordings(audio_dir: Path) -> None:
    import soundfile as sf

    for name in RECORDINGS:
        audio, rate = sf.read(audio_dir / name, dtype="float32")
        assert rate == SAMPLE_RATE
        scaled = audio * KALDI_WAVEFORM_SCALE
        ours = kaldi_fbank(torch.from_numpy(scaled)[None])[0].numpy()
        _assert_log_mel_close(ours, _kaldi_reference(scaled))


def test_fbank_float64_path_agrees() -> None:
    audio = torch.from_numpy(_synthetic("tones", 6000, seed=3) * KALDI_WAVEFORM_SCALE)[None]
    single = kaldi_fbank(audio)
    double = kaldi_fbank(audio.double())
    assert double.dtype == torch.float64
    torch.testing.assert_close(single.double(), double, rtol=0, atol=1e-3)


# ---------------------------------------------------------------------------------------
# Padding rules
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_samples", [1, 2, 319, 320, 321, 639, 640, 641, 16000])
def test_padding_rule(num_samples: int) -> None:
    """X-Codec2 always appends 1..hop_length zeros: ceil((n + 1) / hop) * hop samples."""
    extractor = Xcodec2FeatureExtractor()
    out = extractor(np.full(num_samples, 0.25, dtype=np.float32), sampling_rate=SAMPLE_RATE)
    expected = math.ceil((num_samples + 1) / 320) * 320
    assert 1 <= expected - num_samples <= 320
    assert out["input_values"].shape == (1, 1, expected)
    assert int(out["padding_mask"].sum()) == num_samples + 1
    assert torch.all(out["input_values"][0, 0, num_samples:] == 0)
    assert torch.all(out["input_values"][0, 0, :num_samples] == 0.25)
    assert out["input_features"].shape == (1, expected // 320, 160)
    assert out["input_features_mask"].shape == (1, expected // 320)
    assert bool(out["input_features_mask"].all())


def test_padding_rule_batch() -> None:
    extractor = Xcodec2FeatureExtractor()
    lengths = [320, 100, 1000]
    out = extractor([_synthetic("noise", n, seed=n) for n in lengths], sampling_rate=SAMPLE_RATE)
    # Longest padded item: ceil(1001 / 320) * 320 = 1280 samples, 8 frames, 4 stacked rows.
    assert out["input_values"].shape == (3, 1, 1280)
    assert out["padding_mask"].sum(dim=1).tolist() == [321, 101, 1001]
    assert out["input_features_mask"].sum(dim=1).tolist() == [2, 1, 4]
    assert out["input_features"].shape == (3, 4, 160)
    # Padded rows carry padding_value (1.0) in every bin.
    assert torch.all(out["input_features"][1, 1:] == 1.0)
    assert torch.all(out["input_features"][0, 2:] == 1.0)


def test_xcodec_padding_matches_dac_extractor() -> None:
    require_oracle("transformers")
    from transformers import DacFeatureExtractor

    reference = DacFeatureExtractor(sampling_rate=SAMPLE_RATE, hop_length=320)
    ours = XcodecFeatureExtractor()
    for batch in (
        [_synthetic("noise", 640, seed=1)],
        [_synthetic("noise", n, seed=n) for n in (5, 700, 333)],
    ):
        expected = reference(batch, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        got = ours(batch, sampling_rate=SAMPLE_RATE)
        assert set(got) == set(expected)
        for name in expected:
            assert got[name].dtype == expected[name].dtype, name
            assert torch.equal(got[name], expected[name]), name
    # The same for a single 1-D float64 waveform (cast to float32 as the reference does).
    single = np.random.default_rng(0).standard_normal(1000)
    expected = reference(single, sampling_rate=SAMPLE_RATE, return_tensors="pt")
    got = ours(single, sampling_rate=SAMPLE_RATE)
    assert all(torch.equal(got[name], expected[name]) for name in expected)


# ---------------------------------------------------------------------------------------
# Against Transformers' extractors
# ---------------------------------------------------------------------------------------


def _kaldi_native_as_torchaudio() -> types.SimpleNamespace:
    """A stand-in for the ``torchaudio`` module whose ``compliance.kaldi.fbank`` is Kaldi's."""

    def fbank(waveform: torch.Tensor, **options: object) -> torch.Tensor:
        expected = {
            "num_mel_bins": 80,
            "frame_length": 25.0,
            "frame_shift": 10.0,
            "sample_frequency": SAMPLE_RATE,
            "window_type": "povey",
            "preemphasis_coefficient": 0.97,
            "remove_dc_offset": True,
            "use_log_fbank": True,
            "use_energy": False,
            "dither": 0.0,
            "snip_edges": True,
            "low_freq": 20,
            "high_freq": SAMPLE_RATE // 2,
        }
        assert options == expected, options  # the stand-in only knows these options
        frames = _kaldi_reference(waveform[0].cpu().numpy())
        return torch.from_numpy(frames).to(waveform)

    return types.SimpleNamespace(compliance=types.SimpleNamespace(kaldi=types.SimpleNamespace(fbank=fbank)))


@pytest.fixture
def reference_xcodec2_extractor(monkeypatch: pytest.MonkeyPatch) -> object:
    require_oracle("transformers")
    module = importlib.import_module("transformers.models.xcodec2.feature_extraction_xcodec2")
    monkeypatch.setattr(module, "torchaudio", _kaldi_native_as_torchaudio(), raising=False)
    return module.Xcodec2FeatureExtractor()


def _normalised_close(
    ours: torch.Tensor, reference: torch.Tensor, input_values: torch.Tensor, lengths: list[int]
) -> None:
    """Normalised features agree within the error the normalisation lets through.

    z = (x - mean) / s amplifies a log-mel error d to about 2 d (1 + |z|) / s, and s can be
    tiny for an item of two or four frames, so the bound is computed per item and bin: d is
    the item's largest raw log-mel difference to Kaldi, s its per-bin standard deviation.
    Nearly every element must also meet the plain 1e-3 bound.
    """
    extractor = Xcodec2FeatureExtractor()
    assert ours.shape == reference.shape
    within, total = 0, 0
    for index, n in enumerate(lengths):
        window = (
            F.pad(input_values[index, 0, : extractor.padded_length(n)], (160, 160)) * KALDI_WAVEFORM_SCALE
        )
        raw = kaldi_fbank(window[None])[0]
        raw_diff = float((raw - torch.from_numpy(_kaldi_reference(window.numpy()))).abs().max())
        frames = raw.shape[0]
        spread = torch.sqrt(raw.var(dim=0, unbiased=True) + 1e-7).repeat(2)  # per stacked column
        rows = frames // 2
        z = reference[index, :rows]
        bound = 2 * raw_diff * (1 + z.abs()) / spread + 1e-5
        diff = (ours[index, :rows] - z).abs()
        assert bool((diff <= bound).all()), float((diff - bound).max())
        within, total = within + int((diff <= 1e-3).sum()), total + diff.numel()
        assert torch.equal(ours[index, rows:], reference[index, rows:])
    assert within >= 0.99 * total, (within, total)


@pytest.mark.parametrize("lengths", [[4000], [319, 320, 321], [5000, 1280, 2999, 640], [16000, 700]], ids=str)
def test_matches_reference_extractor(reference_xcodec2_extractor: object, lengths: list[int]) -> None:
    """Every output of ours against the Transformers extractor (Kaldi fbank inside)."""
    batch = [
        _synthetic(kind, n, seed=n)
        for kind, n in zip(["chirp", "noise", "tones", "chirp"], lengths, strict=False)
    ]
    expected = reference_xcodec2_extractor(batch, sampling_rate=SAMPLE_RATE, return_tensors="pt")  # type: ignore[operator]
    got = Xcodec2FeatureExtractor()(batch, sampling_rate=SAMPLE_RATE)
    assert set(got) == set(expected)
    for name in ("input_values", "padding_mask", "input_features_mask"):
        assert got[name].dtype == expected[name].dtype, name
        assert got[name].shape == expected[name].shape, name
        assert torch.equal(got[name], expected[name]), name
    assert got["input_features"].shape == expected["input_features"].shape
    assert got["input_features"].dtype == expected["input_features"].dtype
    _normalised_close(got["input_features"], expected["input_features"], got["input_values"], lengths)


def test_matches_reference_extractor_on_recordings(
    reference_xcodec2_extractor: object, audio_dir: Path
) -> None:
    import soundfile as sf

    batch = [
        sf.read(audio_dir / name, dtype="float32")[0] for name in ("speech_en.flac", "speech_en_nq_1.wav")
    ]
    batch.append(batch[0][: 3 * SAMPLE_RATE])
    expected = reference_xcodec2_extractor(batch, sampling_rate=SAMPLE_RATE, return_tensors="pt")  # type: ignore[operator]
    got = Xcodec2FeatureExtractor()(batch, sampling_rate=SAMPLE_RATE)
    for name in ("input_values", "padding_mask", "input_features_mask"):
        assert torch.equal(got[name], expected[name]), name
    _normalised_close(
        got["input_features"], expected["input_features"], got["input_values"], [len(b) for b in batch]
    )


def test_matches_seamless_m4t_features() -> None:
    """Normalised, stacked features against SeamlessM4T's numpy Kaldi front end."""
    require_oracle("transformers")
    from transformers import SeamlessM4TFeatureExtractor

    seamless = SeamlessM4TFeatureExtractor(padding_value=1.0)
    # The settings X-Codec2's features were modelled on.
    assert (seamless.num_mel_bins, seamless.stride, seamless.sampling_rate) == (80, 2, SAMPLE_RATE)
    ours = Xcodec2FeatureExtractor()
    lengths = [4321, 960, 2500]
    batch = [
        _synthetic(kind, n, seed=n) for kind, n in zip(["tones", "noise", "chirp"], lengths, strict=True)
    ]
    got = ours(batch, sampling_rate=SAMPLE_RATE)
    # SeamlessM4T sees exactly the waveform our filterbank sees: the item's padded samples
    # with hop // 2 zeros on each side.
    windows = []
    for row, n in zip(got["input_values"][:, 0], lengths, strict=True):
        windows.append(np.pad(row[: ours.padded_length(n)].numpy(), 160))
    expected = seamless(
        windows, sampling_rate=SAMPLE_RATE, return_tensors="pt", do_normalize_per_mel_bins=True
    )
    assert expected["input_features"].shape == got["input_features"].shape
    assert torch.equal(expected["attention_mask"].to(torch.int32), got["input_features_mask"])
    _normalised_close(got["input_features"], expected["input_features"].float(), got["input_values"], lengths)


# ---------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------


def test_batch_equals_solo() -> None:
    extractor = Xcodec2FeatureExtractor()
    lengths = [3000, 640, 10000, 321]
    batch = [
        _synthetic(kind, n, seed=n)
        for kind, n in zip(["chirp", "noise", "tones", "noise"], lengths, strict=True)
    ]
    together = extractor(batch, sampling_rate=SAMPLE_RATE)
    for index, (audio, n) in enumerate(zip(batch, lengths, strict=True)):
        alone = extractor(audio, sampling_rate=SAMPLE_RATE)
        samples = extractor.padded_length(n)
        rows = alone["input_features"].shape[1]
        assert torch.equal(together["input_values"][index, :, :samples], alone["input_values"][0])
        assert torch.equal(together["padding_mask"][index, :samples], alone["padding_mask"][0])
        assert int(together["input_features_mask"][index].sum()) == rows
        torch.testing.assert_close(
            together["input_features"][index, :rows], alone["input_features"][0], rtol=0, atol=1e-5
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    extractor = Xcodec2FeatureExtractor()
    batch = [torch.from_numpy(_synthetic("chirp", n, seed=n)) for n in (4000, 1500)]
    on_cpu = extractor(batch)
    on_gpu = extractor([item.cuda() for item in batch])
    assert all(value.device.type == "cuda" for value in on_gpu.values())
    for name in ("input_values", "padding_mask", "input_features_mask"):
        assert torch.equal(on_gpu[name].cpu(), on_cpu[name]), name
    torch.testing.assert_close(on_gpu["input_features"].cpu(), on_cpu["input_features"], rtol=0, atol=1e-3)
    moved = extractor(batch, device="cuda")
    assert moved["input_features"].device.type == "cuda"


def test_inputs_of_every_kind_agree() -> None:
    extractor = Xcodec2FeatureExtractor()
    audio = _synthetic("tones", 2000, seed=9)
    base = extractor(audio)
    variants = [
        torch.from_numpy(audio),
        audio.astype(np.float64),
        audio[None, :],
        torch.from_numpy(audio)[None, :],
        [audio],
        audio.tolist(),
        audio.astype(">f4"),  # big-endian
        audio[::-1].copy()[::-1],  # a negative-stride view of the same samples
    ]
    for variant in variants:
        out = extractor(variant, sampling_rate=SAMPLE_RATE)
        for name in base:
            assert torch.equal(out[name], base[name]), name


def test_return_numpy_and_batch_feature_to() -> None:
    extractor = Xcodec2FeatureExtractor()
    audio = _synthetic("noise", 1000, seed=4)
    as_numpy = extractor(audio, return_tensors="np")
    assert isinstance(as_numpy["input_features"], np.ndarray)
    out = extractor(audio)
    assert isinstance(out, BatchFeature)
    assert out.input_values is out["input_values"]
    half = out.to(torch.float16)
    assert half["input_features"].dtype == torch.float16
    assert half["input_values"].dtype == torch.float16
    assert half["padding_mask"].dtype == torch.int32
    moved = out.to("cpu", torch.float64)
    assert moved["input_features_mask"].dtype == torch.int32
    assert moved["input_features"].dtype == torch.float64
    with pytest.raises(AttributeError):
        _ = out.not_there


# ---------------------------------------------------------------------------------------
# Transformers' call arguments: audio= / raw_audio=, padding, max_length, truncation
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"padding": "longest"},
        {"padding": "max_length", "max_length": 3000},
        {"padding": True, "max_length": 1280, "truncation": True},
        {"padding": True, "max_length": 1000, "truncation": True},
    ],
    ids=str,
)
def test_padding_arguments_match_reference_extractor(
    reference_xcodec2_extractor: object, options: dict[str, object]
) -> None:
    """input_values and padding_mask equal Transformers' for every padding argument; the features
    too, except their row count under padding="max_length" (see the extractor's docstring)."""
    lengths = [1000, 1700, 640]
    batch = [_synthetic("chirp", n, seed=n) for n in lengths]
    expected = reference_xcodec2_extractor(
        audio=batch, sampling_rate=SAMPLE_RATE, return_tensors="pt", **options
    )  # type: ignore[operator]
    got = Xcodec2FeatureExtractor()(audio=batch, sampling_rate=SAMPLE_RATE, **options)  # type: ignore[arg-type]
    for name in ("input_values", "padding_mask"):
        assert torch.equal(got[name], expected[name]), name
    counts = got["padding_mask"].sum(dim=-1)
    rows = got["input_values"].shape[-1] // 320
    assert got["input_features"].shape[1] == got["input_features_mask"].shape[1] == rows
    if options["padding"] == "max_length":
        # Transformers pads the features to max_length rows (3000 frames / stride 2 = 1500), a
        # shape its model cannot use; ours end where the audio does. Each item's own rows agree.
        assert expected["input_features"].shape[1] == 1500
        longest = got["padding_mask"].sum(dim=-1).max()
        unpadded = Xcodec2FeatureExtractor()(audio=batch, sampling_rate=SAMPLE_RATE)
        used = unpadded["input_features"].shape[1]
        assert int(longest) <= used * 320
        assert torch.equal(got["input_features"][:, :used], unpadded["input_features"])
        assert bool((got["input_features"][:, used:] == 1.0).all())
        assert torch.equal(got["input_features_mask"][:, :used], unpadded["input_features_mask"])
        return
    assert torch.equal(got["input_features_mask"], expected["input_features_mask"])
    _normalised_close(
        got["input_features"], expected["input_features"], got["input_values"], (counts - 1).tolist()
    )


def test_padding_argument_errors() -> None:
    audio = [_synthetic("noise", 1000, seed=1), _synthetic("noise", 1700, seed=2)]
    for extractor in (Xcodec2FeatureExtractor(), XcodecFeatureExtractor()):
        with pytest.raises(AudioError, match="needs max_length"):
            extractor(audio, padding="max_length")
        with pytest.raises(AudioError, match="needs max_length"):
            extractor(audio, truncation=True)
        with pytest.raises(AudioError, match="truncation=True"):
            extractor(audio, padding="max_length", max_length=1280)
        with pytest.raises(AudioError, match="padding must be"):
            extractor(audio, padding="left")
        with pytest.raises(AudioError, match="not both"):
            extractor(audio=audio, raw_audio=audio)
        with pytest.raises(AudioError, match="no audio"):
            extractor()
    # Transformers' X-Codec2 extractor fails on padding=False; ours says why.
    with pytest.raises(AudioError, match="padding=False"):
        Xcodec2FeatureExtractor()(audio[0], padding=False)
    # X-Codec without padding needs equal lengths (Transformers cannot stack them either).
    with pytest.raises(AudioError, match="one length"):
        XcodecFeatureExtractor()(audio, padding=False)


def test_audio_and_raw_audio_are_the_same_argument() -> None:
    audio = [_synthetic("tones", 900, seed=3), _synthetic("chirp", 2000, seed=4)]
    for extractor in (Xcodec2FeatureExtractor(), XcodecFeatureExtractor()):
        by_audio = extractor(audio=audio, sampling_rate=SAMPLE_RATE)
        by_raw = extractor(raw_audio=audio, sampling_rate=SAMPLE_RATE)
        positional = extractor(audio, sampling_rate=SAMPLE_RATE)
        for name in by_audio:
            assert torch.equal(by_audio[name], by_raw[name]) and torch.equal(by_audio[name], positional[name])
        none = extractor(audio, return_tensors=None)
        assert all(torch.equal(none[name], by_audio[name]) for name in by_audio)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"padding": "longest", "return_tensors": "np"},
        {"padding": "max_length", "max_length": 3000},
        {"padding": False, "truncation": True, "max_length": 1280},
        {"padding": False, "truncation": True, "max_length": 900},
        {"truncation": True, "max_length": 1100},
    ],
    ids=str,
)
def test_xcodec_padding_arguments_match_dac_extractor(options: dict[str, object]) -> None:
    require_oracle("transformers")
    from transformers import DacFeatureExtractor

    # Equal lengths where Transformers does not pad (it cannot stack unequal ones).
    lengths = [1500, 1500] if options.get("padding") is False else [1000, 1700, 333]
    batch = [_synthetic("noise", n, seed=n + index) for index, n in enumerate(lengths)]
    return_tensors = options.get("return_tensors", "pt")
    # Transformers refuses truncation with an explicit padding=True but pads when padding is
    # left unset (None -> True), as ours does by default: the last case covers that.
    reference_options = {**options, "return_tensors": return_tensors}
    expected = DacFeatureExtractor(hop_length=320)(batch, sampling_rate=SAMPLE_RATE, **reference_options)  # type: ignore[arg-type]
    got = XcodecFeatureExtractor()(batch, sampling_rate=SAMPLE_RATE, **options)  # type: ignore[arg-type]
    assert set(got) == set(expected)
    for name in got:
        assert type(got[name]) is type(expected[name]), name
        assert got[name].dtype == expected[name].dtype, name
        assert np.array_equal(np.asarray(got[name]), np.asarray(expected[name])), name


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("extractor", [Xcodec2FeatureExtractor(), XcodecFeatureExtractor()], ids=type)
def test_bad_input_raises(extractor: object) -> None:
    good = np.zeros(1000, dtype=np.float32)
    with pytest.raises(AudioError, match="resample"):
        extractor(good, sampling_rate=24000)  # type: ignore[operator]
    with pytest.raises(AudioError, match="2 channels"):
        extractor(np.zeros((2, 1000), dtype=np.float32))  # type: ignore[operator]
    with pytest.raises(AudioError, match=r"item 1 .*NaN"):
        extractor([good, np.array([0.0, np.nan], dtype=np.float32)])  # type: ignore[operator]
    with pytest.raises(AudioError, match=r"item 0 .*NaN or infinite"):
        extractor(torch.tensor([0.0, float("inf")]))  # type: ignore[operator]
    with pytest.raises(AudioError, match="empty"):
        extractor(np.zeros(0, dtype=np.float32))  # type: ignore[operator]
    with pytest.raises(AudioError, match="empty list"):
        extractor([])  # type: ignore[operator]
    with pytest.raises(AudioError, match="int16"):
        extractor(np.zeros(100, dtype=np.int16))  # type: ignore[operator]
    with pytest.raises(AudioError, match="shape"):
        extractor(np.zeros((1, 1, 100), dtype=np.float32))  # type: ignore[operator]


# ---------------------------------------------------------------------------------------
# Config files
# ---------------------------------------------------------------------------------------


def test_config_round_trip_and_transformers_interop(tmp_path: Path) -> None:
    extractor = Xcodec2FeatureExtractor(padding_value=0.5)
    path = extractor.save_pretrained(tmp_path / "x2")
    assert path.name == PREPROCESSOR_CONFIG_NAME
    written = json.loads(path.read_text())
    assert written["feature_extractor_type"] == "Xcodec2FeatureExtractor"
    assert Xcodec2FeatureExtractor.from_pretrained(tmp_path / "x2") == extractor
    assert Xcodec2FeatureExtractor.from_pretrained(path) == extractor
    # Defaults where a checkpoint folder has no preprocessor config.
    (tmp_path / "empty").mkdir()
    assert XcodecFeatureExtractor.from_pretrained(tmp_path / "empty") == XcodecFeatureExtractor()
    with pytest.raises(ConfigError, match="DacFeatureExtractor"):
        XcodecFeatureExtractor.from_pretrained(tmp_path / "x2")

    require_oracle("transformers")
    from transformers import DacFeatureExtractor

    # Ours reads what Transformers writes (unknown keys survive a round trip) and back.
    DacFeatureExtractor(sampling_rate=SAMPLE_RATE, hop_length=320).save_pretrained(tmp_path / "dac")
    loaded = XcodecFeatureExtractor.from_pretrained(tmp_path / "dac")
    assert loaded.hop_length == 320
    loaded.save_pretrained(tmp_path / "dac2")
    again = DacFeatureExtractor.from_pretrained(tmp_path / "dac2")
    assert (again.hop_length, again.sampling_rate, again.padding_value) == (320, SAMPLE_RATE, 0.0)
    module = importlib.import_module("transformers.models.xcodec2.feature_extraction_xcodec2")
    module.Xcodec2FeatureExtractor().save_pretrained(tmp_path / "ref2")
    assert Xcodec2FeatureExtractor.from_pretrained(tmp_path / "ref2") == Xcodec2FeatureExtractor()
