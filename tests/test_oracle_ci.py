"""The oracle guard (tests/_oracle.py): under ``CI=true`` a missing or broken oracle fails, naming it.

Each case runs pytest in a subprocess whose ``transformers`` is shadowed by a stand-in
that raises on import (missing: ``ImportError``; broken: another exception). Without
``CI`` the dependent tests skip with the reason; with ``CI=true`` the run fails and
says which oracle. One case collects a real parity file, so the guard is proven where
it is used, not only in a toy module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent

_MODULE_LEVEL = """
from _oracle import require_oracle

transformers = require_oracle("transformers")


def test_uses_the_oracle():
    assert transformers is not None
"""

_IN_A_TEST = """
from _oracle import require_oracle


def test_uses_the_oracle():
    require_oracle("transformers")


def test_needs_no_oracle():
    assert True
"""


def _run_pytest(
    tmp_path: Path, targets: list[str], *, ci: bool, stand_in: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """pytest in a subprocess with ``transformers`` replaced by ``stand_in`` (a module's source)."""
    shadow = tmp_path / "shadow"
    shadow.mkdir(exist_ok=True)
    (shadow / "transformers.py").write_text(stand_in)
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    if ci:
        env["CI"] = "true"
    # The shadow comes first so `import transformers` finds the stand-in; tests/ for _oracle.
    env["PYTHONPATH"] = os.pathsep.join([str(shadow), str(TESTS_DIR), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *targets]
    return subprocess.run(
        command, cwd=cwd or tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )


MISSING = 'raise ImportError("transformers is blocked by test_oracle_ci")\n'
BROKEN = 'raise RuntimeError("transformers install is broken (test_oracle_ci)")\n'


@pytest.mark.parametrize("source", [_MODULE_LEVEL, _IN_A_TEST], ids=["module-level", "in-a-test"])
@pytest.mark.parametrize("stand_in", [MISSING, BROKEN], ids=["missing", "broken"])
def test_missing_oracle_skips_locally_and_fails_under_ci(tmp_path: Path, source: str, stand_in: str) -> None:
    (tmp_path / "test_guarded.py").write_text(source)

    local = _run_pytest(tmp_path, ["test_guarded.py"], ci=False, stand_in=stand_in)
    local_output = local.stdout + local.stderr
    assert local.returncode in (0, 5), local_output  # 5: a module-level skip leaves no tests
    summary = local_output.strip().splitlines()[-1]  # "1 skipped in 0.7s", "1 passed, 1 skipped in ..."
    assert "skipped" in summary and "failed" not in summary and "error" not in summary, local_output
    assert "test oracle 'transformers' unavailable" in local_output, local_output

    under_ci = _run_pytest(tmp_path, ["test_guarded.py"], ci=True, stand_in=stand_in)
    ci_output = under_ci.stdout + under_ci.stderr
    assert under_ci.returncode != 0, ci_output
    assert "test oracle 'transformers' unavailable" in ci_output, ci_output
    assert "CI=true" in ci_output, ci_output
    if source is _IN_A_TEST:
        # Only the test that needs the oracle fails; the other still runs and passes.
        assert "1 failed, 1 passed" in ci_output, ci_output
    else:
        summary = ci_output.strip().splitlines()[-1]
        assert "1 error" in summary and "skipped" not in summary, ci_output  # a collection error


def test_real_parity_module_fails_collection_under_ci(tmp_path: Path) -> None:
    """tests/test_xcodec2_checkpoint.py with transformers blocked: a collection error naming it."""
    target = str(TESTS_DIR / "test_xcodec2_checkpoint.py")
    under_ci = _run_pytest(
        tmp_path, ["--collect-only", target], ci=True, stand_in=MISSING, cwd=TESTS_DIR.parent
    )
    output = under_ci.stdout + under_ci.stderr
    assert under_ci.returncode != 0, output
    assert "test oracle 'transformers' unavailable" in output, output

    local = _run_pytest(
        tmp_path, ["--collect-only", target], ci=False, stand_in=MISSING, cwd=TESTS_DIR.parent
    )
    output = local.stdout + local.stderr
    assert local.returncode == 5 or "skipped" in output, output  # 5: nothing collected (module skipped)
    assert "test oracle 'transformers' unavailable" in output, output


def test_installed_oracles_pass_the_guard() -> None:
    """Here (and in CI) the real oracles import, at the pinned transformers version."""
    from _oracle import require_oracle

    transformers = require_oracle("transformers")
    assert transformers.__version__ == "5.23.0"
    for name in ("kaldi_native_fbank", "einx"):
        assert require_oracle(name).__name__ == name
