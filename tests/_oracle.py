"""Test-only dependencies (the oracles): skip with a reason locally, fail under CI.

``pytest.importorskip`` turns a missing or broken oracle into a silent skip, so a CI run
whose ``transformers`` install broke would pass with half its parity tests skipped. Here
the import is attempted for real (for ``transformers``, the modeling modules the tests
compare against, not only its lazy top-level package) and, when ``CI`` is set to a true
value (CI services set ``CI=true``), any failure fails the test, or the whole module at
collection, naming the dependency.

Only the packages of the ``[test]`` extra go through here; our own modules (``xcodec.*``)
are imported plainly, so a broken one is an error, never a skip.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

# For a lazy package, the submodules that must really import for the tests to mean anything.
_PROBES: dict[str, tuple[str, ...]] = {
    "transformers": (
        "transformers.models.xcodec2.modeling_xcodec2",
        "transformers.models.xcodec.modeling_xcodec",
        "transformers.models.wav2vec2_bert.modeling_wav2vec2_bert",
        "transformers.models.hubert.modeling_hubert",
        "transformers.models.wavlm.modeling_wavlm",
    ),
}
# The parity contract is with this release: another one is a broken oracle, not a pass.
_PINNED_VERSIONS = {"transformers": "5.23.0"}
_INSTALL_HINT = "pip install -e '.[test]'"


def running_in_ci() -> bool:
    """True when the ``CI`` environment variable holds a true value (``true``, ``1``, ``yes``)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def _unavailable(name: str, why: str) -> None:
    message = f"test oracle {name!r} unavailable: {why} ({_INSTALL_HINT})"
    if running_in_ci():
        pytest.fail(f"{message}; CI=true, so this fails instead of skipping", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def require_oracle(name: str) -> ModuleType:
    """Import the test dependency ``name`` (``"transformers"``, ``"kaldi_native_fbank"``, ``"pyarrow.parquet"``).

    Returns the module. Where it cannot be imported (missing, or broken: any exception
    while importing it or its probed submodules, or a version other than the pinned one)
    the calling test, or the module when called at module level, is skipped with the
    reason, or failed with it when ``CI`` is true.
    """
    package = name.partition(".")[0]
    try:
        top = importlib.import_module(package)
        for submodule in _PROBES.get(package, ()):
            importlib.import_module(submodule)
        module = importlib.import_module(name)
    except Exception as exc:  # a broken install raises anything, not only ImportError
        _unavailable(name, f"import failed with {type(exc).__name__}: {exc}")
        raise  # unreachable (skip and fail raise); tells readers `module` is always bound
    pinned = _PINNED_VERSIONS.get(package)
    version = getattr(top, "__version__", None)
    if pinned is not None and version != pinned:
        _unavailable(name, f"{package} {version} installed, the parity tests are pinned to {pinned}")
    return module
