"""Turn the INPUT of ``xcodec tokenize`` into an ordered list of corpus items.

INPUT may be a folder (searched recursively by audio extension), a glob, a manifest
(plain list of paths, CSV/TSV or JSONL with a path column and optional passthrough
columns), or a Hugging Face ``datasets`` dataset (a ``save_to_disk`` folder, or Parquet
with an audio column). The order of the list is deterministic, because items are
assigned to shards by their position in it and a rerun must assign them the same way.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xcodec.errors import XcodecError

__all__ = [
    "AUDIO_EXTENSIONS",
    "INPUT_FORMATS",
    "RESERVED_COLUMNS",
    "CorpusItem",
    "CorpusSource",
    "discover",
]

AUDIO_EXTENSIONS = (
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".aiff",
    ".aif",
    ".aifc",
    ".au",
    ".caf",
    ".w64",
    ".rf64",
)
INPUT_FORMATS = ("auto", "folder", "glob", "list", "csv", "tsv", "jsonl", "hf", "parquet")
# Output columns computed by the tokenizer; a passthrough column with one of these names is
# renamed to ``input_<name>`` (NeMo manifests carry their own ``duration``, for example).
RESERVED_COLUMNS = (
    "id",
    "source",
    "audio_codes",
    "num_codebooks",
    "num_frames",
    "num_samples",
    "sample_rate",
    "original_sample_rate",
    "duration",
)
PATH_COLUMNS = ("path", "audio_filepath", "audio_path", "filepath", "file", "wav", "audio")
_LIST_SUFFIXES = (".txt", ".lst", ".list", ".scp")


@dataclasses.dataclass
class CorpusItem:
    """One input of the corpus.

    Exactly one of ``path`` (an audio file) and ``row`` (a row of a table-backed dataset)
    is set. ``extras`` holds the passthrough columns copied to the output row.
    """

    id: str
    source: str
    path: str | None = None
    row: int | None = None
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class CorpusSource:
    """Where the audio of table-backed items lives, so decode workers can open it themselves.

    kind: ``"files"`` (items carry paths), ``"hf"`` (a ``save_to_disk`` folder) or
    ``"parquet"`` (a Parquet file or folder of them).
    """

    kind: str
    location: str = ""
    split: str | None = None
    audio_column: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> CorpusSource:
        return cls(**values)


def discover(
    spec: str,
    *,
    input_format: str = "auto",
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
    root: str | None = None,
    path_column: str | None = None,
    id_column: str = "id",
    audio_column: str = "audio",
    split: str | None = None,
    keep_columns: Sequence[str] | None = None,
) -> tuple[CorpusSource, list[CorpusItem]]:
    """List the items of INPUT in a deterministic order; raise :class:`XcodecError` if it cannot be read."""
    kind = _detect_format(spec, input_format, extensions)
    suffixes = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    if kind == "folder":
        base = Path(spec)
        paths = sorted(p for p in base.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        return CorpusSource("files"), _file_items(paths, base)
    if kind == "glob":
        base = _glob_base(spec)
        paths = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        return CorpusSource("files"), _file_items(paths, base)
    if kind in ("list", "csv", "tsv", "jsonl"):
        records = _read_manifest(Path(spec), kind)
        base_dir = Path(root) if root else Path(spec).resolve().parent
        items = _manifest_items(records, base_dir, path_column, id_column, kind, spec)
        return CorpusSource("files"), _keep(items, keep_columns)
    if kind in ("hf", "parquet"):
        source, items = _table_items(spec, kind, id_column, audio_column, split)
        return source, _keep(items, keep_columns)
    raise XcodecError(f"unknown input format {kind!r}; choose one of {', '.join(INPUT_FORMATS)}")


def _detect_format(spec: str, input_format: str, extensions: Sequence[str]) -> str:
    if input_format != "auto":
        if input_format not in INPUT_FORMATS:
            raise XcodecError(
                f"unknown input format {input_format!r}; choose one of {', '.join(INPUT_FORMATS)}"
            )
        return input_format
    path = Path(spec)
    if path.is_dir():
        if any((path / name).exists() for name in ("dataset_info.json", "state.json", "dataset_dict.json")):
            return "hf"
        has_audio = any(p.suffix.lower() in extensions for p in path.rglob("*") if p.is_file())
        if not has_audio and any(path.rglob("*.parquet")):
            return "parquet"
        return "folder"
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            return "parquet"
        if suffix == ".csv":
            return "csv"
        if suffix == ".tsv":
            return "tsv"
        if suffix in (".jsonl", ".json", ".ndjson"):
            return "jsonl"
        if suffix in extensions:
            return "glob"  # one audio file: a glob matching only itself
        if suffix in _LIST_SUFFIXES:
            return "list"
        raise XcodecError(
            f"{spec}: cannot tell what kind of input this is; pass --input-format "
            f"({', '.join(INPUT_FORMATS[1:])})"
        )
    if glob.has_magic(spec):
        return "glob"
    raise XcodecError(f"{spec}: no such file, folder or glob")


def _glob_base(pattern: str) -> Path:
    """The longest leading part of a glob without wildcards; ids are paths relative to it."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    base = Path(*fixed) if fixed else Path(".")
    return base if base.is_dir() else base.parent


