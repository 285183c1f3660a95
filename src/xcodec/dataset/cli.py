"""``xcodec tokenize``: a corpus in, Parquet shards of codes out, resumable after any kill."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

from xcodec.api import DEFAULT_MODEL
from xcodec.dataset.sources import AUDIO_EXTENSIONS, INPUT_FORMATS
from xcodec.errors import XcodecError

if TYPE_CHECKING:
    from xcodec.dataset.pipeline import CodecFactory, TokenizeOptions

__all__ = ["MissingExtraError", "add_tokenize_command", "cmd_tokenize", "options_from_args"]

# The keys of xcodec.dataset.pipeline.DTYPES, spelled out: registering ``tokenize`` must not
# import the pipeline, which needs pyarrow (an extra), so ``xcodec --help``, ``encode`` and
# ``decode`` run with the core dependencies alone (tests/test_fresh_install.py).
DTYPE_NAMES = ("bfloat16", "float16", "float32")

# What ``xcodec tokenize`` needs beyond the core dependencies, and the extra that installs it.
_REQUIRED = {"pyarrow": "dataset"}


class MissingExtraError(XcodecError):
    """An optional dependency of a sub-command is not installed; the message names the extra."""


def _require_extras() -> None:
    for module, extra in _REQUIRED.items():
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise MissingExtraError(
                f'xcodec tokenize needs {module}, which is not installed: pip install "xcodec[{extra}]"'
            ) from exc


_DESCRIPTION = """\
Tokenize a corpus into Parquet shards (OUT/data/*.parquet, one row per input: id, source,
audio_codes as list<list<int32>> [codebook][frame], num_frames, num_samples, original rate,
duration, passthrough columns), with OUT/summary.json and OUT/errors.jsonl.
Killed at any point, the same command resumes and finishes with every input exactly once.
Exit status: 0 all encoded, 1 some inputs failed (see errors.jsonl), 2 the job could not run.
"""


def add_tokenize_command(subparsers: Any) -> None:
    """Register ``tokenize`` on the ``xcodec`` command's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "tokenize",
        help="tokenize a corpus into Parquet shards (resumable)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "input",
        help="folder (recursive), glob, manifest (.txt list, .csv, .tsv, .jsonl), "
        "`datasets` save_to_disk folder, or Parquet with an audio column",
    )
    p.add_argument("--out", required=True, help="output folder (created; reused to resume)")
    p.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"hub id or local checkpoint (default: {DEFAULT_MODEL})"
    )
    p.add_argument(
        "--device", default=None, help="torch device for the model, e.g. cpu, cuda:0 (default: cpu)"
    )
    p.add_argument(
        "--devices",
        default=None,
        help="several devices, comma separated (cuda:0,cuda:1): one model process per device",
    )
    p.add_argument("--dtype", choices=sorted(DTYPE_NAMES), default="float32")
    p.add_argument("--batch-seconds", type=float, default=120.0, help="padded audio per model batch")
    p.add_argument(
        "--num-workers",
        type=int,
        default=max(1, min(8, (os.cpu_count() or 2) - 1)),
        help="background decode/resample processes (0: decode in the model's process)",
    )
    p.add_argument("--shard-size", type=int, default=1000, help="items per output shard")
    p.add_argument("--bandwidth", type=float, default=None, help="kbps (X-Codec only; default: highest)")
    p.add_argument("--engine", choices=["local", "ray"], default="local")
    p.add_argument("--input-format", choices=INPUT_FORMATS, default="auto")
    p.add_argument(
        "--extensions",
        default=",".join(e.lstrip(".") for e in AUDIO_EXTENSIONS),
        help="audio extensions searched for in a folder",
    )
    p.add_argument(
        "--root",
        default=None,
        help="folder that relative manifest paths start from (default: the manifest's)",
    )
    p.add_argument(
        "--path-column",
        default=None,
        help="manifest column with the audio path (default: path, audio_filepath, ...)",
    )
    p.add_argument(
        "--id-column", default="id", help="column with the item id (default: id; else derived from the path)"
    )
    p.add_argument("--audio-column", default="audio", help="audio column of a `datasets`/Parquet input")
    p.add_argument("--split", default=None, help="split of a saved DatasetDict (default: train)")
    p.add_argument(
        "--keep-columns", default=None, help="passthrough columns to keep, comma separated (default: all)"
    )
    p.add_argument("--retry-errors", action="store_true", help="redo shards that recorded failed items")
    p.add_argument("--overwrite", action="store_true", help="discard a previous, different job in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--offline", action="store_true", help="use only the local hub cache")
    p.add_argument(
        "--ray-address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else local)"
    )
    p.add_argument("--ray-actors", type=int, default=1, help="model actors (Ray engine)")
    p.add_argument("--ray-gpus-per-actor", type=float, default=0.0, help="GPUs each model actor holds")
    p.add_argument("--ray-cpus-per-actor", type=float, default=1.0, help="CPUs each model actor holds")
    p.add_argument("--ray-batch-size", type=int, default=32, help="items handed to a model actor at once")
    p.add_argument(
        "--codec-factory",
        default=None,
        metavar="MODULE:FUNCTION",
        help="build the codec with FUNCTION(options, device) -> xcodec.api.Codec instead of loading --model",
    )
    p.set_defaults(func=cmd_tokenize)


def options_from_args(args: argparse.Namespace) -> TokenizeOptions:
    from xcodec.dataset.pipeline import TokenizeOptions

    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else None
    return TokenizeOptions(
        input=args.input,
        out=args.out,
        model=args.model,
        device=args.device,
        devices=devices,
        dtype=args.dtype,
        batch_seconds=args.batch_seconds,
        num_workers=args.num_workers,
        shard_size=args.shard_size,
        bandwidth=args.bandwidth,
        engine=args.engine,
        input_format=args.input_format,
        extensions=tuple(
            f".{e.strip().lstrip('.').lower()}" for e in args.extensions.split(",") if e.strip()
        ),
        root=args.root,
        path_column=args.path_column,
        id_column=args.id_column,
        audio_column=args.audio_column,
        split=args.split,
        keep_columns=[c.strip() for c in args.keep_columns.split(",")] if args.keep_columns else None,
        retry_errors=args.retry_errors,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        offline=args.offline,
        ray_address=args.ray_address,
        ray_actors=args.ray_actors,
        ray_gpus_per_actor=args.ray_gpus_per_actor,
        ray_cpus_per_actor=args.ray_cpus_per_actor,
        ray_batch_size=args.ray_batch_size,
    )


def _factory(spec: str | None) -> CodecFactory:
    if spec is None:
        from xcodec.dataset.pipeline import load_codec

        return load_codec
    module_name, _, attribute = spec.partition(":")
    if not attribute:
        raise SystemExit(f"--codec-factory: expected MODULE:FUNCTION, got {spec!r}")
    return getattr(importlib.import_module(module_name), attribute)


def cmd_tokenize(args: argparse.Namespace) -> int:
    """Run the job; errors that stop it propagate as XcodecError (exit status 2 from ``xcodec``)."""
    _require_extras()
    from xcodec.dataset.pipeline import tokenize_corpus

    result = tokenize_corpus(options_from_args(args), _factory(args.codec_factory))
    summary = result.summary
    print(
        f"{summary['num_encoded']} of {summary['num_items']} items encoded "
        f"({summary['total_audio_hours']:.4f} h of audio) in {args.out}; "
        f"{summary['num_failed']} failed (see errors.jsonl)",
        file=sys.stderr,
    )
    return result.exit_status
