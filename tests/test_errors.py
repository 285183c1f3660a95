"""One error story: our errors are XcodecErrors naming what is at fault; one bad item fails
alone (simple API, ``xcodec encode``, ``xcodec tokenize``); a job-level error is one
message and exit status 2; a bug (an error that is not ours) propagates as itself."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from _asserts import assert_codes_vary
from _tiny import tiny_xcodec2, tiny_xcodec_dict

from xcodec.api import Codec
from xcodec.auto import AutoModel
from xcodec.base import TokenizeResult
from xcodec.cli import main
from xcodec.configs.xcodec import XcodecConfig
from xcodec.errors import (
    ArgumentError,
    AudioError,
    BatchError,
    CheckpointError,
    ConfigError,
    XcodecError,
    isolate_items,
)
from xcodec.models.xcodec import XcodecModel
from xcodec.models.xcodec2 import Xcodec2Model

# A length (samples at 16 kHz) the fault-injected model refuses as if the item were bad.
BAD_LENGTH = 4321
BUG_LENGTH = 4333


@pytest.fixture(scope="module")
def xcodec2_model() -> Xcodec2Model:
    return tiny_xcodec2()


@pytest.fixture(scope="module")
def xcodec2_folder(tmp_path_factory: pytest.TempPathFactory, xcodec2_model: Xcodec2Model) -> Path:
    folder = tmp_path_factory.mktemp("tiny-xcodec2")
    xcodec2_model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def xcodec_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-xcodec")
    torch.manual_seed(0)
    XcodecModel(XcodecConfig.from_dict(tiny_xcodec_dict())).eval().save_pretrained(folder)
    return folder


@pytest.fixture
def faulty_tokenize(monkeypatch: pytest.MonkeyPatch) -> None:
    """X-Codec2's tokenize fails on a batch holding an item of BAD_LENGTH (ours) or BUG_LENGTH (a bug)."""
    original = Xcodec2Model.tokenize

    def tokenize(
        self: Xcodec2Model, waveforms: torch.Tensor, lengths: torch.Tensor | None = None, **kwargs: object
    ) -> TokenizeResult:
        sizes = [waveforms.shape[-1]] * waveforms.shape[0] if lengths is None else lengths.tolist()
        if BAD_LENGTH in sizes:
            raise AudioError(f"an item of {BAD_LENGTH} samples is refused (test fault)")
        if BUG_LENGTH in sizes:
            raise RuntimeError("broken invariant (test fault)")
        return original(self, waveforms, lengths, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Xcodec2Model, "tokenize", tokenize)


def _noise(samples: int, seed: int) -> torch.Tensor:
    return (0.2 * torch.randn(samples, generator=torch.Generator().manual_seed(seed))).clamp(-0.9, 0.9)


def _wav(path: Path, samples: int, seed: int) -> Path:
    sf.write(path, _noise(samples, seed).numpy(), 16000, subtype="FLOAT")
    return path


# ---- the hierarchy ------------------------------------------------------------------------
def test_config_error_is_an_xcodec_error_naming_the_file(tmp_path: Path) -> None:
    assert issubclass(ConfigError, XcodecError) and issubclass(ConfigError, ValueError)
    bad = tmp_path / "config.json"
    bad.write_text("[1, 2]")
    with pytest.raises(XcodecError, match=r"config\.json"):
        XcodecConfig.from_json_file(bad)
    with pytest.raises(ConfigError):
        XcodecConfig.from_dict({"model_type": "xcodec2"})


# ---- the isolation helper -----------------------------------------------------------------
def _double(items: list[int]) -> list[int]:
    if 13 in items:
        raise AudioError("13 is unlucky")
    if -1 in items:
        raise RuntimeError("negative item: a bug")
    if 99 in items:
        raise ArgumentError("bandwidth=99 is not offered")
    return [2 * item for item in items]


def test_isolate_items_fails_only_the_bad_item() -> None:
    results, errors = isolate_items([1, 13, 3], _double, lambda index, item: f"item {index} ({item})")
    assert results == [2, None, 6]
    assert [(e.index, e.source) for e in errors] == [(1, "item 1 (13)")]
    assert "13 is unlucky" in errors[0].message and str(errors[0]).startswith("item 1 (13)")
    assert isolate_items([1, 2], _double, lambda index, item: str(item)) == ([2, 4], [])


@pytest.mark.parametrize(("bad", "kind"), [(-1, RuntimeError), (99, ArgumentError)])
def test_isolate_items_propagates_bugs_and_job_errors(bad: int, kind: type[Exception]) -> None:
    with pytest.raises(kind):
        isolate_items([1, bad, 3], _double, lambda index, item: str(item))


# ---- the simple API -----------------------------------------------------------------------
def test_api_encode_fails_only_the_bad_item(xcodec2_model: Xcodec2Model, faulty_tokenize: None) -> None:
    codec = Codec(xcodec2_model, "tiny")
    good_a, bad, good_b = _noise(8000, 1), _noise(BAD_LENGTH, 2), _noise(12000, 3)
    with pytest.raises(BatchError) as caught:
        codec.encode([good_a, bad, good_b], sampling_rate=16000)
    results, errors = caught.value.results, caught.value.errors
    assert [e.index for e in errors] == [1] and "item 1" in str(errors[0])
    assert results[1] is None
    for item, codes in ((good_a, results[0]), (good_b, results[2])):
        assert codes is not None
        assert_codes_vary(codes)
        assert torch.equal(codes, codec.encode(item, sampling_rate=16000))


