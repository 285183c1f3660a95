"""Exceptions raised by the package on purpose. Each message names the file, key, item or argument at fault.

Anything else that escapes the package (a plain ``RuntimeError``, ``AssertionError``,
``IndexError``) is a bug, not bad input, and is never turned into a per-item failure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = [
    "JOB_ERRORS",
    "ArgumentError",
    "AudioError",
    "BatchError",
    "CheckpointError",
    "ConfigError",
    "ItemError",
    "XcodecError",
    "is_item_error",
    "isolate_items",
]

T = TypeVar("T")
R = TypeVar("R")


class XcodecError(Exception):
    """Base class for errors raised by xcodec."""


class CheckpointError(XcodecError):
    """A checkpoint that cannot be found, read, or matched to the model."""


class ConfigError(XcodecError, ValueError):
    """A config file or dict that does not describe a model we can build."""


class AudioError(XcodecError, ValueError):
    """Audio that cannot be used: unreadable, empty, non-finite, wrong rate or layout."""


class ArgumentError(XcodecError, ValueError):
    """An argument of a whole job that cannot be honoured (a bandwidth the model lacks, ...).

    A job-level error: the CLI reports it once and exits 2, instead of failing every item.
    """


# Errors that concern a whole job, not one item: re-running item by item cannot help.
JOB_ERRORS: tuple[type[XcodecError], ...] = (ArgumentError, CheckpointError, ConfigError)


@dataclasses.dataclass
class ItemError:
    """Why one item of a batch failed: its position in the input list, its name, the reason."""

    index: int
    source: str
    message: str

    def __str__(self) -> str:
        return self.message if self.message.startswith(self.source) else f"{self.source}: {self.message}"


class BatchError(XcodecError):
    """Some items of a list failed.

    results: one entry per input, the item's result or None where it failed.
    errors: one :class:`ItemError` per failed item.
    """

    def __init__(self, errors: list[ItemError], results: list[Any]):
        self.errors = errors
        self.results = results
        lines = "; ".join(str(e) for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"{len(errors)} of {len(results)} items failed: {lines}{more}")


def is_item_error(exc: BaseException) -> bool:
    """True for an error one bad item causes: ours, and not one of the job-level :data:`JOB_ERRORS`."""
    return isinstance(exc, XcodecError) and not isinstance(exc, JOB_ERRORS)


def isolate_items(
    items: Sequence[T],
    run: Callable[[list[T]], Sequence[R]],
    describe: Callable[[int, T], str],
    *,
    action: str = "encoding",
) -> tuple[list[R | None], list[ItemError]]:
    """``run`` on all ``items`` at once; if one bad item makes it fail, on each item alone.

    The one per-item isolation of the package (``xcodec.load(...).encode``, ``xcodec
    encode``, ``xcodec tokenize``). Returns one result per item (None where it failed) and
    an :class:`ItemError` per failed item, named by ``describe(index, item)``. Only item
    errors (:func:`is_item_error`) are isolated: a job-level error (a bandwidth the model
    lacks, a bad checkpoint) and anything not ours (a ``RuntimeError`` from a broken
    invariant, a bug) propagate unchanged.
    """
    items = list(items)
    if not items:
        return [], []
    try:
        results: list[R | None] = list(run(items))
        return results, []
    except XcodecError as exc:
        if not is_item_error(exc):
            raise
        if len(items) == 1:
            return [None], [ItemError(0, describe(0, items[0]), f"{action} failed: {exc}")]
    results = []
    errors: list[ItemError] = []
    for index, item in enumerate(items):
        try:
            results.append(run([item])[0])
        except XcodecError as exc:
            if not is_item_error(exc):
                raise
            results.append(None)
            errors.append(ItemError(index, describe(index, item), f"{action} failed: {exc}"))
    return results, errors
