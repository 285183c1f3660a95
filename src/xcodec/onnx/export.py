"""Write a codec as ONNX graphs plus a ``config.json`` the onnxruntime backend reads.

An export folder holds ``decoder.onnx`` (and, once exported, ``encoder.onnx``) and
``config.json``::

    {"format": "xcodec-onnx", "format_version": 1,
     "codec": "xcodec2" | "neucodec" | "distill_neucodec" | "xcodec",
     "sample_rate": ..., "input_sample_rate": ..., "hop_length": ..., "input_hop_length": ...,
     "frame_rate": ..., "num_codebooks": ..., "codebook_size": ..., "bandwidths": [...],
     "opset": ..., "dtype": "float32" | "float16", "quantize": null | "int8",
     "parts": {"decoder": {"file": "decoder.onnx", "inputs": {...}, "outputs": {...}}}}

where ``inputs``/``outputs`` map each graph tensor name to its dtype and axes. The graphs
are :mod:`xcodec.onnx.graphs`' wrappers exported with ``torch.onnx.export(dynamo=True)``:
batch and length axes are dynamic.

A float16 export (``dtype="float16"``) is the float32 graph converted afterwards by
onnxruntime's float16 converter (:func:`convert_float16`): weights and activations in
float16, graph inputs and outputs still float32 (so the runtime and its callers are
unchanged), and the numerically sensitive parts kept float32 (:data:`FLOAT32_MODULES`,
:data:`FLOAT32_OPS`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from xcodec.base import CodecModel
from xcodec.errors import ArgumentError
from xcodec.layers.alias_free import AntiAliasedActivation1d
from xcodec.layers.local_attention import LocalSelfAttention
from xcodec.models.distill_neucodec import DistillNeuCodecModel
from xcodec.models.neucodec import NeuCodecModel
from xcodec.models.xcodec import XcodecModel
from xcodec.models.xcodec2 import Xcodec2Model
from xcodec.onnx.graphs import (
    antialiased_activation,
    decoder_graph,
    encoder_graph,
    local_window_attention,
    relative_key_attention,
)
from xcodec.semantic.w2v_bert import RelativeKeySelfAttention

__all__ = ["CONFIG_NAME", "DEFAULT_OPSET", "FORMAT", "PARTS", "cached_export", "codec_kind", "export_onnx"]

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


ENCODER_INPUTS: dict[str, dict[str, Any]] = {
    "input_values": {"dtype": "float32", "axes": ["batch", 1, "samples"]},
    "padding_mask": {"dtype": "int64", "axes": ["batch", "samples"]},
}
ENCODER_OUTPUTS: dict[str, dict[str, Any]] = {
    "audio_codes": {"dtype": "int64", "axes": ["batch", "num_codebooks", "frames"]},
    "audio_codes_mask": {"dtype": "int64", "axes": ["batch", "frames"]},
}


# Modules (matched by class name in the exporter's per-node class hierarchy) whose nodes stay
# float32 in a float16 export: the ISTFT head (exp of log-magnitudes, and the overlap-add
# divides by a window envelope that tends to 1e-11 at the edges), the Kaldi fbank (waveforms
# scaled by 32768 give power spectra far past float16's 65504), the quantisers (FSQ rounds
# at a decision boundary, RVQ compares distances that differ in the fourth digit: float16
# there would change codes, not just round audio) and the norms (sums of squares overflow).
FLOAT32_MODULES = (
    "OverlapAddISTFT",
    "KaldiFbankGraph",
    "ProjectedFSQ",
    "FiniteScalarQuantizer",
    "ResidualVectorQuantizer",
    "RMSNorm",
    "LayerNorm",
    "GroupNorm",
)
# Operators kept float32 wherever they are: the reductions and powers of the norms written
# out by hand (masked GroupNorm, W2V-BERT's and the semantic encoders' norms), softmax, exp/log.
FLOAT32_OPS = (
    "ReduceMean",
    "ReduceSum",
    "Pow",
    "Sqrt",
    "Reciprocal",
    "Softmax",
    "LayerNormalization",
    "GroupNormalization",
    "Exp",
    "Log",
)


def codec_kind(model: CodecModel) -> str:
    """ "neucodec", "distill_neucodec", "xcodec2" or "xcodec" for a loaded model."""
    if isinstance(model, NeuCodecModel):
        return "neucodec"
    if isinstance(model, DistillNeuCodecModel):
        return "distill_neucodec"
    if isinstance(model, Xcodec2Model):
        return "xcodec2"
    if isinstance(model, XcodecModel):
        return "xcodec"
    raise ArgumentError(
        f"ONNX export supports X-Codec2, NeuCodec, DistillNeuCodec and X-Codec, not {type(model).__name__}"
    )


@contextlib.contextmanager
def _whole_runs(model: CodecModel) -> Iterator[None]:
    """Run the chunked stages whole while exporting (their chunk loops are Python over lengths),
    W2V-BERT's attention as :func:`~xcodec.onnx.graphs.relative_key_attention` and
    DistillNeuCodec's local attention as :func:`~xcodec.onnx.graphs.local_window_attention`
    and X-Codec2's anti-aliased activations as :func:`~xcodec.onnx.graphs.antialiased_activation`
    (no in-place writes: their scatters dominated the encoder's onnxruntime time).

    The chunk sizes only trade memory on long CPU inputs: outputs are the same either way
    (tests/test_fast_paths.py). Restored afterwards, so the caller's model is unchanged.
    """
    saved: list[tuple[torch.nn.Module, str, Any]] = []
    patched: list[torch.nn.Module] = []
    # Audio chunks (0: whole) and W2V-BERT's attention query chunks (None: all at once).
    whole = {"chunk_samples": 0, "trailing_chunk_samples": 0, "query_chunk_size": None}
    for module in model.modules():
        for name, value in whole.items():
            if hasattr(module, name):
                saved.append((module, name, getattr(module, name)))
                setattr(module, name, value)
        if isinstance(module, RelativeKeySelfAttention):
            # An instance attribute shadows the class's forward for this export only.
            module.forward = functools.partial(relative_key_attention, module)  # type: ignore[method-assign]
            patched.append(module)
        if isinstance(module, AntiAliasedActivation1d):
            module.forward = functools.partial(antialiased_activation, module)  # type: ignore[method-assign]
            patched.append(module)
        if isinstance(module, LocalSelfAttention):
            module.forward = functools.partial(local_window_attention, module)  # type: ignore[method-assign]
            patched.append(module)
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)
        for module in patched:
            del module.forward


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
            optimize=False,  # see _export_encoder
            verbose=False,
        )


def _example_audio(model: CodecModel, frames: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch of two (input_values, padding_mask) as the feature extractor lays them out."""
    hop = model.input_hop_length
    generator = torch.Generator().manual_seed(0)
    samples = frames * hop
    input_values = torch.zeros(2, 1, samples)
    padding_mask = torch.zeros(2, samples, dtype=torch.long)
    for index, count in enumerate((samples - hop // 2, samples // 2 + 7)):
        input_values[index, 0, : count - 1] = 0.1 * torch.randn(count - 1, generator=generator)
        padding_mask[index, :count] = 1
    return input_values, padding_mask


def _export_encoder(model: CodecModel, path: Path, opset: int) -> None:
    graph = encoder_graph(model).eval()  # type: ignore[arg-type]
    input_values, padding_mask = _example_audio(model)
    # Audio comes padded to a whole number of input hops (the feature extractors' rule).
    batch = torch.export.Dim("batch")
    samples = model.input_hop_length * torch.export.Dim("frames", min=1)
    with _whole_runs(model), torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            graph,
            (input_values, padding_mask),
            str(path),
            dynamo=True,
            opset_version=opset,
            input_names=list(ENCODER_INPUTS),
            output_names=list(ENCODER_OUTPUTS),
            dynamic_shapes={"input_values": {0: batch, 2: samples}, "padding_mask": {0: batch, 1: samples}},
            external_data=False,
            # onnxscript's graph optimiser takes minutes on the encoders' thousands of nodes,
            # and onnxruntime optimises the graph itself when it loads it.
            optimize=False,
            verbose=False,
        )


def _describe(model: CodecModel, opset: int, dtype: str) -> dict[str, Any]:
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
        # X-Codec: codebooks per bandwidth (the encoder graph gives all; the first k rows are
        # the codes at a k-codebook bandwidth, residual quantisation being sequential).
        "bandwidth_codebooks": {
            f"{b:g}": model.config.num_quantizers_for_bandwidth(b)
            for b in model.bandwidths
            if isinstance(model, XcodecModel)
        },
        "opset": opset,
        "dtype": dtype,
        "quantize": None,
        "parts": {},
    }


def export_onnx(
    model: CodecModel,
    out_dir: str | os.PathLike[str],
    *,
    part: str = "both",
    opset: int = DEFAULT_OPSET,
    dtype: str = "float32",
    quantize: str | None = None,
) -> Path:
    """Export ``model``'s decoder (and encoder) to ``out_dir``; returns the folder.

    X-Codec2, NeuCodec, DistillNeuCodec and X-Codec.

    part: "decoder", "encoder" or "both". opset: the ONNX opset (18 or later).
    dtype: "float32", or "float16" (:func:`convert_float16`: half the file size; lossy,
    and on CPUs without float16 arithmetic slower than float32; its cost is measured in
    bench/RESULTS.md). quantize: None, or "int8" for onnxruntime's dynamic quantisation
    of the MatMul/Gemm weights (activations stay float, quantised per batch at run time);
    lossy, its cost is measured in bench/RESULTS.md. float16 and int8 do not combine.
    The model is exported in float32 on the CPU; it is not modified.
    """
    if dtype not in ("float32", "float16"):
        raise ArgumentError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    if quantize not in (None, "int8"):
        raise ArgumentError(f"quantize must be None or 'int8', got {quantize!r}")
    if quantize is not None and dtype != "float32":
        raise ArgumentError(f"quantize={quantize!r} applies to float32 graphs, not dtype={dtype!r}")
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
    config = _describe(model, opset, dtype)
    wanted = PARTS if part == "both" else (part,)
    if "encoder" in wanted:
        _export_encoder(model.eval(), folder / "encoder.onnx", opset)
        config["parts"]["encoder"] = {
            "file": "encoder.onnx",
            "inputs": ENCODER_INPUTS,
            "outputs": ENCODER_OUTPUTS,
        }
    if "decoder" in wanted:
        _export_decoder(model.eval(), folder / "decoder.onnx", opset)
        config["parts"]["decoder"] = {
            "file": "decoder.onnx",
            "inputs": DECODER_INPUTS,
            "outputs": DECODER_OUTPUTS,
        }
    if dtype == "float16":
        for entry in config["parts"].values():
            convert_float16(folder / entry["file"])
    if quantize == "int8":
        for entry in config["parts"].values():
            quantize_int8(folder / entry["file"])
        config["quantize"] = "int8"
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return folder


def quantize_int8(path: Path) -> None:
    """Replace the graph at ``path`` by onnxruntime's dynamic int8 quantisation of it.

    Weights of MatMul and Gemm become int8 (per channel); the activations are quantised
    on the fly. Convolutions stay float: onnxruntime's dynamic ConvInteger runs slower
    than float Conv on CPUs, and most of the codecs' arithmetic outside attention is conv.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = path.with_suffix(".int8.onnx")
    quantize_dynamic(
        str(path),
        str(quantized),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul", "Gemm"],
    )
    quantized.replace(path)


def _keeps_float32(node: Any) -> bool:
    """True for nodes of :data:`FLOAT32_MODULES` and the graph wrapper's own glue (masks, padding)."""
    for entry in node.metadata_props:
        if entry.key == "pkg.torch.onnx.class_hierarchy":
            classes = [
                name.rsplit(".", 1)[-1] for name in entry.value.strip("[]").replace("'", "").split(", ")
            ]
            # [wrapper, op]: an operation of the wrapper itself, outside any model submodule.
            return len(classes) <= 2 or any(name in FLOAT32_MODULES for name in classes[:-1])
    return False


def convert_float16(path: Path) -> None:
    """Replace the float32 graph at ``path`` by its float16 version, inputs and outputs kept float32.

    onnxruntime's converter casts the weights and activations to float16 and inserts casts
    around the nodes kept float32 (:data:`FLOAT32_MODULES`, :data:`FLOAT32_OPS` and the
    wrapper's own operations, found through the class hierarchy the exporter writes on each
    node). Values beyond float16's range are clamped to it (the converter's default).
    """
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    graph = onnx.load(str(path))
    kept = [node.name for node in graph.graph.node if _keeps_float32(node)]
    converted = convert_float_to_float16(
        graph,
        keep_io_types=True,
        op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FLOAT32_OPS],
        node_block_list=kept,
    )
    _skip_float16_round_trips(converted.graph)
    onnx.save(converted, str(path))


