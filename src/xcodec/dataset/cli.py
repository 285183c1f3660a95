"""``xcodec tokenize``: a corpus in, Parquet shards of codes out, resumable after any kill."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from xcodec.dataset.job import DTYPES, CodecFactory, TokenizeOptions
from xcodec.dataset.sources import INPUT_FORMATS
from xcodec.errors import XcodecError

__all__ = ["MissingExtraError", "add_tokenize_command", "cmd_tokenize", "options_from_args"]

# Registering ``tokenize`` must not import the pipeline, which needs pyarrow (an extra), so
# ``xcodec --help``, ``encode`` and ``decode`` run with the core dependencies alone;
# xcodec.dataset.job (the options and dtypes) needs only the core.
DTYPE_NAMES = tuple(sorted(DTYPES))
# Every option's default is the TokenizeOptions field's: one place to change it.
_DEFAULTS: dict[str, Any] = {field.name: field.default for field in dataclasses.fields(TokenizeOptions)}

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
        "--model",
        default=_DEFAULTS["model"],
        help=f"hub id or local checkpoint (default: {_DEFAULTS['model']})",
    )
    p.add_argument(
        "--device", default=None, help="torch device for the model, e.g. cpu, cuda:0 (default: cpu)"
    )
    p.add_argument(
        "--devices",
        default=None,
        help="several devices, comma separated (cuda:0,cuda:1): one model process per device",
    )
    p.add_argument("--dtype", choices=sorted(DTYPE_NAMES), default=_DEFAULTS["dtype"])
    p.add_argument(
        "--batch-seconds", type=float, default=_DEFAULTS["batch_seconds"], help="padded audio per model batch"
    )
    p.add_argument(
        "--num-workers",
        type=int,
        default=max(1, min(8, (os.cpu_count() or 2) - 1)),
        help="background decode/resample processes (0: decode in the model's process)",
    )
    p.add_argument("--shard-size", type=int, default=_DEFAULTS["shard_size"], help="items per output shard")
    p.add_argument("--bandwidth", type=float, default=None, help="kbps (X-Codec only; default: highest)")
    p.add_argument("--engine", choices=["local", "ray"], default=_DEFAULTS["engine"])
    p.add_argument("--input-format", choices=INPUT_FORMATS, default=_DEFAULTS["input_format"])
    p.add_argument(
        "--extensions",
        default=",".join(e.lstrip(".") for e in _DEFAULTS["extensions"]),
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
        "--id-column",
        default=_DEFAULTS["id_column"],
        help="column with the item id (default: id; else derived from the path)",
    )
    p.add_argument(
        "--audio-column", default=_DEFAULTS["audio_column"], help="audio column of a `datasets`/Parquet input"
    )
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
    p.add_argument(
        "--ray-actors", type=int, default=_DEFAULTS["ray_actors"], help="model actors (Ray engine)"
    )
    p.add_argument(
        "--ray-gpus-per-actor",
        type=float,
        default=_DEFAULTS["ray_gpus_per_actor"],
        help="GPUs each model actor holds",
    )
    p.add_argument(
        "--ray-cpus-per-actor",
        type=float,
        default=_DEFAULTS["ray_cpus_per_actor"],
        help="CPUs each model actor holds",
    )
    p.add_argument(
        "--ray-batch-size",
        type=int,
        default=_DEFAULTS["ray_batch_size"],
        help="items handed to a model actor at once",
    )
    p.add_argument(
        "--codec-factory",
        default=None,
        metavar="MODULE:FUNCTION",
        help="build the codec with FUNCTION(options, device) -> xcodec.api.Codec instead of loading --model",
    )
    p.set_defaults(func=cmd_tokenize)


def _comma_list(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


# Fields whose command-line form differs; every other field is the option of its name.
_FROM_ARGS: dict[str, Callable[[argparse.Namespace], Any]] = {
    "devices": lambda args: _comma_list(args.devices),
    "extensions": lambda args: tuple(f".{e.lstrip('.').lower()}" for e in _comma_list(args.extensions) or []),
    "keep_columns": lambda args: _comma_list(args.keep_columns),
    "progress": lambda args: not args.no_progress,
}


def options_from_args(args: argparse.Namespace) -> TokenizeOptions:
    """The :class:`TokenizeOptions` of parsed ``xcodec tokenize`` arguments, field by field."""
    values = {
        field.name: _FROM_ARGS[field.name](args) if field.name in _FROM_ARGS else getattr(args, field.name)
        for field in dataclasses.fields(TokenizeOptions)
    }
    return TokenizeOptions(**values)


def _factory(spec: str | None) -> CodecFactory:
    if spec is None:
        from xcodec.dataset.job import load_codec

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
