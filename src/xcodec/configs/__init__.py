"""Typed configs for every model in the package (see :mod:`xcodec.configs.base`)."""

from xcodec.configs.base import ConfigBase, ConfigError

__all__ = ["ConfigBase", "ConfigError"]
