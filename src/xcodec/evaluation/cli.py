"""The ``xcodec eval`` sub-command: quality metrics of a codec over audio files."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from typing import Any

from xcodec.errors import XcodecError

__all__ = ["add_eval_command"]

# What ``xcodec eval`` needs beyond the core dependencies (the ``eval`` extra).
_REQUIRED = ("pystoi", "pesq", "onnxruntime", "speechmos")
_DTYPES = ("float32", "bfloat16", "float16")

_DESCRIPTION = """\
Encode and decode each file (folders: every audio file under them) and report, per file and
on average: mel distance (log-mel L1), multi-resolution STFT distance, SI-SDR, SNR, log-mel
correlation, STOI, PESQ wide-/narrow-band, DNSMOS SIG/BAK/OVRL, and codebook usage; with
--asr also the word error rate (WER) of an offline English recogniser (PocketSphinx) on the
decoded audio against its own transcript of the input.
--against MODEL2 or --dtype runs a second configuration (B) next to the first (A, float32)
and reports token agreement. Exit status: 0 all files evaluated, 1 some failed, 2 the job
could not run.
"""


class MissingExtraError(XcodecError):
    """An optional dependency of ``xcodec eval`` is not installed; the message names the extra."""


def _require_extras() -> None:
    # find_spec, not import: speechmos's own modules import librosa, which we do not need
    # (only its bundled ONNX files are read).
    for module in _REQUIRED:
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(
                f'xcodec eval needs {module}, which is not installed: pip install "xcodec[eval]"'
            )


def add_eval_command(subparsers: Any) -> None:
    """Register ``eval`` on the ``xcodec`` command's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "eval",
        help="quality metrics of a codec over audio files",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="AUDIO_OR_DIR", help="audio files or folders")
    p.add_argument("--model", required=True, help="hub id or local checkpoint")
    p.add_argument("--bandwidth", type=float, default=None, help="kbps (X-Codec only; default: highest)")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the report as JSON")
    p.add_argument("--against", default=None, metavar="MODEL2", help="a second model to compare with")
    p.add_argument(
        "--dtype",
        choices=_DTYPES,
        default=None,
        help="dtype of the second run (B); alone, compares the model in float32 with itself in this dtype",
    )
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu)")
    p.add_argument("--no-perceptual", action="store_true", help="skip STOI, PESQ and DNSMOS (fast)")
    p.add_argument(
        "--asr",
        action="store_true",
        help='add the word error rate of an English recogniser (needs pip install "xcodec[asr]")',
    )
    p.add_argument("--offline", action="store_true", help="use only the local hub cache")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    if not args.no_perceptual:
        _require_extras()
    if args.asr and importlib.util.find_spec("pocketsphinx") is None:
        raise MissingExtraError(
            'xcodec eval --asr needs pocketsphinx, which is not installed: pip install "xcodec[asr]"'
        )
    import torch
    from tqdm import tqdm

    import xcodec
    from xcodec.evaluation.runner import evaluate, expand_inputs

    files = expand_inputs(args.inputs)  # an empty folder fails before the model loads
    offline = True if args.offline else None
    codec = xcodec.load(args.model, device=args.device, local_files_only=offline)
    against = None
    if args.against is not None or args.dtype is not None:
        dtype = getattr(torch, args.dtype or "float32")
        against = xcodec.load(
            args.against or args.model, device=args.device, dtype=dtype, local_files_only=offline
        )
    with tqdm(total=len(files) * (1 if against is None else 2), desc="evaluating", unit="file") as bar:

        def progress(line: str) -> None:
            bar.set_postfix_str(line[-60:], refresh=False)
            bar.update(1)

        report = evaluate(
            codec,
            files,
            bandwidth=args.bandwidth,
            against=against,
            perceptual=not args.no_perceptual,
            asr=args.asr,
            progress=progress,
        )
    print(report.format_table())
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    evaluated = sum(len(run.files) for run in report.runs)
    if evaluated == 0:
        return 1
    return 1 if report.failures else 0
