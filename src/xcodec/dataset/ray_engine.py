"""``--engine ray``: the same job as a Ray Data pipeline, on a cluster or a local Ray.

read (the plan's pending items) -> decode/resample tasks (CPU, one item each, no model)
-> model actors (``num_gpus``/``num_cpus`` each, length-bucketed batches through
:meth:`xcodec.api.Codec.encode_prepared`) -> the driver gathers each shard's rows and
writes it with the same atomic writer as the local engine.

Shards are written by the driver rather than by ``Dataset.write_parquet`` on purpose:
the resume guarantee rests on each shard of the plan landing whole under its own name,
which ``write_parquet`` (uuid-named files, no per-shard commit) does not give. Only
codes travel to the driver (a few hundred bytes per second of audio), so this is cheap;
the output folder must be reachable from the driver, and the input (and a local
checkpoint) from every node.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from xcodec.api import Codec, PreparedAudio
from xcodec.dataset.decode import DecodeRequest, decode_item
from xcodec.dataset.job import CodecFactory, TokenizeOptions, codec_info, encode_items, output_samples
from xcodec.dataset.lifetime import Reaper
from xcodec.dataset.sources import CorpusSource
from xcodec.dataset.store import Failure, OutputStore, Plan, ShardRow
from xcodec.errors import XcodecError

__all__ = ["run_ray"]


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise XcodecError("--engine ray needs Ray Data: pip install 'xcodec[ray]'") from exc
    return ray


def _decode_row(row: dict[str, Any], *, sample_rate: int, corpus: CorpusSource) -> dict[str, Any]:
    path = row["path"] or None
    request = DecodeRequest(int(row["index"]), str(row["source"]), path, None if path else int(row["row"]))
    decoded = decode_item(request, sample_rate, corpus)
    return {
        "index": decoded.index,
        "source": request.source,
        "waveform": decoded.waveform if decoded.waveform is not None else np.zeros(0, np.float32),
        "original_sample_rate": decoded.original_sample_rate,
        "mixed_down": decoded.mixed_down,
        "error": decoded.error or "",
    }


class _Encoder:
    """A model actor: loads the codec once, then encodes batches of decoded rows."""

    def __init__(self, options: TokenizeOptions, codec_factory: CodecFactory, device: str | None):
        self.codec: Codec = codec_factory(options, device)
        self.bandwidth = options.bandwidth

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        errors = [str(e) for e in batch["error"]]
        good = [i for i, e in enumerate(errors) if not e]
        prepared = [
            PreparedAudio(
                torch.from_numpy(np.asarray(batch["waveform"][i], dtype=np.float32)),
                str(batch["source"][i]),
                int(batch["original_sample_rate"][i]),
                bool(batch["mixed_down"][i]),
            )
            for i in good
        ]
        codes: list[np.ndarray] = [np.zeros(0, np.int32)] * len(errors)
        shapes = [0] * len(errors)
        num_samples = [0] * len(errors)
        for i, item, result in zip(
            good, prepared, encode_items(self.codec, prepared, self.bandwidth), strict=True
        ):
            if isinstance(result, str):
                errors[i] = result
                continue
            # Flattened so every row is a 1-D array; the driver restores (num_codebooks, frames).
            codes[i] = result.reshape(-1)
            shapes[i] = result.shape[0]
            num_samples[i] = output_samples(self.codec, int(item.waveform.shape[-1]))
        ragged = np.empty(len(codes), dtype=object)
        ragged[:] = codes
        return {
            "index": np.asarray(batch["index"], np.int64),
            "codes": ragged,
            "num_codebooks": np.asarray(shapes, np.int64),
            "num_samples": np.asarray(num_samples, np.int64),
            "original_sample_rate": np.asarray(batch["original_sample_rate"], np.int64),
            "error": np.asarray(errors, dtype=object),
        }


def _probe(options: TokenizeOptions, codec_factory: CodecFactory) -> dict[str, Any]:
    codec = codec_factory(options, "cpu")
    codec.model.check_bandwidth(options.bandwidth)  # a job-level error, raised once on the driver
    return {**codec_info(codec, options), "input_sample_rate": codec.input_sample_rate}


def run_ray(
    plan: Plan,
    store: OutputStore,
    pending: list[int],
    options: TokenizeOptions,
    codec_factory: CodecFactory,
    report: Callable[[int, float], None],
) -> None:
    """Process ``pending`` shards on Ray; joins RAY_ADDRESS / --ray-address, else starts a local Ray."""
    ray = _import_ray()
    if not ray.is_initialized():
        address = options.ray_address or os.environ.get("RAY_ADDRESS") or None
        # A local Ray is ours to clean up: its processes end with this one, kill -9 included.
        reaper = Reaper.start() if address is None else None
        ray.init(address=address)
        if reaper is not None:
            reaper.seal()
    # The model's rate and description, from one load on a worker (the driver may have no GPU).
    info = ray.get(ray.remote(num_cpus=1)(_probe).remote(options, codec_factory))
    # Decoded at the rate the codec takes; num_samples and durations are at its output rate.
    input_sample_rate = int(info.pop("input_sample_rate"))
    sample_rate = int(info["sample_rate"])

    rows = []
    for shard in pending:
        span = plan.shard_range(shard)
        for index, item in zip(span, plan.items(span), strict=True):
            rows.append(
                {"index": index, "source": item.source, "path": item.path or "", "row": item.row or 0}
            )
    context = ray.data.DataContext.get_current()
    # In order, shards complete one after another, so the driver holds only a few at a time.
    context.execution_options.preserve_order = True
    device = "cuda" if options.ray_gpus_per_actor > 0 else options.device
    dataset = (
        ray.data.from_items(rows)
        .map(functools.partial(_decode_row, sample_rate=input_sample_rate, corpus=plan.corpus), num_cpus=1)
        .map_batches(
            _Encoder,
            fn_constructor_args=(options, codec_factory, device),
            batch_size=options.ray_batch_size,
            batch_format="numpy",
            concurrency=options.ray_actors,
            num_gpus=options.ray_gpus_per_actor,
            num_cpus=options.ray_cpus_per_actor,
        )
    )
    ids = plan.table.column("id")
    gathered: dict[int, tuple[list[ShardRow], list[Failure]]] = {}
    for row in dataset.iter_rows():
        index = int(row["index"])
        shard = index // plan.shard_size
        shard_rows, failures = gathered.setdefault(shard, ([], []))
        if row["error"]:
            failures.append(Failure(index, str(ids[index]), plan.items([index])[0].source, str(row["error"])))
            report(1, 0.0)
        else:
            codes = np.asarray(row["codes"], dtype=np.int32).reshape(int(row["num_codebooks"]), -1)
            shard_rows.append(
                ShardRow(index, codes, int(row["num_samples"]), int(row["original_sample_rate"]))
            )
            report(1, int(row["num_samples"]) / sample_rate)
        if len(shard_rows) + len(failures) == len(plan.shard_range(shard)):
            store.write_shard(plan, shard, shard_rows, failures, info)
            del gathered[shard]
    if gathered:
        raise XcodecError(f"Ray returned incomplete shards {sorted(gathered)}; rerun the same command")
