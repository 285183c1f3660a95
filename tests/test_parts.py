"""Loading one direction only (``parts="encoder"`` / ``"decoder"``): same results, less memory, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _asserts import assert_codes_vary, assert_not_near_zero
from _oracle import require_oracle
from _tiny import save_tiny_xcodec2

from xcodec.api import load
from xcodec.auto import AutoModel
from xcodec.base import CodecModel
from xcodec.errors import CheckpointError, XcodecError


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    xcodec2 = tmp_path_factory.mktemp("parts_xcodec2")
    save_tiny_xcodec2(xcodec2)
    folders = {"xcodec2": xcodec2}
    require_oracle("transformers")
    from test_xcodec_model import tiny_reference

    xcodec = tmp_path_factory.mktemp("parts_xcodec")
    tiny_reference("hubert", seed=4).save_pretrained(xcodec)
    folders["xcodec"] = xcodec
    return folders


def _parameters(model: CodecModel) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


@pytest.mark.parametrize("kind", ["xcodec2", "xcodec"])
def test_each_part_gives_the_full_models_results(checkpoints: dict[str, Path], kind: str) -> None:
    folder = checkpoints[kind]
    full = AutoModel.from_pretrained(folder)
    encoder = AutoModel.from_pretrained(folder, parts="encoder")
    decoder = AutoModel.from_pretrained(folder, parts="decoder")
    assert _parameters(encoder) < _parameters(full) and _parameters(decoder) < _parameters(full)
    waveform = 0.2 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(3))
    lengths = torch.tensor([16000, 9000])
    with torch.inference_mode():
        expected = full.tokenize(waveform, lengths)
        codes = encoder.tokenize(waveform, lengths)
        assert_codes_vary(expected.audio_codes, min_distinct=5)
        assert torch.equal(codes.audio_codes, expected.audio_codes)
        full_audio = full.detokenize(codes.audio_codes, codes.code_lengths).audio
        assert_not_near_zero(full_audio)
        assert torch.equal(decoder.detokenize(codes.audio_codes, codes.code_lengths).audio, full_audio)
        with pytest.raises(XcodecError, match=r"parts='encoder'.*cannot run the decoder"):
            encoder.detokenize(codes.audio_codes, codes.code_lengths)
        with pytest.raises(XcodecError, match=r"parts='decoder'.*cannot run the encoder"):
            decoder.tokenize(waveform, lengths)


def test_partial_models_refuse_to_be_saved_and_unknown_parts_are_named(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    encoder = AutoModel.from_pretrained(checkpoints["xcodec2"], parts="encoder")
    with pytest.raises(CheckpointError, match="parts='all'"):
        encoder.save_pretrained(tmp_path)  # type: ignore[operator]
    with pytest.raises(ValueError, match="parts must be one of"):
        AutoModel.from_pretrained(checkpoints["xcodec2"], parts="semantic")


def test_kept_parts_are_still_loaded_strictly(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """A tensor missing from the encoder fails an encoder load, not a decoder load."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "damaged"
    folder.mkdir()
    for item in checkpoints["xcodec2"].iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    state = load_file(folder / "model.safetensors")
    del state["acoustic_encoder.conv1.weight"]
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"acoustic_encoder\.conv1\.weight"):
        AutoModel.from_pretrained(folder, parts="encoder")
    AutoModel.from_pretrained(folder, parts="decoder")


def test_simple_api_takes_parts(checkpoints: dict[str, Path]) -> None:
    codec = load(checkpoints["xcodec2"], parts="encoder")
    codes = codec.encode(0.1 * torch.randn(8000), sampling_rate=16000)
    assert isinstance(codes, torch.Tensor) and codes.shape[0] == 1
    assert_codes_vary(codes, min_distinct=3)
    with pytest.raises(XcodecError, match="cannot run the decoder"):
        codec.decode(codes)
