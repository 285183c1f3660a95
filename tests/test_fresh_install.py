"""``import xcodec`` and the ``xcodec`` command need only the core dependencies.

Each check runs in a fresh interpreter where the optional packages are made unimportable
(``sys.modules[name] = None`` makes ``import name`` raise ImportError), as on a machine
where only ``pip install xcodec`` ran. The fresh-venv main job in .ci/run covers the same
ground end to end with a real install.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

# Extras (pyproject optional-dependencies) and test-only packages: never needed at start-up.
OPTIONAL = ("pyarrow", "datasets", "ray", "yaml", "pandas", "transformers", "kaldi_native_fbank", "einx")

_PRELUDE = f"""
import sys
OPTIONAL = {OPTIONAL!r}
for name in OPTIONAL:
    sys.modules[name] = None
"""


def run_blocked(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _PRELUDE + code], capture_output=True, text=True, timeout=300, check=False
    )


def test_import_and_parser_use_no_optional_package() -> None:
    result = run_blocked(
        """
import xcodec, xcodec.cli, xcodec.dataset, xcodec.dataset.cli
xcodec.cli.build_parser()
loaded = sorted(m for m in sys.modules if m.split(".")[0] in OPTIONAL and sys.modules[m] is not None)
print("loaded:", loaded)
"""
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loaded: []" in result.stdout, result.stdout


@pytest.mark.parametrize("argv", [["--help"], ["tokenize", "--help"], ["encode", "--help"]])
def test_help_without_extras(argv: list[str]) -> None:
    result = run_blocked(f"from xcodec.cli import main\nsys.argv = ['xcodec', *{argv!r}]\nmain()")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "usage: xcodec" in result.stdout


def test_tokenize_without_pyarrow_names_the_extra(tmp_path: object) -> None:
    result = run_blocked(
        f"from xcodec.cli import main\nsys.exit(main(['tokenize', 'corpus', '--out', {str(tmp_path)!r}]))"
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines == [
        'error: xcodec tokenize needs pyarrow, which is not installed: pip install "xcodec[dataset]"'
    ]


def test_dtype_names_match_the_pipeline() -> None:
    pytest.importorskip("pyarrow")
    from xcodec.dataset.cli import DTYPE_NAMES
    from xcodec.dataset.pipeline import DTYPES

    assert sorted(DTYPE_NAMES) == sorted(DTYPES)
