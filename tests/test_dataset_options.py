"""``xcodec tokenize``'s options are kept in one place: TokenizeOptions' fields and defaults.

The command line reads each default from the field and builds the options field by field,
so a new field without a flag, or a flag whose default drifts, fails here.
"""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from xcodec.dataset.cli import add_tokenize_command, options_from_args
from xcodec.dataset.job import TokenizeOptions


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_tokenize_command(parser.add_subparsers())
    return parser.parse_args(["tokenize", *argv])


def test_command_line_defaults_are_the_fields_defaults() -> None:
    parsed = options_from_args(_parse("corpus/", "--out", "shards/", "--num-workers", "1"))
    assert parsed == TokenizeOptions(input="corpus/", out="shards/")


def test_every_field_is_set_from_its_flag() -> None:
    args = _parse(
        "corpus/", "--out", "shards/", "--model", "m", "--device", "cpu", "--devices", "cuda:0, cuda:1",
        "--dtype", "bfloat16", "--batch-seconds", "7", "--num-workers", "3", "--shard-size", "5",
        "--bandwidth", "2", "--engine", "ray", "--input-format", "csv", "--extensions", "WAV,.flac",
        "--root", "r", "--path-column", "p", "--id-column", "i", "--audio-column", "a", "--split", "s",
        "--keep-columns", "x, y", "--retry-errors", "--overwrite", "--no-progress", "--offline",
        "--ray-address", "ray://h", "--ray-actors", "2", "--ray-gpus-per-actor", "0.5",
        "--ray-cpus-per-actor", "2", "--ray-batch-size", "4",
    )  # fmt: skip
    options = options_from_args(args)
    defaults = TokenizeOptions(input="corpus/", out="shards/")
    unchanged = [f.name for f in dataclasses.fields(TokenizeOptions) if f.name not in ("input", "out")]
    unchanged = [name for name in unchanged if getattr(options, name) == getattr(defaults, name)]
    assert unchanged == [], f"fields the command line does not set: {unchanged}"
    assert options.devices == ["cuda:0", "cuda:1"] and options.extensions == (".wav", ".flac")
    assert options.keep_columns == ["x", "y"] and options.progress is False


def test_a_field_without_a_flag_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclasses.dataclass
    class Extended(TokenizeOptions):
        new_option: int = 0

    monkeypatch.setattr("xcodec.dataset.cli.TokenizeOptions", Extended)
    with pytest.raises(AttributeError, match="new_option"):
        options_from_args(_parse("corpus/", "--out", "shards/"))
