"""Typed dataclass configs that read and write the Transformers ``config.json`` format.

Every model config in this package is a ``@dataclass`` subclass of :class:`ConfigBase`.
Fields carry the names Transformers uses, so a ``config.json`` written by
``transformers.<Model>.save_pretrained`` loads here and ours loads there.
Keys we do not model (``architectures``, ``transformers_version``, training-only
options) are kept in ``extra`` so a load -> save round trip loses nothing.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from xcodec.errors import ConfigError

__all__ = ["ConfigBase", "ConfigError"]

C = TypeVar("C", bound="ConfigBase")


def _is_config_type(tp: Any) -> type[ConfigBase] | None:
    """Return the ConfigBase subclass a (possibly Optional) annotation names, else None."""
    if isinstance(tp, type) and issubclass(tp, ConfigBase):
        return tp
    for arg in typing.get_args(tp):
        found = _is_config_type(arg)
        if found is not None:
            return found
    return None


@dataclasses.dataclass
class ConfigBase:
    """Base of all configs: dict/JSON conversion with nested configs and unknown-key passthrough."""

    # Transformers' ``model_type`` for this config; subclasses set it.
    model_type: ClassVar[str] = ""

    extra: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any]) -> C:
        """Build a config from a Transformers-style dict.

        Nested configs (fields annotated with another ConfigBase) are built recursively.
        A ``model_type`` that disagrees with this class raises :class:`ConfigError`.
        """
        values = dict(values)
        given_type = values.pop("model_type", None)
        if given_type is not None and cls.model_type and given_type != cls.model_type:
            raise ConfigError(
                f"{cls.__name__} expects model_type {cls.model_type!r}, the config says {given_type!r}"
            )
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = dict(values.pop("extra", {}) or {})
        field_names = {f.name for f in dataclasses.fields(cls) if f.init}
        for key, value in values.items():
            if key not in field_names:
                extra[key] = value
                continue
            nested = _is_config_type(hints[key])
            if nested is not None and isinstance(value, dict):
                value = nested.from_dict(value)
            elif isinstance(value, list) and _wants_tuple(hints[key]):
                value = tuple(value)
            kwargs[key] = value
        config = cls(**kwargs)
        config.extra = extra
        return config

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict in the Transformers layout (``model_type`` included)."""
        out: dict[str, Any] = dict(self.extra)
        for field in dataclasses.fields(self):
            if field.name == "extra":
                continue
            value = getattr(self, field.name)
            if isinstance(value, ConfigBase):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[field.name] = value
        if self.model_type:
            out["model_type"] = self.model_type
        return out

    @classmethod
    def from_json_file(cls: type[C], path: str | Path) -> C:
        """Read a ``config.json``; errors name the file."""
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        if not isinstance(values, dict):
            raise ConfigError(f"config {path} does not hold a JSON object")
        try:
            return cls.from_dict(values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"config {path}: {exc}") from exc

    def to_json_file(self, path: str | Path) -> None:
        """Write the config as indented, key-sorted JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")


def _wants_tuple(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return True
    if origin is typing.Union or origin is types.UnionType:
        return any(_wants_tuple(arg) for arg in typing.get_args(tp))
    return False
