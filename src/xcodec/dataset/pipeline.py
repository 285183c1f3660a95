"""Tokenize a corpus on one machine: decode workers feed one model per device.

Data path: the plan lists items in order -> background processes decode and resample
them (:mod:`xcodec.dataset.decode`, no model there) -> the main process (or one process
per device) gathers a shard's items, encodes them in length-bucketed batches through
:meth:`xcodec.api.Codec.encode_prepared` -> the shard is written atomically
(:mod:`xcodec.dataset.store`).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch

from xcodec.api import Codec, PreparedAudio
from xcodec.dataset.decode import Decoded, DecodeRequest, decode_item
from xcodec.dataset.job import (
    DTYPES,
    CodecFactory,
    TokenizeOptions,
    codec_info,
    encode_items,
    load_codec,
    output_samples,
)
from xcodec.dataset.lifetime import die_with_parent
from xcodec.dataset.sources import CorpusSource, describe_source, discover
from xcodec.dataset.store import Failure, OutputStore, Plan, ShardRow, build_plan
from xcodec.errors import XcodecError

__all__ = [
    "DTYPES",
    "CodecFactory",
    "TokenizeOptions",
    "TokenizeResult",
    "codec_info",
    "load_codec",
    "tokenize_corpus",
]


@dataclasses.dataclass
class TokenizeResult:
    """How a run ended: the summary written to summary.json and the exit status of the command."""

    summary: dict[str, Any]
    exit_status: int


def _job_fingerprint(options: TokenizeOptions) -> dict[str, Any]:
    """What must not change between a run and its rerun (it would change the tokens or the items)."""
    model = options.model
    if os.path.exists(model):
        model = os.path.abspath(model)
    return {
        "input": describe_source(options.input),
        "input_format": options.input_format,
        "model": model,
        "dtype": options.dtype,
        "bandwidth": options.bandwidth,
    }


def tokenize_corpus(options: TokenizeOptions, codec_factory: CodecFactory = load_codec) -> TokenizeResult:
    """Run (or resume) a tokenize job; returns the summary and 0, or 1 when some items failed."""
    if options.engine not in ("local", "ray"):
        raise XcodecError(f"unknown engine {options.engine!r}; choose local or ray")
    store = OutputStore(options.out)
    started = time.monotonic()
    with store.locked():
        if options.overwrite:
            store.clear()
        corpus, items = discover(
            options.input,
            input_format=options.input_format,
            extensions=options.extensions,
            root=options.root,
            path_column=options.path_column,
            id_column=options.id_column,
            audio_column=options.audio_column,
            split=options.split,
            keep_columns=options.keep_columns,
        )
        plan = store.load_or_save_plan(
            build_plan(items, corpus, options.shard_size, _job_fingerprint(options))
        )
        done = store.done_shards(plan, retry_errors=options.retry_errors)
        pending = [s for s in range(plan.num_shards) if s not in done]
        total_items = sum(len(plan.shard_range(s)) for s in pending)
        progress = Progress(total_items, options.progress)
        try:
            if not pending:
                pass
            elif options.engine == "ray":
                from xcodec.dataset.ray_engine import run_ray

                run_ray(plan, store, pending, options, codec_factory, progress.update)
            else:
                run_local(plan, store, pending, options, codec_factory, progress.update)
        finally:
            progress.close()
        wall = time.monotonic() - started
        run = {
            "engine": options.engine,
            "shards_written": len(pending),
            "items": progress.files,
            "audio_seconds": round(progress.seconds, 3),
            "wall_seconds": round(wall, 3),
            "files_per_second": round(progress.files / wall, 3) if wall > 0 else None,
            "audio_seconds_per_second": round(progress.seconds / wall, 3) if wall > 0 else None,
        }
        summary = store.finalize(plan, run)
    return TokenizeResult(summary, 1 if summary["num_failed"] else 0)


class Progress:
    """A progress bar in files, with audio-hours/s and real-time factor; tqdm supplies files/s and the ETA."""

    def __init__(self, total_files: int, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(
            total=total_files, unit="file", disable=not enabled or None, dynamic_ncols=True, smoothing=0.05
        )
        self.started = time.monotonic()
        self.files = 0
        self.seconds = 0.0

    def update(self, files: int, audio_seconds: float) -> None:
        self.files += files
        self.seconds += audio_seconds
        elapsed = max(time.monotonic() - self.started, 1e-9)
        self.bar.set_postfix_str(
            f"{self.seconds / 3600.0 / elapsed:.4f} audio-h/s, {self.seconds / elapsed:.1f}x realtime",
            refresh=False,
        )
        self.bar.update(files)

    def close(self) -> None:
        self.bar.close()


# ---- one device ------------------------------------------------------------------------


def run_local(
    plan: Plan,
    store: OutputStore,
    pending: list[int],
    options: TokenizeOptions,
    codec_factory: CodecFactory,
    report: Callable[[int, float], None],
) -> None:
    """Process ``pending`` shards here, or in one process per device when ``options.devices`` has several."""
    if options.devices and len(options.devices) > 1:
        _run_devices(plan, store, pending, options, codec_factory, report, options.devices)
        return
    codec = codec_factory(options, options.devices[0] if options.devices else options.device)
    process_shards(codec, plan, store, iter(pending), options, options.num_workers, report)


def _requests(plan: Plan, shards: Iterable[int]) -> Iterator[DecodeRequest]:
    for shard in shards:
        for index, item in zip(plan.shard_range(shard), plan.items(plan.shard_range(shard)), strict=True):
            yield DecodeRequest(index, item.source, item.path, item.row)


def decoded_stream(
    requests: Iterator[DecodeRequest], num_workers: int, sample_rate: int, corpus: CorpusSource
) -> Iterator[Decoded]:
    """Decode items in order with ``num_workers`` background processes and a bounded read-ahead."""
    if num_workers <= 0:
        for request in requests:
            yield decode_item(request, sample_rate, corpus)
        return
    context = multiprocessing.get_context("spawn")  # no forked copy of the model or of torch threads
    read_ahead = num_workers * 4
    executor = _decode_pool(num_workers, context)
    window: deque[tuple[DecodeRequest, Future[Decoded]]] = deque()
    try:
        for request in requests:
            window.append((request, executor.submit(decode_item, request, sample_rate, corpus)))
            while len(window) >= read_ahead:
                decoded, executor = _next_result(window, executor, context, num_workers, sample_rate, corpus)
                yield decoded
        while window:
            decoded, executor = _next_result(window, executor, context, num_workers, sample_rate, corpus)
            yield decoded
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _decode_pool(num_workers: int, context: Any) -> ProcessPoolExecutor:
    """Decode processes that end with this one, ``kill -9`` included (see :mod:`xcodec.dataset.lifetime`)."""
    return ProcessPoolExecutor(
        num_workers, mp_context=context, initializer=die_with_parent, initargs=(os.getpid(),)
    )


def _next_result(
    window: deque[tuple[DecodeRequest, Future[Decoded]]],
    executor: ProcessPoolExecutor,
    context: Any,
    num_workers: int,
    sample_rate: int,
    corpus: CorpusSource,
) -> tuple[Decoded, ProcessPoolExecutor]:
    request, future = window.popleft()
    try:
        return future.result(), executor
    except BrokenProcessPool:
        pass
    # A decoder process died (a crashing codec library, the OOM killer). Every item in flight
    # is retried, each alone in a fresh process, so only the file that kills it is failed.
    executor.shutdown(wait=True, cancel_futures=True)
    retry = [request] + [r for r, _ in window]
    window.clear()
    first: Decoded | None = None
    for item in retry:
        with _decode_pool(1, context) as single:
            try:
                decoded = single.submit(decode_item, item, sample_rate, corpus).result()
            except BrokenProcessPool:
                decoded = Decoded(item.index, None, error=f"{item.source}: the decoder process crashed on it")
        if first is None:
            first = decoded
        else:
            done: Future[Decoded] = Future()
            done.set_result(decoded)
            window.append((item, done))
    assert first is not None
    return first, _decode_pool(num_workers, context)


@dataclasses.dataclass
class _ShardWork:
    shard: int
    expected: int
    rows: list[ShardRow] = dataclasses.field(default_factory=list)
    failures: list[Failure] = dataclasses.field(default_factory=list)
    pool: list[Decoded] = dataclasses.field(default_factory=list)
    pool_samples: int = 0
    seen: int = 0


def process_shards(
    codec: Codec,
    plan: Plan,
    store: OutputStore,
    shards: Iterator[int],
    options: TokenizeOptions,
    num_workers: int,
    report: Callable[[int, float], None],
) -> None:
    """Decode, encode and write each shard of ``shards`` (an iterator: it may be fed by a queue)."""
    info = codec_info(codec, options)
    # A bandwidth the model lacks fails the job once, before any item is read.
    codec.model.check_bandwidth(options.bandwidth)
    # Items are decoded at the rate the codec takes (NeuCodec: 16 kHz in, 24 kHz out).
    sample_rate = codec.input_sample_rate
    # Decoded audio is encoded in pools of a few batches, so length bucketing has items to sort
    # while memory stays bounded whatever the shard size.
    pool_limit = int(4 * options.batch_seconds * sample_rate)
    ids = plan.table.column("id")
    sources = plan.table.column("source")
    work: _ShardWork | None = None
    for decoded in decoded_stream(_requests(plan, shards), num_workers, sample_rate, plan.corpus):
        shard = decoded.index // plan.shard_size
        if work is None or work.shard != shard:
            work = _ShardWork(shard, len(plan.shard_range(shard)))
        work.seen += 1
        if decoded.error is not None or decoded.waveform is None:
            work.failures.append(
                Failure(
                    decoded.index, str(ids[decoded.index]), str(sources[decoded.index]), str(decoded.error)
                )
            )
            report(1, 0.0)
        else:
            work.pool.append(decoded)
            work.pool_samples += decoded.waveform.shape[-1]
        if work.pool and (work.pool_samples >= pool_limit or work.seen == work.expected):
            _encode_pool(codec, work, plan, options.bandwidth, report)
        if work.seen == work.expected:
            store.write_shard(plan, work.shard, work.rows, work.failures, info)
            work = None


def _encode_pool(
    codec: Codec, work: _ShardWork, plan: Plan, bandwidth: float | None, report: Callable[[int, float], None]
) -> None:
    pool, work.pool, work.pool_samples = work.pool, [], 0
    prepared = [
        PreparedAudio(
            torch.from_numpy(d.waveform),
            str(plan.table.column("source")[d.index]),
            d.original_sample_rate,
            d.mixed_down,
        )
        for d in pool
    ]
    for decoded, item, codes in zip(pool, prepared, encode_items(codec, prepared, bandwidth), strict=True):
        input_samples = int(item.waveform.shape[-1])
        num_samples = output_samples(codec, input_samples)
        if isinstance(codes, str):
            work.failures.append(
                Failure(decoded.index, str(plan.table.column("id")[decoded.index]), item.source, codes)
            )
            report(1, 0.0)
            continue
        work.rows.append(ShardRow(decoded.index, codes, num_samples, item.original_sample_rate))
        report(1, input_samples / codec.input_sample_rate)


# ---- several devices -------------------------------------------------------------------


def _run_devices(
    plan: Plan,
    store: OutputStore,
    pending: list[int],
    options: TokenizeOptions,
    codec_factory: CodecFactory,
    report: Callable[[int, float], None],
    devices: list[str],
) -> None:
    """One process per device, each loading the model once and taking whole shards from a queue."""
    context = multiprocessing.get_context("spawn")
    shard_queue = context.Queue()
    events = context.Queue()
    for shard in pending:
        shard_queue.put(shard)
    for _ in devices:
        shard_queue.put(None)
    workers_each = options.num_workers // len(devices) if options.num_workers > 0 else 0
    if options.num_workers > 0:
        workers_each = max(1, workers_each)
    processes = [
        context.Process(
            target=_device_main,
            args=(device, options, codec_factory, shard_queue, events, workers_each, os.getpid()),
            name=f"xcodec-tokenize-{device}",
        )
        for device in devices
    ]
    for process in processes:
        process.start()
    # A job-level error in a device process (bad bandwidth, unknown model) comes back as
    # its message, so the job fails once with it rather than as N crashed processes.
    job_errors: dict[str, list[str]] = {}
    try:
        while any(p.is_alive() for p in processes) or not events.empty():
            try:
                event = events.get(timeout=0.5)
            except queue.Empty:
                continue
            if event[0] == _JOB_ERROR:
                job_errors.setdefault(event[2], []).append(event[1])
            else:
                report(*event)
    finally:
        for process in processes:
            process.join()
    if job_errors:
        raise XcodecError(
            "; ".join(f"{message} (device {', '.join(names)})" for message, names in job_errors.items())
        )
    failed = [f"{d} (exit code {p.exitcode})" for d, p in zip(devices, processes, strict=True) if p.exitcode]
    if failed:
        raise XcodecError(f"device process failed: {', '.join(failed)}; rerun the same command to resume")


# Tag of a device process's event that carries a job-level error instead of progress.
_JOB_ERROR = "job-error"


def _device_main(
    device: str,
    options: TokenizeOptions,
    codec_factory: CodecFactory,
    shard_queue: Any,
    events: Any,
    num_workers: int,
    parent_pid: int,
) -> None:
    die_with_parent(parent_pid)  # a device process (and its decode workers) ends with the job
    store = OutputStore(options.out)
    plan = store.load_plan()

    def shards() -> Iterator[int]:
        while (shard := shard_queue.get()) is not None:
            yield shard

    try:
        codec = codec_factory(options, device)
        process_shards(codec, plan, store, shards(), options, num_workers, lambda f, s: events.put((f, s)))
    except XcodecError as exc:
        events.put((_JOB_ERROR, device, str(exc)))
        raise SystemExit(2) from exc
