"""What the local and Ray engines of ``xcodec tokenize`` share: the job's options, the
codec factory, what a shard records about the model, and encoding a pool of items with
each failing item isolated.

Both engines import this module; neither imports the other's internals, so there is no
import cycle between :mod:`xcodec.dataset.pipeline` and :mod:`xcodec.dataset.ray_engine`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from xcodec.api import DEFAULT_MODEL, Codec, PreparedAudio
from xcodec.dataset.sources import AUDIO_EXTENSIONS
from xcodec.errors import isolate_items

__all__ = [
    "DTYPES",
    "CodecFactory",
    "TokenizeOptions",
    "codec_info",
    "encode_items",
    "load_codec",
    "output_samples",
]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclasses.dataclass
class TokenizeOptions:
    """Everything ``xcodec tokenize`` takes; see ``xcodec tokenize --help`` for each option."""

    input: str
    out: str
    model: str = DEFAULT_MODEL
    device: str | None = None
    devices: list[str] | None = None
    dtype: str = "float32"
    batch_seconds: float = 120.0
    num_workers: int = 1
    shard_size: int = 1000
    bandwidth: float | None = None
    engine: str = "local"
    input_format: str = "auto"
    extensions: tuple[str, ...] = AUDIO_EXTENSIONS
    root: str | None = None
    path_column: str | None = None
    id_column: str = "id"
    audio_column: str = "audio"
    split: str | None = None
    keep_columns: list[str] | None = None
    retry_errors: bool = False
    overwrite: bool = False
    progress: bool = True
    offline: bool = False
    ray_address: str | None = None
    ray_actors: int = 1
    ray_gpus_per_actor: float = 0.0
    ray_cpus_per_actor: float = 1.0
    ray_batch_size: int = 32


# Builds the codec for one device. Must be a module-level function: device processes and
# Ray actors receive it by reference.
CodecFactory = Callable[[TokenizeOptions, "str | None"], Codec]


def load_codec(options: TokenizeOptions, device: str | None) -> Codec:
    """The default :data:`CodecFactory`: :func:`xcodec.api.load` with the job's options."""
    from xcodec.api import load

    return load(
        options.model,
        device=device,
        dtype=DTYPES[options.dtype],
        max_batch_seconds=options.batch_seconds,
        local_files_only=options.offline or None,
        parts="encoder",  # tokenizing never decodes: 442 M of X-Codec2's 629 M parameters
    )


def codec_info(codec: Codec, options: TokenizeOptions) -> dict[str, Any]:
    """What every shard records about the model that produced it."""
    model = codec.model
    if model.config is not None:
        described = json.dumps(model.config.to_dict(), sort_keys=True, default=str)
    else:
        described = type(model).__qualname__
    return {
        "model_id": codec.model_id or options.model,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "config_hash": hashlib.sha256(described.encode()).hexdigest()[:16],
        "sample_rate": int(codec.sample_rate),
        "frame_rate": float(codec.frame_rate),
        "num_codebooks": int(codec.num_codebooks),
        "codebook_size": int(codec.codebook_size),
        "bandwidth": options.bandwidth,
        "dtype": options.dtype,
    }


def output_samples(codec: Codec, input_samples: int) -> int:
    """Samples at the output rate (``codec.sample_rate``) of ``input_samples`` at the input rate."""
    return input_samples * codec.sample_rate // codec.input_sample_rate


def encode_items(
    codec: Codec, prepared: list[PreparedAudio], bandwidth: float | None
) -> list[np.ndarray | str]:
    """Codes of each item as a (num_codebooks, frames) int32 array, or the reason it failed.

    Items are isolated by :func:`xcodec.errors.isolate_items`: a job-level error (a
    bandwidth the model lacks) or a bug propagates instead of failing every item.
    """
    results, errors = isolate_items(
        prepared,
        lambda items: codec.encode_prepared(items, bandwidth=bandwidth),
        lambda _, item: item.source,
    )
    out: list[np.ndarray | str] = [
        "" if codes is None else codes.numpy().astype(np.int32) for codes in results
    ]
    for error in errors:
        out[error.index] = str(error)
    return out
