"""Training checkpoints in RUN_DIR: atomic writes, newest-complete lookup, keep-last-K.

Layout::

    RUN_DIR/checkpoints/step-0000200/state.pt    full training state (torch.save of tensors and plain values)
    RUN_DIR/last/                                 inference model, Transformers layout (save_pretrained)

A checkpoint is written into ``checkpoints/.tmp-step-NNNNNNN``, its files fsynced, then
renamed: a rename is atomic, so a folder named ``step-*`` is always complete and a run
killed mid-write leaves only a ``.tmp-*`` folder, which is never picked and is removed on
the next save. ``state.pt`` holds tensors, numbers, strings, lists and dicts only, so it
is read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from xcodec.errors import CheckpointError

__all__ = ["find_latest", "load_state", "save_atomic", "save_state"]

STATE_NAME = "state.pt"
_STEP = re.compile(r"^step-(\d{7,})$")


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def save_atomic(destination: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_folder)``, fsync it, then replace ``destination`` by it (rename)."""
    destination = Path(destination)
    tmp = destination.parent / f".tmp-{destination.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write(tmp)
    _fsync_tree(tmp)
    old = destination.parent / f".old-{destination.name}"
    if destination.exists():
        if old.exists():
            shutil.rmtree(old)
        destination.rename(old)
    tmp.rename(destination)
    if old.exists():
        shutil.rmtree(old)


def save_state(run_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write ``state`` as ``checkpoints/step-{step:07d}/state.pt`` atomically; keep the newest ``keep``."""
    folder = Path(run_dir) / "checkpoints" / f"step-{step:07d}"
    save_atomic(folder, lambda tmp: torch.save(state, tmp / STATE_NAME))
    steps = _complete(Path(run_dir))
    for _, old in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(old)
    return folder


def _complete(run_dir: Path) -> list[tuple[int, Path]]:
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP.match(path.name)
        if match and (path / STATE_NAME).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def find_latest(run_dir: Path) -> Path | None:
    """The newest complete ``checkpoints/step-*`` folder of ``run_dir``, or None."""
    steps = _complete(Path(run_dir))
    return steps[-1][1] if steps else None


def load_state(folder: Path) -> dict[str, Any]:
    """``state.pt`` of a checkpoint folder, read with ``weights_only=True``."""
    path = Path(folder) / STATE_NAME
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read training state {path}: {exc}") from exc
    if not isinstance(state, dict) or "step" not in state:
        raise CheckpointError(f"{path} is not a training state (no 'step')")
    return state
