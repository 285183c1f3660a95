"""``xcodec export-onnx MODEL OUT_DIR``: write a checkpoint's ONNX graphs and config.json.

Registered by :func:`add_export_onnx_command`; the exporter's packages (onnx, onnxscript)
are checked when the command runs, so a missing ``xcodec[onnx]`` extra exits 2 with one
message naming it.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

from xcodec.errors import XcodecError

__all__ = ["add_export_onnx_command"]

_REQUIRED = ("onnx", "onnxscript", "onnxruntime")


def cmd_export_onnx(args: argparse.Namespace) -> int:
    missing = [name for name in _REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        raise XcodecError(f'export-onnx needs {", ".join(missing)}: pip install "xcodec[onnx]"')
    import torch

    from xcodec.auto import AutoModel
    from xcodec.onnx.export import export_onnx

    model = AutoModel.from_pretrained(args.model, dtype=torch.float32, local_files_only=args.offline or None)
    parts = "both" if args.part == "both" else args.part
    print(f"exporting {args.model} ({parts}) to {args.out_dir} ...", file=sys.stderr)
    folder = export_onnx(
        model, args.out_dir, part=parts, opset=args.opset, dtype=args.dtype, quantize=args.quantize
    )
    for path in sorted(folder.iterdir()):
        print(f"{path} ({path.stat().st_size / 2**20:.1f} MiB)", file=sys.stderr)
    return 0


def add_export_onnx_command(subparsers: Any) -> None:
    """Register ``export-onnx`` on the ``xcodec`` command's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "export-onnx",
        help="export a codec to ONNX (encoder.onnx, decoder.onnx, config.json) for onnxruntime",
    )
    p.add_argument(
        "model", help="hub id or local checkpoint folder (X-Codec2, NeuCodec, DistillNeuCodec or X-Codec)"
    )
    p.add_argument("out_dir", type=Path, help="output folder; `xcodec.load(OUT_DIR)` runs it on onnxruntime")
    p.add_argument("--part", choices=["encoder", "decoder", "both"], default="both")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset, 18 or later (default 18)")
    p.add_argument(
        "--dtype",
        choices=["float32", "float16"],
        default="float32",
        help="graph weights' and activations' dtype; float16 keeps the ISTFT, fbank, norms and "
        "quantisers float32 and the graph's inputs and outputs float32 (lossy, see README)",
    )
    p.add_argument(
        "--quantize",
        choices=["int8"],
        default=None,
        help="dynamic int8 quantisation of the MatMul/Gemm weights (onnxruntime.quantization)",
    )
    p.add_argument("--offline", action="store_true", help="use only the local hub cache")
    p.set_defaults(func=cmd_export_onnx)
