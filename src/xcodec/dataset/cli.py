"""Placeholder until the tokenizer lands: registers `xcodec tokenize`."""

from __future__ import annotations

import argparse
from typing import Any


def add_tokenize_command(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser("tokenize", help="tokenize a corpus into Parquet shards")
    p.set_defaults(func=lambda args: 2)
