"""Where the I/O layer plugs into the data path: checkpoint loaders, savers, hub resolution.

Model classes (``xcodec.models``) and feature extractors (``xcodec.features``) do no I/O,
yet keep the Transformers-style ``from_pretrained``/``save_pretrained``. They find the
functions that do it here, by the class they are called on. :mod:`xcodec.checkpoints`
fills the table when it is imported, and the package root imports it, so
``import xcodec`` (which any ``from xcodec.models... import`` runs first) is enough.
Entries are ``"module:function"`` names, imported on first use, so registering costs
nothing (``xcodec.checkpoints`` does not import torch to register).

Layering: this module imports only :mod:`xcodec.errors`; the loaders import the models,
never the other way round (``tests/test_layering.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from xcodec.errors import XcodecError

__all__ = ["codec_loader", "codec_saver", "register_codec", "register_resolver", "resolve_location"]

# "module.Class" of a model class -> ("module:load function", "module:save function").
_CODECS: dict[str, tuple[str, str]] = {}
# "module:function" resolving a hub id or local path to a local folder or file.
_RESOLVER: list[str] = []


def register_codec(model_class: str, load: str, save: str) -> None:
    """Name the functions that load and save ``model_class`` (its ``module.QualName``).

    load(model_class, id_or_path, **options) -> model; save(model, folder) -> None.
    """
    _CODECS[model_class] = (load, save)


def register_resolver(function: str) -> None:
    """Name the function ``resolve_location`` calls (``"module:function"``)."""
    _RESOLVER[:] = [function]


def _function(name: str) -> Callable[..., Any]:
    module, _, attribute = name.partition(":")
    function: Callable[..., Any] = getattr(importlib.import_module(module), attribute)
    return function


def _entry(model_class: type) -> tuple[str, str]:
    # A subclass without an entry of its own uses its parent's (tests subclass the models).
    for klass in model_class.__mro__:
        entry = _CODECS.get(f"{klass.__module__}.{klass.__qualname__}")
        if entry is not None:
            return entry
    raise XcodecError(
        f"no checkpoint loader is registered for {model_class.__qualname__}; "
        "`import xcodec` registers those of the package (xcodec.checkpoints)"
    )


def codec_loader(model_class: type) -> Callable[..., Any]:
    """The function that loads ``model_class`` checkpoints (see :func:`register_codec`)."""
    return _function(_entry(model_class)[0])


def codec_saver(model_class: type) -> Callable[..., Any]:
    """The function that saves ``model_class`` models in the Transformers layout."""
    return _function(_entry(model_class)[1])


def resolve_location(id_or_path: Any, **hub_options: Any) -> Any:
    """A local ``pathlib.Path`` (folder or file) for a hub id or local path.

    hub_options: ``revision``, ``cache_dir``, ``local_files_only``, ``token``.
    """
    if not _RESOLVER:
        raise XcodecError("no checkpoint resolver is registered; `import xcodec` registers it")
    return _function(_RESOLVER[0])(id_or_path, **hub_options)
