"""Corpus tokenization: a folder, glob, manifest or dataset in; resumable Parquet shards of codes out.

Command line: ``xcodec tokenize INPUT --out DIR --model ID``. From Python::

    from xcodec.dataset import TokenizeOptions, tokenize_corpus, read_tokens
    tokenize_corpus(TokenizeOptions(input="corpus/", out="tokens/"))
    table = read_tokens("tokens/")  # a pyarrow.Table, one row per encoded item
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xcodec.dataset.pipeline import (
        CodecFactory,
        TokenizeOptions,
        TokenizeResult,
        load_codec,
        tokenize_corpus,
    )
    from xcodec.dataset.sources import CorpusItem, discover
    from xcodec.dataset.store import SHARD_SCHEMA

# Resolved on first use: importing ``xcodec.dataset`` (as ``xcodec tokenize``'s argument
# parser does, via ``xcodec.dataset.cli``) must not import pyarrow, an optional extra.
_LAZY = {
    "CodecFactory": "xcodec.dataset.pipeline",
    "TokenizeOptions": "xcodec.dataset.pipeline",
    "TokenizeResult": "xcodec.dataset.pipeline",
    "load_codec": "xcodec.dataset.pipeline",
    "tokenize_corpus": "xcodec.dataset.pipeline",
    "CorpusItem": "xcodec.dataset.sources",
    "discover": "xcodec.dataset.sources",
    "SHARD_SCHEMA": "xcodec.dataset.store",
}

__all__ = [
    "SHARD_SCHEMA",
    "CodecFactory",
    "CorpusItem",
    "TokenizeOptions",
    "TokenizeResult",
    "discover",
    "load_codec",
    "read_tokens",
    "tokenize_corpus",
]


def read_tokens(out: str | os.PathLike[str]) -> Any:
    """All shards of a tokenize job as one ``pyarrow.Table`` (same as ``pq.read_table(out / "data")``)."""
    import pyarrow.parquet as pq

    return pq.read_table(os.path.join(out, "data"))


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
