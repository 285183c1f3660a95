"""The output folder of a tokenize job and the records that make it resumable.

Layout of ``OUT``::

    data/shard-00000-of-00012.parquet   one row per encoded item (see SHARD_SCHEMA)
    summary.json                        model, counts, hours, throughput (written when complete)
    errors.jsonl                        one line per failed item (written when complete)
    _xcodec/plan.parquet                every item, in order, with its passthrough columns
    _xcodec/lock                        held while a job runs
    _xcodec/tmp/                        files being written

Never lose, never duplicate: item ``i`` belongs to shard ``i // shard_size`` of the plan,
which is written once, before any work, and reused by every rerun. A shard is written
to ``_xcodec/tmp``, flushed to disk and renamed into ``data/`` in one step, and it
records the items that failed in its own metadata, so a shard's presence alone says all
of its items are done. A rerun only redoes shards that are absent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from xcodec.dataset.sources import CorpusItem, CorpusSource
from xcodec.errors import XcodecError

__all__ = ["SHARD_SCHEMA", "Failure", "OutputStore", "Plan", "ShardRow", "build_plan"]

PLAN_VERSION = 1
_META_KEY = b"xcodec"

# audio_codes holds one list per codebook, each num_frames long: row["audio_codes"][k][t] is
# codebook k at frame t, the same (num_codebooks, frames) layout `xcodec encode` writes.
SHARD_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("audio_codes", pa.list_(pa.list_(pa.int32()))),
        ("num_codebooks", pa.int32()),
        ("num_frames", pa.int32()),
        ("num_samples", pa.int64()),
        ("sample_rate", pa.int32()),
        ("original_sample_rate", pa.int32()),
        ("duration", pa.float64()),
    ]
)


@dataclasses.dataclass
class Failure:
    """An item that could not be tokenized, and why."""

    index: int
    id: str
    source: str
    reason: str


@dataclasses.dataclass
class ShardRow:
    """The tokens of one item. audio_codes: (num_codebooks, frames) integer array."""

    index: int
    audio_codes: Any
    num_samples: int
    original_sample_rate: int


@dataclasses.dataclass
class Plan:
    """Every item of the job in order, the shard size, and what the job is (its fingerprint)."""

    table: pa.Table  # columns: id, source, path, row, then passthrough columns
    corpus: CorpusSource
    shard_size: int
    fingerprint: dict[str, Any]

    @property
    def num_items(self) -> int:
        return self.table.num_rows

    @property
    def num_shards(self) -> int:
        return -(-self.num_items // self.shard_size)

    @property
    def extra_columns(self) -> list[str]:
        return self.table.column_names[4:]

    def shard_range(self, shard: int) -> range:
        start = shard * self.shard_size
        return range(start, min(start + self.shard_size, self.num_items))

    def items(self, indices: Sequence[int] | range) -> list[CorpusItem]:
        rows = (
            self.table.select(["id", "source", "path", "row"])
            .take(pa.array(list(indices), pa.int64()))
            .to_pylist()
        )
        return [CorpusItem(r["id"], r["source"], r["path"], r["row"]) for r in rows]


def build_plan(
    items: Sequence[CorpusItem], corpus: CorpusSource, shard_size: int, job: dict[str, Any]
) -> Plan:
    """Fix the item order and passthrough column types; ``job`` names what must match on a rerun."""
    if shard_size < 1:
        raise XcodecError(f"--shard-size must be at least 1, got {shard_size}")
    columns: dict[str, pa.Array] = {
        "id": pa.array([i.id for i in items], pa.string()),
        "source": pa.array([i.source for i in items], pa.string()),
        "path": pa.array([i.path for i in items], pa.string()),
        "row": pa.array([i.row for i in items], pa.int64()),
    }
    names: list[str] = []
    for item in items:
        names.extend(k for k in item.extras if k not in names)
    for name in names:
        columns[name] = _column([item.extras.get(name) for item in items])
    table = pa.table(columns)
    digest = hashlib.sha256()
    for item_id, source in zip(
        table.column("id").to_pylist(), table.column("source").to_pylist(), strict=True
    ):
        digest.update(f"{item_id}\0{source}\n".encode())
    fingerprint = {
        **job,
        "plan_version": PLAN_VERSION,
        "shard_size": shard_size,
        "num_items": len(items),
        "items_sha256": digest.hexdigest(),
    }
    return Plan(table, corpus, shard_size, fingerprint)


def _column(values: list[Any]) -> pa.Array:
    """One passthrough column; mixed types fall back to strings rather than failing the job."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class OutputStore:
    """Reads and writes the output folder; every file lands whole or not at all."""

    def __init__(self, out: str | os.PathLike[str]):
        self.out = Path(out)
        self.data_dir = self.out / "data"
        self.state_dir = self.out / "_xcodec"
        self.tmp_dir = self.state_dir / "tmp"
        self.plan_path = self.state_dir / "plan.parquet"

    # ---- locking and temporary files ---------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the job lock; a second job on the same folder fails instead of interleaving.

        The lock is an OS file lock, so a killed job (kill -9 included) never leaves it held.
        """
        for folder in (self.data_dir, self.tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / "lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise XcodecError(f"another tokenize job is writing to {self.out}") from exc
            try:
                # Leftovers of a killed run; only whole files are ever renamed out of tmp/.
                for leftover in self.tmp_dir.iterdir():
                    leftover.unlink()
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _atomic(self, final: Path, write: Callable[[Path], object]) -> None:
        temp = self.tmp_dir / f"{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        write(temp)
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, final)
        _fsync_dir(final.parent)

    def write_text(self, final: Path, text: str) -> None:
        self._atomic(final, lambda temp: temp.write_text(text, encoding="utf-8"))

    # ---- the plan ----------------------------------------------------------------------
    def load_or_save_plan(self, fresh: Plan) -> Plan:
        """Return the stored plan if the job matches it, store ``fresh`` if there is none, else raise."""
        if self.plan_path.exists():
            stored = self.load_plan()
            if stored.fingerprint != fresh.fingerprint:
                changed = sorted(
                    k
                    for k in set(stored.fingerprint) | set(fresh.fingerprint)
                    if stored.fingerprint.get(k) != fresh.fingerprint.get(k)
                )
                raise XcodecError(
                    f"{self.out} holds a different tokenize job (differs in: {', '.join(changed)}); "
                    "rerun with the same command, choose another --out, or pass --overwrite"
                )
            return stored
        metadata = {
            _META_KEY: json.dumps(
                {
                    "fingerprint": fresh.fingerprint,
                    "corpus": fresh.corpus.to_dict(),
                    "shard_size": fresh.shard_size,
                }
            ).encode()
        }
        table = fresh.table.replace_schema_metadata(metadata)
        self._atomic(self.plan_path, lambda temp: pq.write_table(table, temp))
        return fresh

    def load_plan(self) -> Plan:
        table = pq.read_table(self.plan_path)
        meta = json.loads((table.schema.metadata or {})[_META_KEY])
        return Plan(
            table.replace_schema_metadata(None),
            CorpusSource.from_dict(meta["corpus"]),
            int(meta["shard_size"]),
            meta["fingerprint"],
        )

    def clear(self) -> None:
        """Forget a previous job in this folder (``--overwrite``)."""
        for folder in (self.data_dir, self.state_dir):
            if folder.exists():
                for path in sorted(folder.rglob("*"), reverse=True):
                    if path.is_file() and path.name != "lock":
                        path.unlink()
        for name in ("summary.json", "errors.jsonl"):
            (self.out / name).unlink(missing_ok=True)

    # ---- shards ------------------------------------------------------------------------
    def shard_path(self, plan: Plan, shard: int) -> Path:
        return self.data_dir / f"shard-{shard:05d}-of-{plan.num_shards:05d}.parquet"

    def shard_meta(self, path: Path) -> dict[str, Any] | None:
        """A shard's own record, or None if the file is unreadable (then it is redone)."""
        try:
            metadata = pq.read_metadata(path).metadata or {}
            return json.loads(metadata[_META_KEY])
        except (OSError, KeyError, ValueError, pa.ArrowException):
            return None

    def done_shards(self, plan: Plan, *, retry_errors: bool = False) -> set[int]:
        done = set()
        for shard in range(plan.num_shards):
            path = self.shard_path(plan, shard)
            if not path.exists():
                continue
            meta = self.shard_meta(path)
            if meta is None or meta.get("num_items") != len(plan.shard_range(shard)):
                path.unlink()
                continue
            if retry_errors and meta.get("failures"):
                continue
            done.add(shard)
        return done

    def write_shard(
        self,
        plan: Plan,
        shard: int,
        rows: Sequence[ShardRow],
        failures: Sequence[Failure],
        codec_info: dict[str, Any],
    ) -> Path:
        """Write one complete shard atomically; ``rows`` and ``failures`` must cover its items exactly."""
        expected = set(plan.shard_range(shard))
        covered = [r.index for r in rows] + [f.index for f in failures]
        if sorted(covered) != sorted(expected):
            raise XcodecError(f"shard {shard}: items do not match the plan (internal error)")
        rows = sorted(rows, key=lambda r: r.index)
        table = self._shard_table(plan, rows, codec_info)
        meta = {
            "shard": shard,
            "num_items": len(expected),
            "num_encoded": len(rows),
            "failures": [dataclasses.asdict(f) for f in sorted(failures, key=lambda f: f.index)],
            **codec_info,
        }
        table = table.replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})
        final = self.shard_path(plan, shard)
        self._atomic(final, lambda temp: pq.write_table(table, temp))
        return final

    def _shard_table(self, plan: Plan, rows: Sequence[ShardRow], codec_info: dict[str, Any]) -> pa.Table:
        indices = [r.index for r in rows]
        known = plan.table.take(pa.array(indices, pa.int64()))
        sample_rate = int(codec_info["sample_rate"])
        codes = [r.audio_codes for r in rows]
        columns = [
            known.column("id"),
            known.column("source"),
            pa.array([c.tolist() for c in codes], SHARD_SCHEMA.field("audio_codes").type),
            pa.array([c.shape[0] for c in codes], pa.int32()),
            pa.array([c.shape[1] for c in codes], pa.int32()),
            pa.array([r.num_samples for r in rows], pa.int64()),
            pa.array([sample_rate] * len(rows), pa.int32()),
            pa.array([r.original_sample_rate for r in rows], pa.int32()),
            pa.array([r.num_samples / sample_rate for r in rows], pa.float64()),
        ]
        extras = plan.extra_columns
        schema = pa.schema(list(SHARD_SCHEMA) + [plan.table.schema.field(n) for n in extras])
        return pa.Table.from_arrays(columns + [known.column(n) for n in extras], schema=schema)

    # ---- completion --------------------------------------------------------------------
    def finalize(self, plan: Plan, run: dict[str, Any]) -> dict[str, Any]:
        """Check every shard against the plan, then write errors.jsonl and summary.json."""
        failures: list[dict[str, Any]] = []
        infos: list[dict[str, Any]] = []
        seconds = 0.0
        frames = 0
        encoded = 0
        for shard in range(plan.num_shards):
            path = self.shard_path(plan, shard)
            meta = self.shard_meta(path) if path.exists() else None
            if meta is None:
                raise XcodecError(f"{path} is missing or unreadable; rerun the same command to finish")
            table = pq.read_table(path, columns=["id", "duration", "num_frames"])
            ids = table.column("id").to_pylist() + [f["id"] for f in meta["failures"]]
            span = plan.shard_range(shard)
            expected = plan.table.column("id").slice(span.start, len(span)).to_pylist()
            if sorted(ids) != sorted(expected):
                raise XcodecError(f"{path}: its items do not match the plan; delete it and rerun")
            failures.extend({**f, "shard": shard} for f in meta["failures"])
            infos.append(meta)
            encoded += table.num_rows
            seconds += float(sum(table.column("duration").to_pylist()))
            frames += int(sum(table.column("num_frames").to_pylist()))
        lines = "".join(
            json.dumps({k: f[k] for k in ("id", "source", "reason", "shard")}) + "\n" for f in failures
        )
        self.write_text(self.out / "errors.jsonl", lines)
        summary = _summary(plan, infos, encoded, len(failures), seconds, frames, run)
        self.write_text(self.out / "summary.json", json.dumps(summary, indent=2) + "\n")
        return summary


