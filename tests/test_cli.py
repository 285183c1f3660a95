"""The `xcodec` command end to end on a tiny local checkpoint: encode, decode, reconstruct, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from _asserts import assert_codes_vary, assert_not_near_zero
from _tiny import save_tiny_xcodec2

from xcodec.audio import load_audio
from xcodec.cli import main
from xcodec.features import Xcodec2FeatureExtractor
from xcodec.models.xcodec2 import Xcodec2Model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-xcodec2")
    save_tiny_xcodec2(folder)
    return folder


def solo_reference_codes(model: Xcodec2Model, waveform: torch.Tensor) -> torch.Tensor:
    """What the Transformers-style API gives for one file alone: (1, frames)."""
    inputs = Xcodec2FeatureExtractor()(waveform, sampling_rate=16000)
    with torch.inference_mode():
        return model.encode(**inputs).audio_codes[0].long()


def synth(path: Path, seconds: float, rate: int, channels: int = 1, subtype: str = "PCM_16") -> Path:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    noise = 0.05 * np.random.default_rng(len(path.name)).standard_normal(t.shape)
    mono = (tone + noise).astype(np.float32)
    data = np.stack([mono * (1 - 0.3 * c) for c in range(channels)], axis=1) if channels > 1 else mono
    sf.write(path, data, rate, subtype=subtype)
    return path


def test_encode_writes_reference_codes_for_every_file(checkpoint: Path, tmp_path: Path) -> None:
    inputs = [
        synth(tmp_path / "a.wav", 1.3, 16000),
        synth(tmp_path / "b.flac", 0.7, 44100, channels=2),
        synth(tmp_path / "c.wav", 2.1, 8000, subtype="FLOAT"),
    ]
    out = tmp_path / "codes"
    assert main(["encode", *map(str, inputs), "-o", str(out), "--model", str(checkpoint)]) == 0
    model = Xcodec2Model.from_pretrained(checkpoint)
    for path in inputs:
        with np.load(out / f"{path.stem}.npz") as npz:
            codes = npz["audio_codes"]
            assert codes.dtype == np.int32 and codes.ndim == 2
            waveform = load_audio(path, 16000).waveform
            assert int(npz["num_samples"]) == waveform.shape[-1]
            assert int(npz["sample_rate"]) == 16000
            assert str(npz["model"]) == str(checkpoint)
            expected = solo_reference_codes(model, waveform)
            assert_codes_vary(expected, min_distinct=3, what=path.name)
            np.testing.assert_array_equal(codes, expected.numpy())


def test_decode_and_reconstruct_match_the_model(checkpoint: Path, tmp_path: Path) -> None:
    source = synth(tmp_path / "speech.wav", 1.0, 16000)
    assert main(["encode", str(source), "-o", str(tmp_path / "codes"), "--model", str(checkpoint)]) == 0
    # The codes file names its model, so decode needs no --model.
    assert main(["decode", str(tmp_path / "codes" / "speech.npz"), "-o", str(tmp_path / "wavs")]) == 0
    decoded, rate = sf.read(tmp_path / "wavs" / "speech.wav", dtype="float32")
    assert rate == 16000 and decoded.shape == (16000,)

    model = Xcodec2Model.from_pretrained(checkpoint)
    with np.load(tmp_path / "codes" / "speech.npz") as npz:
        codes = torch.from_numpy(npz["audio_codes"].astype(np.int64))[None]
    assert_codes_vary(codes, min_distinct=3)
    with torch.inference_mode():
        expected = model.decode(codes).audio_values[0, 0, :16000].clamp(-1, 1)
    # The bound below is absolute (PCM-16 steps), so the audio must be far above it.
    assert_not_near_zero(expected, min_peak=1e-2)
    # PCM-16 output: one quantisation step of error at most.
    assert np.abs(decoded - expected.numpy()).max() <= 1.0 / 32768 + 1e-4

    assert (
        main(["reconstruct", str(source), "-o", str(tmp_path / "rec.wav"), "--model", str(checkpoint)]) == 0
    )
    reconstructed, _ = sf.read(tmp_path / "rec.wav", dtype="float32")
    np.testing.assert_allclose(reconstructed, decoded, atol=1.0 / 32768 + 1e-4)


def test_bad_files_are_reported_and_the_rest_still_processed(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = synth(tmp_path / "good.wav", 0.5, 16000)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n")
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(synth(tmp_path / "full.wav", 1.0, 16000).read_bytes()[:2000])
    missing = tmp_path / "missing.flac"
    out = tmp_path / "codes"
    status = main(
        [
            "encode",
            str(empty),
            str(good),
            str(text),
            str(truncated),
            str(missing),
            "-o",
            str(out),
            "--model",
            str(checkpoint),
        ]
    )
    assert status == 1
    assert sorted(p.name for p in out.iterdir()) == ["good.npz"]
    err = capsys.readouterr().err
    for bad in (empty, text, truncated, missing):
        assert str(bad) in err, f"{bad} not named in the error output"
    assert "4 of 5 file(s) failed" in err


def test_decode_rejects_bad_codes_files(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.savez(tmp_path / "range.npz", audio_codes=np.full((1, 10), 10**6, dtype=np.int32), num_samples=3200)
    np.savez(tmp_path / "shape.npz", audio_codes=np.zeros((1, 2, 3), dtype=np.int32), num_samples=3200)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    np.savez(tmp_path / "ok.npz", audio_codes=np.zeros((1, 10), dtype=np.int32), num_samples=3200)
    paths = [str(tmp_path / n) for n in ("range.npz", "shape.npz", "junk.npz", "ok.npz")]
    status = main(["decode", *paths, "-o", str(tmp_path / "wavs"), "--model", str(checkpoint)])
    assert status == 1
    assert [p.name for p in (tmp_path / "wavs").iterdir()] == ["ok.wav"]
    err = capsys.readouterr().err
    assert "range.npz" in err and "[0, " in err
    assert "shape.npz" in err and "junk.npz" in err


def test_clashing_names_do_not_overwrite(checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    first = synth(tmp_path / "x" / "clip.wav", 0.4, 16000)
    second = synth(tmp_path / "y" / "clip.wav", 0.9, 16000)
    out = tmp_path / "codes"
    assert main(["encode", str(first), str(second), "-o", str(out), "--model", str(checkpoint)]) == 0
    with np.load(out / "clip.npz") as a, np.load(out / "clip-2.npz") as b:
        assert int(a["num_samples"]) == 6400 and int(b["num_samples"]) == 14400


def test_unreachable_model_says_how_to_use_a_local_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = synth(tmp_path / "a.wav", 0.2, 16000)
    status = main(
        ["encode", str(source), "-o", str(tmp_path), "--model", "no-such-org/no-such-model", "--offline"]
    )
    assert status == 2
    err = capsys.readouterr().err
    assert "no-such-org/no-such-model" in err and "local folder" in err


def test_convert_writes_a_loadable_transformers_layout(checkpoint: Path, tmp_path: Path) -> None:
    assert main(["convert", str(checkpoint), str(tmp_path / "converted")]) == 0
    ours = Xcodec2Model.from_pretrained(checkpoint).state_dict()
    converted = Xcodec2Model.from_pretrained(tmp_path / "converted").state_dict()
    assert ours.keys() == converted.keys()
    assert all(torch.equal(ours[k], converted[k]) for k in ours)