def _file_items(paths: Sequence[Path], base: Path) -> list[CorpusItem]:
    """Items for audio files; the id is the path relative to ``base`` without its extension.

    Files that differ only by extension (``a.wav``, ``a.flac``) keep their extension in the id.
    """
    relative = [p.relative_to(base) if p.is_relative_to(base) else p for p in paths]
    stems = [r.with_suffix("").as_posix() for r in relative]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    items = []
    for path, rel, stem in zip(paths, relative, stems, strict=True):
        item_id = stem if counts[stem] == 1 else rel.as_posix()
        items.append(CorpusItem(id=item_id, source=str(path.resolve()), path=str(path.resolve())))
    return items


def _read_manifest(path: Path, kind: str) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise XcodecError(f"cannot read manifest {path}: {exc}") from exc
    if kind == "list":
        lines = [line.strip() for line in text.splitlines()]
        return [{"path": line} for line in lines if line and not line.startswith("#")]
    if kind in ("csv", "tsv"):
        reader = csv.DictReader(text.splitlines(), delimiter="," if kind == "csv" else "\t")
        return [dict(row) for row in reader]
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise XcodecError(f"{path}:{number}: not a JSON object ({exc})") from exc
        if not isinstance(record, dict):
            raise XcodecError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def _manifest_items(
    records: list[dict[str, Any]],
    base_dir: Path,
    path_column: str | None,
    id_column: str,
    kind: str,
    spec: str,
) -> list[CorpusItem]:
    if not records:
        return []
    columns = list(records[0])
    column = path_column or next((c for c in PATH_COLUMNS if c in columns), None)
    if column is None or column not in columns:
        raise XcodecError(
            f"{spec}: no path column (looked for {path_column or ', '.join(PATH_COLUMNS)}; "
            f"found {', '.join(columns)}); pass --path-column"
        )
    explicit_ids = kind != "list" and id_column in columns
    items = []
    for number, record in enumerate(records, start=1):
        written = record.get(column)
        if not isinstance(written, str) or not written:
            raise XcodecError(f"{spec}: entry {number} has no {column!r}")
        path = Path(written) if Path(written).is_absolute() else base_dir / written
        item_id = str(record[id_column]) if explicit_ids else Path(written).with_suffix("").as_posix()
        extras = {k: v for k, v in record.items() if k not in (column, id_column)}
        resolved = str(path.resolve())
        items.append(CorpusItem(id=item_id, source=resolved, path=resolved, extras=_rename_reserved(extras)))
    _unique_ids(items, explicit_ids, spec)
    return items


def _rename_reserved(extras: dict[str, Any]) -> dict[str, Any]:
    return {(f"input_{k}" if k in RESERVED_COLUMNS else k): v for k, v in extras.items()}


