"""The codec benchmark harness (bench/bench_codecs.py) end to end at tiny scale, and its report helpers."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _oracle import require_oracle

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench" / "bench_codecs.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_codecs", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_codecs"] = module
    spec.loader.exec_module(module)
    return module


def _table_rows(report: str, heading: str) -> list[list[str]]:
    """Data rows of the markdown table that follows the heading starting with ``heading``."""
    section = report.split(heading, 1)[1]
    rows: list[list[str]] = []
    for line in section.splitlines()[2:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if not set(cells[0]) <= {"-"}:
            rows.append(cells)
    return rows[1:]  # drop the header row


def test_tiny_run_reports_both_implementations(tmp_path: Path) -> None:
    require_oracle("transformers")
    output = tmp_path / "RESULTS.md"
    output.write_text("# Results\n\nanother benchmark's section\n")
    command = [
        sys.executable,
        str(BENCH),
        "--tiny",
        "--runs",
        "1",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--output",
        str(output),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = output.read_text()
    assert "another benchmark's section" in report
    assert report.count("<!-- bench_codecs:start -->") == 1
    assert "SMOKE TEST ONLY" in report
    for title in ("X-Codec2", "X-Codec"):
        times = _table_rows(report, f"### {title}: wall time")
        assert len(times) == 2  # encode and decode of the one tiny size
        for op, _size, ref_default, ref_tuned, ours, *_ in times:
            # Every cell a timing "median (min-max)", never "failed (...)" or "not run".
            for cell in (ref_default, ref_tuned, ours):
                assert re.fullmatch(r"[0-9.]+ \([0-9.]+-[0-9.]+\)", cell), (title, op, cell)
        checks = _table_rows(report, f"### {title}: memory, efficiency, exactness")
        header = report.split(f"### {title}: memory, efficiency, exactness", 1)[1].splitlines()[2]
        assert "codes equal" in header
        encode = next(row for row in checks if row[0] == "encode")
        assert encode[-2] == "yes", encode  # same weights, same input: same codes
        assert float(encode[6]) > 0  # the reference's FLOPs were counted


def test_compare_codes_counts_differences() -> None:
    bench = _load_bench()
    reference = np.arange(12).reshape(1, 1, 12)
    assert bench.compare_codes(reference.copy(), reference) == "yes"
    changed = reference.copy()
    changed[0, 0, [2, 7]] += 1
    assert bench.compare_codes(changed, reference) == "no (2 of 12 differ)"
    assert bench.compare_codes(reference[..., :5], reference).startswith("no (shape")
    assert bench.compare_codes(None, reference) == "-"


def test_replace_section_keeps_other_content(tmp_path: Path) -> None:
    bench = _load_bench()
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\n## Tokenizer\nkeep me\n")
    bench.replace_section(path, "main", ["first main"])
    bench.replace_section(path, "long", ["long table"])
    bench.replace_section(path, "main", ["second main"])
    text = path.read_text()
    assert "keep me" in text and "long table" in text and "second main" in text
    assert "first main" not in text
    assert text.count("<!-- bench_codecs:main:start -->") == 1
    # Sub-sections sit inside the one bench_codecs section.
    inner = text.split("<!-- bench_codecs:start -->", 1)[1].split("<!-- bench_codecs:end -->", 1)[0]
    assert "long table" in inner and "second main" in inner and "keep me" not in inner


def test_snr_and_long_prediction() -> None:
    bench = _load_bench()
    signal = np.sin(np.linspace(0, 20, 1000))
    assert bench.snr_db(signal, signal) == float("inf")
    assert abs(bench.snr_db(signal, 1.1 * signal) - 20.0) < 1e-9  # noise = 0.1 x signal
    # Above the resident weights (1000 MB), quadratic growth is extrapolated as quadratic,
    # linear as linear, and faster-than-quadratic is clamped to quadratic.
    quadratic = [(60.0, 1100.0, 1000.0), (120.0, 1400.0, 1000.0)]
    assert bench._predict_peak(quadratic, 240.0) == pytest.approx(1000.0 + 1600.0)
    linear = [(60.0, 1100.0, 1000.0), (120.0, 1200.0, 1000.0)]
    assert bench._predict_peak(linear, 240.0) == pytest.approx(1000.0 + 400.0)
    steep = [(60.0, 1010.0, 1000.0), (120.0, 1400.0, 1000.0)]
    assert bench._predict_peak(steep, 240.0) == pytest.approx(1000.0 + 1600.0)
    assert bench._predict_peak(linear[:1], 240.0) is None
