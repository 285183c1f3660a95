"""The test suite's tiny configs and checkpoints (tests/_tiny.py) for the ``--tiny`` runs: one definition.

The bench scripts run from bench/ (``python bench/bench_codecs.py``), where tests/ is not
importable, and tests/_tiny.py shares this module's name; so the file is loaded by path
under a name of its own and its public names are re-exported.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_TESTS_TINY = Path(__file__).resolve().parents[1] / "tests" / "_tiny.py"
_MODULE_NAME = "xcodec_tests_tiny"


def _load() -> ModuleType:
    if _MODULE_NAME in sys.modules:
        return sys.modules[_MODULE_NAME]
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, _TESTS_TINY)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the tiny test configs from {_TESTS_TINY}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module


_tiny = _load()
TINY_XCODEC2 = _tiny.TINY_XCODEC2
tiny_xcodec2_dict = _tiny.tiny_xcodec2_dict
tiny_xcodec_dict = _tiny.tiny_xcodec_dict
save_tiny_xcodec2 = _tiny.save_tiny_xcodec2

__all__ = ["TINY_XCODEC2", "save_tiny_xcodec2", "tiny_xcodec2_dict", "tiny_xcodec_dict"]
