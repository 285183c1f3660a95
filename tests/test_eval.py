"""Quality metrics (xcodec.metrics) and ``xcodec eval``.

Each metric is checked against a value computed by hand from its definition, or against
the library it wraps called directly on the same audio (pystoi.stoi, pesq.pesq,
speechmos's DNSMOS); identical audio gives each metric its ideal value.
"""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from _asserts import assert_codes_vary
from _oracle import require_oracle
from _tiny import save_tiny_xcodec2

from xcodec import metrics
from xcodec.audio import resample
from xcodec.cli import main

SPEECH = Path("/work/shared/audio/speech_en.flac")
RATE = 16000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """3 s of a real English recording, 16 kHz mono float64 (a bundled noise-free test tone if absent)."""
    if SPEECH.is_file():
        audio, rate = sf.read(str(SPEECH), dtype="float64", always_2d=True)
        audio = resample(audio.mean(axis=1), rate, RATE)
    else:  # pragma: no cover - the shared recordings exist on the project's machines
        t = np.arange(4 * RATE) / RATE
        audio = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    return np.asarray(audio[: 3 * RATE], dtype=np.float64)


@pytest.fixture(scope="module")
def degraded(speech: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)
    return speech + 0.01 * rng.standard_normal(speech.size)


def _noise(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    return 0.3 * np.random.default_rng(seed).standard_normal(int(seconds * RATE))


# ---- identity: the ideal values -------------------------------------------------------------
def test_identical_audio_scores_ideal_values(speech: np.ndarray) -> None:
    assert metrics.mel_distance(speech, speech, RATE) == 0.0
    assert metrics.multi_resolution_stft_distance(speech, speech) == 0.0
    assert metrics.mel_correlation(speech, speech, RATE) == pytest.approx(1.0, abs=1e-12)
    assert metrics.si_sdr(speech, speech) > 150.0
    assert metrics.snr_db(speech, speech) > 150.0


# ---- hand-computed values ----------------------------------------------------------------------
def test_snr_and_si_sdr_hand_values() -> None:
    ref = _noise()
    assert metrics.snr_db(ref, 0.9 * ref) == pytest.approx(20.0, abs=1e-9)  # noise = 0.1 ref
    # est = 2 ref + e with e orthogonal to ref (both zero-mean): SI-SDR = |2 ref|^2 / |e|^2.
    ref = ref - ref.mean()
    e = _noise(seed=1)
    e = e - e.mean()
    e = e - np.dot(e, ref) / np.dot(ref, ref) * ref
    expected = 10 * math.log10(np.sum((2 * ref) ** 2) / np.sum(e**2))
    assert metrics.si_sdr(ref, 2 * ref + e) == pytest.approx(expected, abs=1e-9)
    assert metrics.si_sdr(ref, 5 * (2 * ref + e)) == pytest.approx(expected, abs=1e-9)  # scale-invariant
    assert metrics.snr_db(ref, 2 * ref + e) != pytest.approx(expected, abs=1.0)  # SNR is not


def test_gain_change_moves_the_spectral_distances_by_log2(speech: np.ndarray) -> None:
    # Doubling the signal adds log 2 to every unclamped log-mel / log-magnitude value;
    # spectral convergence |S - 2S| / |S| is exactly 1. Noise keeps every bin above the floors.
    ref = _noise(2.0)
    assert metrics.mel_distance(ref, 2 * ref, RATE) == pytest.approx(math.log(2), abs=1e-9)
    assert metrics.multi_resolution_stft_distance(ref, 2 * ref) == pytest.approx(1 + math.log(2), abs=1e-9)
    assert metrics.mel_correlation(speech, 2 * speech, RATE) == pytest.approx(1.0, abs=1e-6)
    assert metrics.mel_correlation(speech, _noise(3.0), RATE) < 0.5


def test_mel_filterbank_equals_the_training_losses_slaney_filters() -> None:
    from xcodec.train.losses import mel_filterbank as torchaudio_style

    ours = metrics.spectral.mel_filterbank(RATE, 1024, 80)  # (n_mels, freqs)
    theirs = torchaudio_style(1024, 80, RATE).numpy().T
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


def test_log_mel_is_the_filterbank_applied_to_the_stft_magnitude() -> None:
    ref = _noise(0.5)
    config = metrics.MEL_CONFIG
    padded = np.pad(ref, config.n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(config.n_fft) / config.n_fft)  # periodic Hann
    frames = [
        padded[i : i + config.n_fft] * window
        for i in range(0, padded.size - config.n_fft + 1, config.hop_length)
    ]
    magnitude = np.abs(np.fft.rfft(np.stack(frames), axis=-1)).T
    expected = np.log(np.maximum(metrics.spectral.mel_filterbank(RATE, 1024, 80) @ magnitude, 1e-5))
    np.testing.assert_allclose(metrics.log_mel(ref, RATE), expected, atol=1e-9)


def test_codebook_usage_and_token_agreement_hand_values() -> None:
    codes = [torch.tensor([[0, 0], [1, 1]]), torch.tensor([[1, 3], [1, 1]])]  # two items, two codebooks
    first, second = metrics.codebook_usage(codes, codebook_size=4)
    assert (first.distinct, first.usage) == (3, 0.75)
    assert first.entropy_bits == pytest.approx(1.5)  # p = 1/2, 1/4, 1/4
    assert (second.distinct, second.usage, second.entropy_bits) == (1, 0.25, 0.0)
    other = [torch.tensor([[0, 2], [1, 1]]), torch.tensor([[1, 3], [0, 1]])]
    assert metrics.token_agreement(codes, other) == pytest.approx(6 / 8)
    assert metrics.token_agreement(codes, codes) == 1.0


# ---- the libraries called directly ---------------------------------------------------------------
def test_stoi_and_pesq_equal_the_libraries(speech: np.ndarray, degraded: np.ndarray) -> None:
    pystoi = pytest.importorskip("pystoi")
    pesq = pytest.importorskip("pesq")
    assert metrics.stoi(speech, degraded, RATE) == pytest.approx(
        pystoi.stoi(speech, degraded, RATE), abs=1e-12
    )
    assert metrics.pesq_wb(speech, degraded, RATE) == pytest.approx(
        pesq.pesq(RATE, speech, degraded, "wb"), abs=1e-6
    )
    ref8, est8 = resample(speech, RATE, 8000), resample(degraded, RATE, 8000)
    assert metrics.pesq_nb(speech, degraded, RATE) == pytest.approx(
        pesq.pesq(8000, ref8, est8, "nb"), abs=1e-6
    )
    # Another input rate is resampled to 16 kHz first.
    ref24, est24 = resample(speech, RATE, 24000), resample(degraded, RATE, 24000)
    expected = pystoi.stoi(resample(ref24, 24000, RATE), resample(est24, 24000, RATE), RATE)
    assert metrics.stoi(ref24, est24, 24000) == pytest.approx(expected, abs=1e-12)
    assert 0.5 < metrics.stoi(speech, degraded, RATE) < 1.0


def test_dnsmos_equals_speechmos(degraded: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("speechmos")
    # speechmos.dnsmos imports librosa for its P.808 model only (not part of SIG/BAK/OVRL,
    # and not installed by the eval extra): a stand-in giving that model's input shape.
    stand_in = types.ModuleType("librosa")
    stand_in.feature = types.SimpleNamespace(  # type: ignore[attr-defined]
        melspectrogram=lambda y, sr, n_fft, hop_length, n_mels: np.ones(
            (n_mels, len(y) // hop_length), np.float32
        )
    )
    stand_in.power_to_db = lambda spec, ref: spec  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "librosa", stand_in)
    monkeypatch.delitem(sys.modules, "speechmos.dnsmos", raising=False)
    from speechmos import dnsmos as speechmos_dnsmos

    # 2.3 s: speechmos doubles short clips until they fill its 9.01 s window (9.2 s: one window).
    clip = degraded[: int(2.3 * RATE)].astype(np.float32)
    expected = speechmos_dnsmos.run(clip, RATE)
    ours = metrics.dnsmos(clip, RATE)
    assert ours.sig == pytest.approx(expected["sig_mos"], abs=1e-9)
    assert ours.bak == pytest.approx(expected["bak_mos"], abs=1e-9)
    assert ours.ovrl == pytest.approx(expected["ovrl_mos"], abs=1e-9)
    assert 1.0 < ours.ovrl < 5.0


# ---- the command ---------------------------------------------------------------------------------
# ---- intelligibility by speech recognition ---------------------------------------------------
def test_word_error_rate_hand_values() -> None:
    wer = metrics.word_error_rate
    assert wer("the cat sat", "the cat sat") == 0.0
    assert wer("the cat sat", "the hat sat") == pytest.approx(1 / 3)  # one substitution
    assert wer("the cat sat", "the sat") == pytest.approx(1 / 3)  # one deletion
    assert wer("the cat sat", "the big cat sat down") == pytest.approx(2 / 3)  # two insertions
    assert wer("a b", "") == 1.0
    assert wer("The Cat", "the  cat") == 0.0  # case and spacing do not count
    assert math.isnan(wer("", "anything"))


def test_recogniser_hears_the_real_sentence_and_not_its_destruction(speech: np.ndarray) -> None:
    require_oracle("pocketsphinx")
    if not SPEECH.is_file():
        pytest.skip(f"{SPEECH} is absent (the shared recordings)")
    audio, rate = sf.read(str(SPEECH), dtype="float64")
    # The LibriSpeech sentence of speech_en.flac; the recogniser gets all but "who had".
    truth = "he began a confused complaint against the wizard who had vanished behind the curtain on the left"
    heard = metrics.transcribe(audio, rate)
    assert metrics.word_error_rate(truth, heard) < 0.25, heard
    assert metrics.asr_wer(audio, audio, rate) == 0.0
    # The same envelope with the spectral detail gone (the words' formants): the recogniser
    # must lose most words, or the metric could not tell a bad codec from a good one.
    rng = np.random.default_rng(0)
    envelope = np.convolve(np.abs(audio), np.ones(400) / 400, mode="same")
    assert metrics.asr_wer(audio, envelope * rng.standard_normal(audio.size), rate) > 0.6


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "xcodec2"
    save_tiny_xcodec2(folder)
    return folder


def test_cli_eval_reports_every_metric_and_isolates_a_bad_file(
    checkpoint: Path, speech: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    # 1.2 s: DNSMOS doubles it to 9.6 s, one 9.01 s window (2 s would take seven).
    sf.write(audio_dir / "speech.wav", speech[: int(1.2 * RATE)].astype(np.float32), RATE)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really audio")
    out = tmp_path / "report.json"
    argv = ["eval", str(audio_dir), str(bad), "--model", str(checkpoint), "--against", str(checkpoint)]
    assert main([*argv, "--json", str(out)]) == 1  # one file failed, the other was evaluated

    table = capsys.readouterr().out
    assert "speech.wav" in table and "broken.wav" in table and "token agreement: 1.0000" in table
    report = json.loads(out.read_text())
    assert set(report) == {"runs", "token_agreement", "failures", "metrics"}
    assert report["token_agreement"] == 1.0  # the same model twice
    assert [f["source"] for f in report["failures"]] == [str(bad)]
    assert len(report["runs"]) == 2
    first, second = report["runs"]
    (item,) = first["files"]
    assert item["duration"] == pytest.approx(1.2)
    assert set(item["metrics"]) == set(report["metrics"])
    assert item["metrics"]["asr_wer"] is None  # only with --asr
    scored = {k: v for k, v in item["metrics"].items() if k != "asr_wer"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in scored.values()), scored
    assert item["metrics"] == second["files"][0]["metrics"]
    assert first["mean"] == item["metrics"]
    (usage,) = first["codebooks"]  # X-Codec2: one FSQ codebook
    import xcodec

    codec = xcodec.load(checkpoint)
    assert usage["distinct"] > 1 and usage["usage"] == pytest.approx(usage["distinct"] / codec.codebook_size)
    assert 0 < usage["entropy_bits"] <= math.log2(usage["distinct"]) + 1e-9

    # The numbers are the metrics of the codec's own round trip.
    codes = codec.encode(str(audio_dir / "speech.wav"))
    assert_codes_vary(codes)
    decoded = codec.decode(codes)
    reference = codec.prepare(audio_dir / "speech.wav").waveform
    assert item["metrics"]["mel_distance"] == pytest.approx(
        metrics.mel_distance(reference, decoded, RATE), abs=1e-9
    )
    assert item["metrics"]["si_sdr"] == pytest.approx(metrics.si_sdr(reference, decoded), abs=1e-6)
    assert usage["distinct"] == int(codes.unique().numel())


def test_cli_eval_without_the_extra_names_it(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pesq" else real(name, *a)
    )
    assert main(["eval", str(tmp_path), "--model", str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert "pesq" in err and 'pip install "xcodec[eval]"' in err

    # The Python API says so once, before reading any file (not one failure per file).
    import xcodec
    from xcodec.errors import XcodecError

    with pytest.raises(XcodecError, match=r"'pesq'.*xcodec\[eval\]"):
        xcodec.evaluate(xcodec.load(checkpoint), [tmp_path / "missing.wav"])


def test_cli_eval_dtype_runs_a_second_configuration(
    checkpoint: Path, speech: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "speech.wav"
    sf.write(source, speech[: RATE // 2].astype(np.float32), RATE)
    out = tmp_path / "report.json"
    argv = ["eval", str(source), "--model", str(checkpoint), "--dtype", "bfloat16", "--no-perceptual"]
    assert main([*argv, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [run["dtype"] for run in report["runs"]] == ["float32", "bfloat16"]
    assert 0.0 <= report["token_agreement"] <= 1.0
    for run in report["runs"]:
        (item,) = run["files"]
        assert item["metrics"]["stoi"] is None and math.isfinite(item["metrics"]["mel_distance"])
    assert "token agreement" in capsys.readouterr().out


def test_cli_eval_asr_adds_the_word_error_rate_of_the_round_trip(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_oracle("pocketsphinx")
    if not SPEECH.is_file():
        pytest.skip(f"{SPEECH} is absent (the shared recordings)")
    source = tmp_path / "speech.wav"
    audio, rate = sf.read(str(SPEECH), dtype="float32")
    sf.write(source, audio, rate)
    out = tmp_path / "report.json"
    argv = ["eval", str(source), "--model", str(checkpoint), "--no-perceptual", "--asr", "--json", str(out)]
    assert main(argv) == 0
    assert "WER" in capsys.readouterr().out
    (item,) = json.loads(out.read_text())["runs"][0]["files"]
    import xcodec

    codec = xcodec.load(checkpoint)
    decoded = codec.decode(codec.encode(str(source)))
    expected = metrics.asr_wer(codec.prepare(source).waveform, decoded, RATE)
    # Random tiny weights decode noise: the recogniser loses most words of the sentence.
    assert item["metrics"]["asr_wer"] == pytest.approx(expected) and expected > 0.5


def test_decoded_audio_at_another_rate_is_resampled_to_the_input_rate(
    speech: np.ndarray, tmp_path: Path
) -> None:
    # NeuCodec encodes 16 kHz and decodes 24 kHz: the scores compare at 16 kHz.
    from _asserts import assert_not_near_zero

    from xcodec.api import Codec
    from xcodec.configs.neucodec import NeuCodecConfig
    from xcodec.evaluation import evaluate
    from xcodec.models.neucodec import NeuCodecModel

    semantic = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
    config = NeuCodecConfig.from_dict(
        {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "head_dim": 16,
            "encoder_hidden_size": 8,
            "semantic_model_config": {**semantic, "conv_depthwise_kernel_size": 5},
            "quantization_dim": 96,
            "quantization_levels": [4, 4, 4, 4],
        }
    )
    torch.manual_seed(0)
    codec = Codec(NeuCodecModel(config), "tiny-neucodec")
    assert (codec.input_sample_rate, codec.sample_rate) == (16000, 24000)
    source = tmp_path / "speech.wav"
    sf.write(source, speech[:RATE].astype(np.float32), RATE)

    (run,) = evaluate(codec, [source], perceptual=False).runs
    (item,) = run.files
    decoded = codec.decode(codec.encode(str(source)))
    assert_not_near_zero(decoded)
    at_16k = resample(decoded, 24000, 16000)
    reference = codec.prepare(source).waveform
    assert item.metrics["mel_distance"] == pytest.approx(
        metrics.mel_distance(reference, at_16k, RATE), abs=1e-9
    )
    assert item.metrics["snr"] == pytest.approx(metrics.snr_db(reference, at_16k), abs=1e-6)
    assert item.metrics["mel_distance"] != pytest.approx(
        metrics.mel_distance(reference, decoded, RATE), abs=1e-3
    )
