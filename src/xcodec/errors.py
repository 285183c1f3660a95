"""Exceptions raised by the package. Each message names the file or item at fault."""

from __future__ import annotations

__all__ = ["AudioError", "CheckpointError", "XcodecError"]


class XcodecError(Exception):
    """Base class for errors raised by xcodec."""


class CheckpointError(XcodecError):
    """A checkpoint that cannot be found, read, or matched to the model."""


class AudioError(XcodecError, ValueError):
    """Audio that cannot be used: unreadable, empty, non-finite, wrong rate or layout."""