def _unique_ids(items: list[CorpusItem], explicit: bool, spec: str) -> None:
    """Explicit ids must be unique; derived ids of repeated entries get ``#2``, ``#3``... in order."""
    seen: dict[str, int] = {}
    for item in items:
        count = seen.get(item.id, 0) + 1
        seen[item.id] = count
        if count > 1:
            if explicit:
                raise XcodecError(f"{spec}: id {item.id!r} appears more than once")
            item.id = f"{item.id}#{count}"


def _keep(items: list[CorpusItem], keep_columns: Sequence[str] | None) -> list[CorpusItem]:
    if keep_columns is None:
        return items
    wanted = set(keep_columns)
    for item in items:
        item.extras = {k: v for k, v in item.extras.items() if k in wanted}
    return items


def open_table(source: CorpusSource) -> Any:
    """The table behind a ``hf``/``parquet`` source, rows indexable in plan order.

    ``hf`` returns a ``datasets.Dataset`` in Arrow format (its indices mapping applied);
    ``parquet`` returns a ``pyarrow.Table``. Either way ``table_row(...)`` reads one row.
    """
    if source.kind == "parquet":
        import pyarrow.parquet as pq

        location = Path(source.location)
        files = sorted(location.rglob("*.parquet")) if location.is_dir() else [location]
        if not files:
            raise XcodecError(f"{location}: no Parquet files")
        import pyarrow as pa

        return pa.concat_tables([pq.read_table(f, memory_map=True) for f in files])
    try:
        import datasets
    except ImportError as exc:
        raise XcodecError(
            "reading a `datasets` folder needs the `datasets` package: pip install datasets"
        ) from exc
    loaded = datasets.load_from_disk(source.location)
    if isinstance(loaded, datasets.DatasetDict):
        split = source.split or ("train" if "train" in loaded else None)
        if split is None or split not in loaded:
            raise XcodecError(
                f"{source.location} holds splits {', '.join(loaded)}; pass --split to choose one"
            )
        loaded = loaded[split]
    return loaded.with_format("arrow")


def table_columns(table: Any) -> list[str]:
    return list(table.column_names)


def table_row(table: Any, row: int, column: str) -> Any:
    """One cell as a Python value (an Audio feature cell is a ``{"bytes", "path"}`` dict)."""
    if hasattr(table, "slice"):  # pyarrow.Table
        return table.column(column)[row].as_py()
    return table[row].column(column)[0].as_py()


def _table_items(
    spec: str, kind: str, id_column: str, audio_column: str, split: str | None
) -> tuple[CorpusSource, list[CorpusItem]]:
    source = CorpusSource(kind, str(Path(spec).resolve()), split, audio_column)
    table = open_table(source)
    columns = table_columns(table)
    if audio_column not in columns:
        raise XcodecError(
            f"{spec}: no audio column {audio_column!r} (columns: {', '.join(columns)}); pass --audio-column"
        )
    if kind == "hf":
        source.split = split or _resolved_split(spec, split)
        # Slicing in Arrow format honours the indices mapping that select/shuffle leave behind.
        scalars = table.remove_columns([audio_column])
        records: list[dict[str, Any]] = scalars[:].to_pylist() if len(scalars) else []
    else:
        records = table.drop_columns([audio_column]).to_pylist()
    explicit_ids = id_column in columns
    items = []
    for row, record in enumerate(records):
        item_id = str(record[id_column]) if explicit_ids else f"{row:09d}"
        extras = {k: v for k, v in record.items() if k != id_column and _is_scalar(v)}
        items.append(
            CorpusItem(
                id=item_id, source=f"{source.location}#{row}", row=row, extras=_rename_reserved(extras)
            )
        )
    _unique_ids(items, explicit_ids, spec)
    return source, items


def _resolved_split(spec: str, split: str | None) -> str | None:
    dict_file = Path(spec) / "dataset_dict.json"
    if not dict_file.exists():
        return None
    return split or "train"


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def describe_source(spec: str) -> str:
    """A stable description of INPUT for the job fingerprint (absolute where it is a path)."""
    path = Path(spec)
    return str(path.resolve()) if path.exists() else os.path.abspath(spec)