def test_api_encode_lets_a_bug_propagate(xcodec2_model: Xcodec2Model, faulty_tokenize: None) -> None:
    codec = Codec(xcodec2_model, "tiny")
    with pytest.raises(RuntimeError, match="broken invariant"):
        codec.encode([_noise(8000, 1), _noise(BUG_LENGTH, 2)], sampling_rate=16000)


def test_api_bad_bandwidth_is_one_argument_error(xcodec_folder: Path) -> None:
    codec = Codec(AutoModel.from_pretrained(xcodec_folder), "tiny-xcodec")
    assert codec.model.bandwidths == (0.2, 0.4, 0.8, 1.6)
    with pytest.raises(ArgumentError, match=r"bandwidth=3\.3.*0\.2, 0\.4, 0\.8, 1\.6"):
        codec.encode([_noise(8000, 1), _noise(9000, 2)], sampling_rate=16000, bandwidth=3.3)
    codes = codec.encode(_noise(8000, 1), sampling_rate=16000, bandwidth=0.4)
    assert isinstance(codes, torch.Tensor) and codes.shape[0] == 2


# ---- the command line ---------------------------------------------------------------------
def test_cli_encode_writes_every_good_file_when_one_fails(
    xcodec2_folder: Path, tmp_path: Path, faulty_tokenize: None, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = [_wav(tmp_path / "a.wav", 8000, 1), _wav(tmp_path / "bad.wav", BAD_LENGTH, 2)]
    inputs.append(_wav(tmp_path / "c.wav", 12000, 3))
    out = tmp_path / "codes"
    assert main(["encode", *map(str, inputs), "-o", str(out), "--model", str(xcodec2_folder)]) == 1
    stderr = capsys.readouterr().err
    assert f"{tmp_path / 'bad.wav'}: encoding failed" in stderr and "1 of 3 file(s) failed" in stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.npz", "c.npz"]
    with np.load(out / "c.npz") as npz:
        assert_codes_vary(torch.from_numpy(npz["audio_codes"]))


def test_cli_encode_lets_a_bug_propagate(xcodec2_folder: Path, tmp_path: Path, faulty_tokenize: None) -> None:
    inputs = [_wav(tmp_path / "a.wav", 8000, 1), _wav(tmp_path / "bug.wav", BUG_LENGTH, 2)]
    with pytest.raises(RuntimeError, match="broken invariant"):
        main(["encode", *map(str, inputs), "-o", str(tmp_path / "codes"), "--model", str(xcodec2_folder)])


def test_cli_bad_bandwidth_is_one_message_and_exit_2(
    xcodec_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = [_wav(tmp_path / f"{name}.wav", 8000, seed) for seed, name in enumerate("abc")]
    common = ["--model", str(xcodec_folder), "--bandwidth", "3.3"]
    assert main(["encode", *map(str, inputs), "-o", str(tmp_path / "codes"), *common]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("error:") == 1 and "bandwidth=3.3" in stderr
    assert not (tmp_path / "codes").exists() or not any((tmp_path / "codes").iterdir())

    args = [
        "tokenize",
        str(tmp_path),
        "--out",
        str(tmp_path / "shards"),
        "--num-workers",
        "0",
        "--no-progress",
    ]
    assert main([*args, *common]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("error:") == 1 and "bandwidth=3.3" in stderr

    # One process per device: the devices' one shared message, not "device process failed".
    assert main([*args, "--devices", "cpu,cpu", *common]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("error:") == 1 and "bandwidth=3.3" in stderr and "(device cpu, cpu)" in stderr
    assert "device process failed" not in stderr


def test_cli_unknown_model_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audio = _wav(tmp_path / "a.wav", 8000, 1)
    missing = tmp_path / "no-such-model"
    assert main(["encode", str(audio), "-o", str(tmp_path / "codes"), "--model", str(missing)]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("error:") == 1 and "no-such-model" in stderr
    shards = tmp_path / "shards"
    args = ["tokenize", str(tmp_path), "--out", str(shards), "--num-workers", "0", "--no-progress"]
    assert main([*args, "--model", str(missing)]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("error:") == 1 and "no-such-model" in stderr


# ---- checkpoint dispatch ------------------------------------------------------------------
def test_auto_refuses_a_bare_pickle_file_by_name(tmp_path: Path) -> None:
    weights = tmp_path / "weights.pt"
    torch.save({"a": torch.zeros(1)}, weights)
    with pytest.raises(CheckpointError, match=r"weights\.pt"):
        AutoModel.from_pretrained(weights)


def test_auto_reads_the_folder_of_a_file_that_is_part_of_a_checkpoint(xcodec2_folder: Path) -> None:
    whole = AutoModel.from_pretrained(xcodec2_folder)
    via_file = AutoModel.from_pretrained(xcodec2_folder / "model.safetensors")
    assert isinstance(via_file, Xcodec2Model)
    for name, tensor in whole.state_dict().items():
        assert torch.equal(tensor, via_file.state_dict()[name]), name


def test_original_xcodec_config_without_pyyaml_names_the_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xcodec.checkpoints.xcodec import read_original_generator_config

    config = tmp_path / "config.yaml"
    config.write_text("generator:\n  config:\n    D: 256\n    ratios: [8, 5, 4, 2]\n")
    assert read_original_generator_config(config) == {"D": 256, "ratios": [8, 5, 4, 2]}
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml now raises ImportError
    with pytest.raises(CheckpointError, match=r"config\.yaml.*pip install pyyaml"):
        read_original_generator_config(config)