def _skip_float16_round_trips(graph: Any) -> None:
    """Let float32 nodes read each other's float32 outputs directly, in place.

    The converter stores every float tensor between two nodes as float16, kept nodes
    included: it casts a kept node's output to float16 and back to float32 before the next
    kept node, which would round the whole "float32" region at every step and overflow
    on sample counts past 65504 (the encoders' length arithmetic). A Cast to float32 whose
    input is such an added cast to float16 is replaced by the float32 tensor; the casts
    left unread are removed.
    """
    import onnx

    def cast_to(node: Any) -> int | None:
        if node.op_type != "Cast":
            return None
        return next((int(a.i) for a in node.attribute if a.name == "to"), None)

    producer = {output: node for node in graph.node for output in node.output}
    replace: dict[str, str] = {}
    for node in graph.node:
        if cast_to(node) == onnx.TensorProto.FLOAT:
            source = producer.get(node.input[0])
            # The converter names the casts it adds after a float32 node's output so; a model's
            # own int -> float casts, turned into casts to float16, keep their names.
            if source is not None and source.name.endswith("_cast_to_fp16_node"):
                replace[node.output[0]] = source.input[0]
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name in replace:
                node.input[index] = replace[name]
    outputs = {output.name for output in graph.output}
    while True:
        read = {name for node in graph.node for name in node.input} | outputs
        unread = [n for n in graph.node if n.op_type == "Cast" and not any(o in read for o in n.output)]
        if not unread:
            break
        for node in unread:
            graph.node.remove(node)


