"""Codec evaluation: run a codec over audio files and report quality metrics (``xcodec eval``).

>>> codec = xcodec.load("path/to/checkpoint")                       # doctest: +SKIP
>>> report = xcodec.evaluation.evaluate(codec, ["speech.flac"])    # doctest: +SKIP
>>> print(report.format_table())                                  # doctest: +SKIP

The metric functions themselves live in :mod:`xcodec.metrics`.
"""

from xcodec.evaluation.report import METRICS, EvalReport, FileResult, ItemFailure, RunReport
from xcodec.evaluation.runner import evaluate, expand_inputs, score

__all__ = [
    "METRICS",
    "EvalReport",
    "FileResult",
    "ItemFailure",
    "RunReport",
    "evaluate",
    "expand_inputs",
    "score",
]