_CODEC_KEYS = (
    "model_id",
    "model_class",
    "config_hash",
    "sample_rate",
    "frame_rate",
    "num_codebooks",
    "codebook_size",
    "bandwidth",
    "dtype",
)


def _summary(
    plan: Plan,
    infos: list[dict[str, Any]],
    encoded: int,
    failed: int,
    seconds: float,
    frames: int,
    run: dict[str, Any],
) -> dict[str, Any]:
    codec: dict[str, Any] = {k: infos[0].get(k) for k in _CODEC_KEYS} if infos else {}
    hashes = sorted({str(i.get("config_hash")) for i in infos})
    if len(hashes) > 1:  # cannot happen through the CLI (the fingerprint pins the model); say so if it does
        codec["config_hash"] = hashes
    return {
        **codec,
        "input": plan.fingerprint.get("input"),
        "audio_codes_layout": "list<list<int32>>: audio_codes[codebook][frame], shape (num_codebooks, num_frames)",
        "num_items": plan.num_items,
        "num_encoded": encoded,
        "num_failed": failed,
        "num_shards": plan.num_shards,
        "shard_size": plan.shard_size,
        "total_audio_seconds": round(seconds, 3),
        "total_audio_hours": round(seconds / 3600.0, 6),
        "total_frames": frames,
        "last_run": run,
    }