def default_cache_dir() -> Path:
    """Where ``xcodec.load(MODEL, backend="onnxruntime")`` keeps its exports: $XCODEC_ONNX_CACHE,
    else ~/.cache/xcodec/onnx."""
    configured = os.environ.get("XCODEC_ONNX_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "xcodec" / "onnx"


def cached_export(
    id_or_path: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    local_files_only: bool | None = None,
    hub_cache_dir: str | os.PathLike[str] | None = None,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """The export folder of a checkpoint, exported (both parts) on first use into the cache.

    The cache key is the checkpoint's id or absolute path, its revision, the newest
    modification time of a local folder's files and the opset, so a rewritten local
    checkpoint is exported again. ``cache_dir``: the exports' root (default
    :func:`default_cache_dir`); ``hub_cache_dir``: the Hugging Face download cache.
    """
    import hashlib

    from xcodec.auto import AutoModel

    source = Path(id_or_path).expanduser()
    stamp = ""
    if source.exists():
        files = [f for f in source.rglob("*") if f.is_file()] if source.is_dir() else [source]
        stamp = str(max((f.stat().st_mtime_ns for f in files), default=0))
        key_source = str(source.resolve())
    else:
        key_source = str(id_or_path)
    key = hashlib.sha256(f"{key_source}|{revision}|{stamp}|{opset}|{FORMAT_VERSION}".encode()).hexdigest()[
        :16
    ]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = folder / f"{Path(key_source).name or 'model'}-{key}"
    if (target / CONFIG_NAME).is_file():
        return target
    model = AutoModel.from_pretrained(
        id_or_path,
        dtype=torch.float32,
        revision=revision,
        local_files_only=local_files_only,
        cache_dir=hub_cache_dir,
    )
    # Write next to the target and rename, so a crashed export never looks complete.
    partial = folder / f".{target.name}.partial"
    if partial.exists():
        import shutil

        shutil.rmtree(partial)
    export_onnx(model, partial, opset=opset)
    partial.rename(target)
    return target
