"""Streaming state for modules on the data path (the design of Kyutai's Mimi, written anew).

A module that needs memory between calls to decode a stream subclasses
:class:`StreamingModule` and describes that memory as a small dataclass (a subclass of
:class:`StreamingState`). ``with streaming(model, batch_size):`` (or
``module.streaming(batch_size)``) gives every such module in the tree a fresh state for
``batch_size`` streams and takes it away on exit; outside the block the same ``forward``
computes the offline result, so offline and streaming share one code path.

This module only holds the mechanism; the modules that use it (the ISTFT head, the
decoder streamers) live with their data path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from torch import nn

__all__ = [
    "StreamingModule",
    "StreamingState",
    "init_states",
    "resumed",
    "streaming",
    "streaming_modules",
]


@dataclass
class StreamingState:
    """What one module remembers between two calls of a stream; ``batch_size`` streams advance together."""

    batch_size: int


StateT = TypeVar("StateT", bound=StreamingState)


class StreamingModule(nn.Module, Generic[StateT]):
    """A module that can run offline (no state) or inside a ``streaming`` block (with state).

    Subclasses implement :meth:`_init_streaming_state`; their ``forward`` reads
    :attr:`streaming_state`, which is ``None`` offline.
    """

    _streaming_state: StateT | None = None

    @property
    def streaming_state(self) -> StateT | None:
        """This module's stream memory, or None when it runs offline."""
        return self._streaming_state

    @property
    def is_streaming(self) -> bool:
        return self._streaming_state is not None

    def _init_streaming_state(self, batch_size: int) -> StateT:
        """A fresh state for ``batch_size`` streams (nothing seen yet)."""
        raise NotImplementedError

    def set_streaming_state(self, state: StateT | None) -> None:
        # Stored outside nn.Module's registries: the state is no parameter or buffer.
        object.__setattr__(self, "_streaming_state", state)

    def streaming(self, batch_size: int = 1) -> _StreamingBlock:
        """``with module.streaming(B):`` switches this module's whole tree to streaming."""
        return _StreamingBlock(self, batch_size)


def streaming_modules(root: nn.Module) -> Iterator[StreamingModule]:
    """Every :class:`StreamingModule` in ``root``'s tree, ``root`` included."""
    for module in root.modules():
        if isinstance(module, StreamingModule):
            yield module


def init_states(root: nn.Module, batch_size: int) -> dict[StreamingModule, StreamingState]:
    """Fresh states for every stateful module under ``root``, held by the caller between calls.

    A stream object keeps these and installs them only around its own calls
    (:func:`resumed`), so an abandoned stream never leaves the model in streaming mode and
    several streams can share one model.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return {module: module._init_streaming_state(batch_size) for module in streaming_modules(root)}


@contextmanager
def resumed(states: dict[StreamingModule, StreamingState]) -> Iterator[None]:
    """Install ``states`` (from :func:`init_states`) for the block; the modules are offline again after it."""
    busy = [type(module).__name__ for module in states if module.is_streaming]
    if busy:
        raise ValueError(f"{', '.join(busy)} already streaming; finish that stream first")
    try:
        for module, state in states.items():
            module.set_streaming_state(state)
        yield
    finally:
        for module in states:
            module.set_streaming_state(None)


@contextmanager
def streaming(root: nn.Module, batch_size: int = 1) -> Iterator[nn.Module]:
    """Switch every stateful module under ``root`` to streaming for ``batch_size`` streams.

    Raises ValueError when ``batch_size`` < 1 or the tree is already streaming (two streams
    cannot share one set of states); on exit every state is dropped, even after an error.
    """
    with resumed(init_states(root, batch_size)):
        yield root


class _StreamingBlock:
    """The context manager :meth:`StreamingModule.streaming` returns (enter/exit by hand or ``with``)."""

    def __init__(self, root: nn.Module, batch_size: int) -> None:
        self._context = streaming(root, batch_size)

    def __enter__(self) -> nn.Module:
        return self._context.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._context.__exit__(*exc)  # type: ignore[arg-type]
