"""Write a codec as ONNX graphs plus a ``config.json`` the onnxruntime backend reads.

An export folder holds ``decoder.onnx`` (and, once exported, ``encoder.onnx``) and
``config.json``::

    {"format": "xcodec-onnx", "format_version": 1, "codec": "xcodec2" | "neucodec" | "xcodec",
     "sample_rate": ..., "input_sample_rate": ..., "hop_length": ..., "input_hop_length": ...,
     "frame_rate": ..., "num_codebooks": ..., "codebook_size": ..., "bandwidths": [...],
     "opset": ..., "dtype": "float32", "quantize": null | "int8",
     "parts": {"decoder": {"file": "decoder.onnx", "inputs": {...}, "outputs": {...}}}}

where ``inputs``/``outputs`` map each graph tensor name to its dtype and axes. The graphs
are :mod:`xcodec.onnx.graphs`' wrappers exported with ``torch.onnx.export(dynamo=True)``:
batch and length axes are dynamic.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from xcodec.base import CodecModel
from xcodec.errors import ArgumentError
from xcodec.models.neucodec import NeuCodecModel
from xcodec.models.xcodec import XcodecModel
from xcodec.models.xcodec2 import Xcodec2Model
from xcodec.onnx.graphs import decoder_graph

__all__ = ["CONFIG_NAME", "DEFAULT_OPSET", "FORMAT", "PARTS", "codec_kind", "export_onnx"]

FORMAT = "xcodec-onnx"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
# Opset 18 is the first with the ops every graph here needs at their current form
# (ReduceMean/ReduceSum with axes inputs); onnxruntime 1.17+ runs it.
DEFAULT_OPSET = 18
PARTS = ("encoder", "decoder")

# Graph tensor name -> (dtype, axes), written into config.json for the runtime and for users.
DECODER_INPUTS: dict[str, dict[str, Any]] = {
    "audio_codes": {"dtype": "int64", "axes": ["batch", "num_codebooks", "frames"]},
    "audio_codes_mask": {"dtype": "int64", "axes": ["batch", "frames"]},
}
DECODER_OUTPUTS: dict[str, dict[str, Any]] = {
    "audio_values": {"dtype": "float32", "axes": ["batch", 1, "samples"]},
    "padding_mask": {"dtype": "int64", "axes": ["batch", "samples"]},
}


def codec_kind(model: CodecModel) -> str:
    """ "neucodec", "xcodec2" or "xcodec" for a loaded model."""
    if isinstance(model, NeuCodecModel):
        return "neucodec"
    if isinstance(model, Xcodec2Model):
        return "xcodec2"
    if isinstance(model, XcodecModel):
        return "xcodec"
    raise ArgumentError(f"ONNX export supports X-Codec2, NeuCodec and X-Codec, not {type(model).__name__}")


@contextlib.contextmanager
def _whole_runs(model: CodecModel) -> Iterator[None]:
    """Run the chunked stages whole while exporting (their chunk loops are Python over lengths).

    The chunk sizes only trade memory on long CPU inputs: outputs are the same either way
    (tests/test_fast_paths.py). Restored afterwards, so the caller's model is unchanged.
    """
    saved: list[tuple[torch.nn.Module, str, Any]] = []
    for module in model.modules():
        for name in ("chunk_samples", "trailing_chunk_samples"):
            if hasattr(module, name):
                saved.append((module, name, getattr(module, name)))
                setattr(module, name, 0)
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def _example_codes(model: CodecModel, frames: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch of two (codes, mask) to trace with: item 1 shorter, so no shape is specialised."""
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(0, model.codebook_size, (2, model.num_codebooks, frames), generator=generator)
    mask = torch.ones(2, frames, dtype=torch.long)
    mask[1, frames // 2 :] = 0
    return codes, mask


def _export_decoder(model: CodecModel, path: Path, opset: int) -> None:
    graph = decoder_graph(model).eval()  # type: ignore[arg-type]
    codes, mask = _example_codes(model)
    batch, frames = torch.export.Dim("batch"), torch.export.Dim("frames")
    code_axes: dict[int, Any] = {0: batch, 2: frames}
    if model.num_codebooks > 1:
        # X-Codec decodes any number of its codebooks (the bandwidth).
        code_axes[1] = torch.export.Dim("num_codebooks", min=1, max=model.num_codebooks)
    with _whole_runs(model), torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            graph,
            (codes, mask),
            str(path),
            dynamo=True,
            opset_version=opset,
            input_names=list(DECODER_INPUTS),
            output_names=list(DECODER_OUTPUTS),
            dynamic_shapes={"audio_codes": code_axes, "audio_codes_mask": {0: batch, 1: frames}},
            external_data=False,
            verbose=False,
        )


def _describe(model: CodecModel, opset: int) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "codec": codec_kind(model),
        "sample_rate": model.sample_rate,
        "input_sample_rate": model.input_sample_rate,
        "hop_length": model.hop_length,
        "input_hop_length": model.input_hop_length,
        "frame_rate": model.frame_rate,
        "num_codebooks": model.num_codebooks,
        "codebook_size": model.codebook_size,
        "bandwidths": list(model.bandwidths),
        "opset": opset,
        "dtype": "float32",
        "quantize": None,
        "parts": {},
    }


def export_onnx(
    model: CodecModel,
    out_dir: str | os.PathLike[str],
    *,
    part: str = "both",
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export ``model``'s decoder (and encoder) to ``out_dir``; returns the folder.

    part: "decoder", "encoder" or "both". opset: the ONNX opset (18 or later).
    The model is exported in float32 on the CPU; it is not modified.
    """
    if part not in ("both", *PARTS):
        raise ArgumentError(f"part must be 'encoder', 'decoder' or 'both', not {part!r}")
    if opset < DEFAULT_OPSET:
        raise ArgumentError(f"opset must be {DEFAULT_OPSET} or later, got {opset}")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    if model.dtype != torch.float32 or model.device.type != "cpu":
        raise ArgumentError(
            f"export a float32 CPU model (got {model.dtype} on {model.device}); load it with dtype=torch.float32"
        )
    config = _describe(model, opset)
    wanted = PARTS if part == "both" else (part,)
    if "encoder" in wanted:
        raise ArgumentError("encoder export is not implemented yet; use --part decoder")
    if "decoder" in wanted:
        _export_decoder(model.eval(), folder / "decoder.onnx", opset)
        config["parts"]["decoder"] = {
            "file": "decoder.onnx",
            "inputs": DECODER_INPUTS,
            "outputs": DECODER_OUTPUTS,
        }
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return folder
