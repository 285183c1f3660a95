"""ONNX export and the onnxruntime backend against the PyTorch models, tiny random configs.

Decoder: ``decoder.onnx`` on onnxruntime gives the PyTorch decode within 1e-4 of the
audio's peak, for single items of one frame to a few seconds and for padded batches,
where each item must equal its alone-run (batch = solo through the masks).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import onnxruntime as ort
from _asserts import assert_close_to_peak, assert_not_near_zero
from _tiny import perturb_, tiny_xcodec2, tiny_xcodec2_dict, tiny_xcodec_dict

from xcodec.base import CodecModel
from xcodec.configs.neucodec import NeuCodecConfig
from xcodec.configs.xcodec import XcodecConfig
from xcodec.errors import ArgumentError
from xcodec.models.neucodec import NeuCodecModel
from xcodec.models.xcodec import XcodecModel
from xcodec.onnx.export import export_onnx
from xcodec.onnx.graphs import OverlapAddISTFT

KINDS = ("xcodec2", "neucodec", "xcodec")
# 1 frame, a few frames, about 3 s at 50 frames/s.
FRAME_COUNTS = (1, 7, 150)


def tiny_model(kind: str) -> CodecModel:
    torch.manual_seed(0)
    if kind == "xcodec2":
        return tiny_xcodec2()
    if kind == "neucodec":
        model: CodecModel = NeuCodecModel(NeuCodecConfig.from_dict(tiny_xcodec2_dict())).eval()
    else:
        model = XcodecModel(XcodecConfig.from_dict(tiny_xcodec_dict())).eval()
    perturb_(model)
    return model


@pytest.fixture(scope="module", params=KINDS)
def exported(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[CodecModel, Path]:
    model = tiny_model(request.param)
    folder = export_onnx(model, tmp_path_factory.mktemp(f"onnx_{request.param}"), part="decoder")
    return model, folder


def _codes(model: CodecModel, frames: int, seed: int, num_codebooks: int | None = None) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    rows = num_codebooks or model.num_codebooks
    return torch.randint(0, model.codebook_size, (rows, frames), generator=generator)


def _run_decoder(session: Any, codes: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    audio, padding_mask = session.run(None, {"audio_codes": codes.numpy(), "audio_codes_mask": mask.numpy()})
    return torch.from_numpy(audio), torch.from_numpy(padding_mask)


def _torch_decode(model: CodecModel, codes: torch.Tensor) -> torch.Tensor:
    """One item (num_codebooks, frames) decoded alone by the PyTorch model -> (samples,)."""
    with torch.inference_mode():
        return model.decode(codes[None]).audio_values[0, 0]  # type: ignore[operator]


def test_config_names_the_codec_and_graph(exported: tuple[CodecModel, Path]) -> None:
    model, folder = exported
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "xcodec-onnx"
    assert config["sample_rate"] == model.sample_rate
    assert config["hop_length"] == model.hop_length
    assert config["num_codebooks"] == model.num_codebooks
    session = ort.InferenceSession(str(folder / config["parts"]["decoder"]["file"]))
    assert [i.name for i in session.get_inputs()] == list(config["parts"]["decoder"]["inputs"])
    assert [o.name for o in session.get_outputs()] == list(config["parts"]["decoder"]["outputs"])


@pytest.mark.parametrize("frames", FRAME_COUNTS)
def test_decoder_single_item_matches_torch(exported: tuple[CodecModel, Path], frames: int) -> None:
    model, folder = exported
    session = ort.InferenceSession(str(folder / "decoder.onnx"))
    codes = _codes(model, frames, seed=frames)
    expected = _torch_decode(model, codes)
    audio, padding_mask = _run_decoder(session, codes[None], torch.ones(1, frames, dtype=torch.long))
    assert audio.shape == (1, 1, frames * model.hop_length)
    assert torch.equal(padding_mask, torch.ones(1, frames * model.hop_length, dtype=torch.long))
    assert_not_near_zero(expected)
    assert_close_to_peak(audio[0, 0], expected)


def test_decoder_padded_batch_equals_each_item_alone(exported: tuple[CodecModel, Path]) -> None:
    model, folder = exported
    session = ort.InferenceSession(str(folder / "decoder.onnx"))
    lengths = [150, 1, 37, 150]
    items = [_codes(model, n, seed=10 + i) for i, n in enumerate(lengths)]
    longest = max(lengths)
    codes = torch.zeros(len(items), model.num_codebooks, longest, dtype=torch.long)
    mask = torch.zeros(len(items), longest, dtype=torch.long)
    for index, item in enumerate(items):
        codes[index, :, : item.shape[1]] = item
        # Codes past an item's end are filler the graph must not read.
        codes[index, :, item.shape[1] :] = model.codebook_size - 1
        mask[index, : item.shape[1]] = 1
    audio, padding_mask = _run_decoder(session, codes, mask)
    hop = model.hop_length
    for index, item in enumerate(items):
        samples = item.shape[1] * hop
        expected = _torch_decode(model, item)
        assert_close_to_peak(audio[index, 0, :samples], expected, what=f"item {index}")
        assert not audio[index, 0, samples:].any(), "audio past the item's end must be zero"
        assert int(padding_mask[index].sum()) == samples
        assert not padding_mask[index, samples:].any()


def test_xcodec_decoder_takes_fewer_codebooks(exported: tuple[CodecModel, Path]) -> None:
    model, folder = exported
    if model.num_codebooks == 1:
        pytest.skip("one codebook")
    session = ort.InferenceSession(str(folder / "decoder.onnx"))
    codes = _codes(model, 20, seed=3, num_codebooks=2)
    expected = _torch_decode(model, codes)
    audio, _ = _run_decoder(session, codes[None], torch.ones(1, 20, dtype=torch.long))
    assert_close_to_peak(audio[0, 0], expected)


def test_overlap_add_istft_equals_the_head() -> None:
    """The exportable head against ISTFTHead itself, on inputs whose magnitudes hit the clamp."""
    model = tiny_xcodec2()
    head = model.acoustic_decoder.head
    ours = OverlapAddISTFT(head)
    generator = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(2, 40, head.linear.in_features, generator=generator)
    lengths = torch.tensor([40, 13])
    with torch.inference_mode():
        expected = head(x, lengths)
        actual = ours(x, lengths)
    for index, length in enumerate(lengths.tolist()):
        samples = length * head.hop_length
        assert_close_to_peak(actual[index, 0, :samples], expected[index, 0, :samples], what=f"item {index}")


def test_export_refuses_bad_arguments(tmp_path: Path) -> None:
    model = tiny_xcodec2()
    with pytest.raises(ArgumentError, match="part"):
        export_onnx(model, tmp_path, part="middle")
    with pytest.raises(ArgumentError, match="opset"):
        export_onnx(model, tmp_path, opset=13)


def test_numpy_arrays_are_float32(exported: tuple[CodecModel, Path]) -> None:
    model, folder = exported
    session = ort.InferenceSession(str(folder / "decoder.onnx"))
    audio, _ = session.run(
        None,
        {
            "audio_codes": _codes(model, 3, seed=1)[None].numpy(),
            "audio_codes_mask": np.ones((1, 3), np.int64),
        },
    )
    assert audio.dtype == np.float32
