"""Result dataclasses of an evaluation and their table / JSON forms."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from xcodec.metrics import CodebookUsage

__all__ = ["METRICS", "EvalReport", "FileResult", "ItemFailure", "RunReport"]

# Metric name -> (column header, "higher" or "lower" is better). The order is the table's.
METRICS: dict[str, tuple[str, str]] = {
    "mel_distance": ("mel", "lower"),
    "stft_distance": ("mrstft", "lower"),
    "si_sdr": ("SI-SDR", "higher"),
    "snr": ("SNR", "higher"),
    "mel_correlation": ("melcorr", "higher"),
    "stoi": ("STOI", "higher"),
    "pesq_wb": ("PESQwb", "higher"),
    "pesq_nb": ("PESQnb", "higher"),
    "dnsmos_sig": ("SIG", "higher"),
    "dnsmos_bak": ("BAK", "higher"),
    "dnsmos_ovrl": ("OVRL", "higher"),
    "asr_wer": ("WER", "lower"),
}


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


@dataclasses.dataclass
class FileResult:
    """Metrics of one file decoded by one configuration; None where a metric was not computed
    (perceptual metrics or ASR switched off) or is undefined (PESQ or WER without speech in the
    reference)."""

    source: str
    duration: float  # seconds of input audio
    metrics: dict[str, float | None]


@dataclasses.dataclass
class ItemFailure:
    """A file that could not be evaluated, and why."""

    source: str
    message: str


@dataclasses.dataclass
class RunReport:
    """One configuration (model, dtype, bandwidth) over all files."""

    label: str
    model: str
    dtype: str
    bandwidth: float | None
    files: list[FileResult]
    codebooks: list[CodebookUsage]  # one per codebook, pooled over files

    @property
    def mean(self) -> dict[str, float | None]:
        """Per metric, the mean over files where it is defined (None where it is nowhere)."""
        result: dict[str, float | None] = {}
        for name in METRICS:
            values = [v for f in self.files if (v := f.metrics.get(name)) is not None and math.isfinite(v)]
            result[name] = sum(values) / len(values) if values else None
        return result

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "model": self.model,
            "dtype": self.dtype,
            "bandwidth": self.bandwidth,
            "files": [
                {
                    "source": f.source,
                    "duration": f.duration,
                    "metrics": {k: _finite_or_none(v) for k, v in f.metrics.items()},
                }
                for f in self.files
            ],
            "mean": {k: _finite_or_none(v) for k, v in self.mean.items()},
            "codebooks": [dataclasses.asdict(c) for c in self.codebooks],
        }


@dataclasses.dataclass
class EvalReport:
    """What :func:`xcodec.evaluation.evaluate` returns.

    runs: one :class:`RunReport`, or two when a second configuration was compared.
    token_agreement: share of equal codes between the two runs over the files both
        encoded (None with one run).
    failures: files that could not be read or encoded, each with its message.
    """

    runs: list[RunReport]
    token_agreement: float | None
    failures: list[ItemFailure]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (non-finite numbers become null)."""
        return {
            "runs": [run.to_dict() for run in self.runs],
            "token_agreement": self.token_agreement,
            "failures": [dataclasses.asdict(f) for f in self.failures],
            "metrics": {name: {"better": better} for name, (_, better) in METRICS.items()},
        }

    def format_table(self) -> str:
        """A plain-text table: one row per file and run, then the mean of each run."""
        headers = ["file", "run"] + [header for header, _ in METRICS.values()]
        rows: list[list[str]] = []

        def cells(values: dict[str, float | None]) -> list[str]:
            return [
                "-" if (v := values.get(name)) is None or not math.isfinite(v) else f"{v:.3f}"
                for name in METRICS
            ]

        for run in self.runs:
            for f in run.files:
                rows.append([f.source, run.label, *cells(f.metrics)])
        for run in self.runs:
            rows.append(["mean", run.label, *cells(run.mean)])
        widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
        lines = [
            f"run {run.label}: {run.model or 'model'} ({run.dtype}"
            + (f", {run.bandwidth} kbps)" if run.bandwidth is not None else ")")
            for run in self.runs
        ]
        lines += ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
        for run in self.runs:
            usage = ", ".join(
                f"{c.distinct} codes ({c.usage:.1%}), {c.entropy_bits:.2f} bits" for c in run.codebooks
            )
            lines.append(f"codebook usage [{run.label}]: {usage}")
        if self.token_agreement is not None:
            lines.append(f"token agreement: {self.token_agreement:.4f}")
        for failure in self.failures:
            named = failure.message.startswith(failure.source)
            lines.append(f"failed: {failure.message if named else f'{failure.source}: {failure.message}'}")
        return "\n".join(lines)
