"""``xcodec train``: the command line of :func:`xcodec.train.loop.train`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_train_command"]


def add_train_command(subparsers: Any) -> None:
    """Register ``xcodec train`` on the CLI's sub-parsers."""
    p = subparsers.add_parser(
        "train",
        help="train or fine-tune an X-Codec2 model (recipe, init weights, data, run folder)",
        description="Train or fine-tune an X-Codec2 model; rerun the same command to resume from RUN_DIR.",
    )
    p.add_argument(
        "--recipe", required=True, help="recipe name (xcodec2, xcodec2-decoder, tiny, ...) or YAML path"
    )
    p.add_argument(
        "--init",
        default=None,
        help="starting weights: hub id or folder (Transformers or original layout), Lightning .ckpt, "
        "or config.json (from scratch); omitted: from scratch with the recipe's model config",
    )
    p.add_argument(
        "--data",
        required=True,
        help="what `xcodec tokenize` reads: folder, glob, manifest, datasets, Parquet",
    )
    p.add_argument("--out", type=Path, required=True, help="RUN_DIR: metrics, checkpoints, last/")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="global batch (all processes together)")
    p.add_argument("--segment-seconds", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda if available)")
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override (repeatable)"
    )
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from xcodec.errors import XcodecError
    from xcodec.train.loop import TrainOptions, train
    from xcodec.train.recipe import load_recipe

    overrides = list(args.set)
    for key, value in (
        ("max_steps", args.max_steps),
        ("batch_size", args.batch_size),
        ("segment_seconds", args.segment_seconds),
        ("seed", args.seed),
    ):
        if value is not None:
            overrides.append(f"{key}={value}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        recipe = load_recipe(args.recipe, overrides)
        options = TrainOptions(
            data=args.data,
            out=args.out,
            init=args.init,
            device=device,
            save_every=args.save_every,
            eval_every=args.eval_every,
        )
        train(recipe, options)
    except XcodecError as exc:
        print(f"xcodec train: {exc}", file=sys.stderr)
        return 2
    return 0
