"""Training recipes: typed dataclasses read from YAML, with ``--set key=value`` overrides.

A recipe is data (STYLE.md "Training code"): the loss weights, optimiser, schedule,
discriminator widths and what to freeze live in ``recipes/<name>.yaml`` inside the package,
not in code. The values of ``xcodec2.yaml`` are the original X-Codec-2.0 recipe
(zhenye234/X-Codec-2.0 ``config/train/default.yaml`` and ``config/model/default.yaml``).

A recipe file may name another as ``base: NAME_OR_PATH``; its keys are merged over the base
(dicts key by key, everything else replaced), so ``xcodec2-decoder.yaml`` only lists what a
decoder-only fine-tune changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.resources
import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from xcodec.errors import ConfigError

__all__ = [
    "DiscriminatorConfig",
    "LossWeights",
    "MelLossConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainRecipe",
    "apply_overrides",
    "autocast_dtype",
    "available_recipes",
    "load_recipe",
    "lr_at",
    "recipe_from_dict",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Recipe key ``fsq_input_norm``: "scratch" turns it on only when the run starts from
# re-drawn weights (a published checkpoint's digits are not standardised, so normalising
# them would change its codes at step 0).
FSQ_INPUT_NORM_MODES = ("off", "on", "scratch")


@dataclasses.dataclass
class LossWeights:
    """Weight of each generator loss term (original: mel 15, adversarial 1, feature matching 1, semantic 5).

    FSQ has no codebook, so there is no commitment loss. The discriminator loss has weight 1.
    ``fsq_drift`` is not in the original: with ``fsq_input_norm`` on, the weight of the
    penalty that keeps the raw FSQ input digits near zero mean and unit spread
    (:class:`~xcodec.train.fsq_norm.FsqInputNorm`; issue 12; no effect when off).
    """

    mel: float = 15.0
    adv: float = 1.0
    fm: float = 1.0
    semantic: float = 5.0
    fsq_drift: float = 0.0


@dataclasses.dataclass
class MelLossConfig:
    """Scales of :class:`~xcodec.train.losses.MultiScaleMelLoss`: one (n_mels, window) pair per scale, hop = window / 4."""

    n_mels: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)
    windows: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)


@dataclasses.dataclass
class OptimizerConfig:
    """AdamW for the generator and for the discriminators alike (learning rate from :class:`ScheduleConfig`).

    ``weight_decay`` 0.01 is ``torch.optim.AdamW``'s default, which the original keeps.
    """

    betas: tuple[float, float] = (0.8, 0.9)
    weight_decay: float = 0.01
    eps: float = 1e-8


@dataclasses.dataclass
class ScheduleConfig:
    """The original ``WarmupLR``: quadratic warm-up, linear decay, then constant.

    ``initial_lr`` + (``peak_lr`` - ``initial_lr``) * (step / ``warmup_steps``)^2 up to
    ``warmup_steps``; then a straight line from ``peak_lr`` to ``final_lr`` over
    ``decay_steps`` (None: over the rest of ``max_steps``); ``final_lr`` after that.
    """

    initial_lr: float = 1e-5
    peak_lr: float = 1e-4
    final_lr: float = 2e-5
    warmup_steps: int = 3000
    decay_steps: int | None = 400_000


@dataclasses.dataclass
class DiscriminatorConfig:
    """Widths and scales of the HiFi-GAN multi-period and the multi-resolution STFT discriminators.

    Defaults are the original's (``mpd`` and ``mstft`` in its model config).
    """

    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    mpd_channels: int = 16
    mpd_max_channels: int = 512
    mpd_channel_factor: int = 4
    fft_sizes: tuple[int, ...] = (78, 126, 206, 334, 542, 876, 1418, 2296)
    hop_sizes: tuple[int, ...] = (39, 63, 103, 167, 271, 438, 709, 1148)
    win_lengths: tuple[int, ...] = (78, 126, 206, 334, 542, 876, 1418, 2296)
    stft_channels: int = 32
    stft_max_channels: int = 512


@dataclasses.dataclass
class TrainRecipe:
    """Everything a training run needs besides its data, initial weights and output folder.

    model: ``Xcodec2Config`` fields (``config.json`` layout, nested dicts allowed) to build
        the generator with; applied over the ``--init`` checkpoint's config when one is
        given (only shape-free fields make sense then), the whole config when training from
        scratch. None: the ``--init`` config unchanged.
    freeze: generator parts whose weights stay fixed (see
        :data:`xcodec.train.generator.FREEZE_GROUPS`); the frozen W2V-BERT encoder is always
        frozen and need not be listed.
    gan_start_step: steps trained on the mel and semantic losses only (no discriminator
        step, no adversarial or feature-matching term) before the GAN losses start.
    precision: "auto" (bf16 autocast on CUDA, fp32 on CPU), "fp32", "bf16" or "fp16".
    max_steps: total generator steps; also the end of the decay when
        ``schedule.decay_steps`` is None.
    fsq_input_norm: "on", "off" or "scratch" (on only when training from scratch):
        standardise each FSQ input digit over the batch while training, the fix for the
        code collapse of issue 12 (:mod:`xcodec.train.fsq_norm`; folded into the checkpoint,
        so inference math is unchanged). Not in the original recipe: "off" reproduces it.
    fsq_input_norm_momentum: weight of each batch in the normalisation's running statistics.
    """

    name: str = "custom"
    model: dict[str, Any] | None = None
    loss_weights: LossWeights = dataclasses.field(default_factory=LossWeights)
    mel_loss: MelLossConfig = dataclasses.field(default_factory=MelLossConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    discriminators: DiscriminatorConfig = dataclasses.field(default_factory=DiscriminatorConfig)
    grad_clip: float = 1.0
    gan_start_step: int = 0
    max_steps: int = 3_000_000
    segment_seconds: float = 6.0
    batch_size: int = 8
    sample_rate: int = 16000
    freeze: tuple[str, ...] = ()
    precision: str = "auto"
    seed: int = 0
    fsq_input_norm: str = "off"
    fsq_input_norm_momentum: float = 0.1

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"recipe key 'precision' must be one of {PRECISIONS}, not {self.precision!r}")
        if self.fsq_input_norm not in FSQ_INPUT_NORM_MODES:
            raise ConfigError(
                f"recipe key 'fsq_input_norm' must be one of {FSQ_INPUT_NORM_MODES}, not {self.fsq_input_norm!r}"
            )
        if not 0.0 < self.fsq_input_norm_momentum <= 1.0:
            raise ConfigError(
                f"recipe key 'fsq_input_norm_momentum' must be in (0, 1], not {self.fsq_input_norm_momentum}"
            )
        if len(self.mel_loss.n_mels) != len(self.mel_loss.windows):
            raise ConfigError(
                f"recipe keys 'mel_loss.n_mels' ({len(self.mel_loss.n_mels)} values) and "
                f"'mel_loss.windows' ({len(self.mel_loss.windows)}) must have the same length"
            )
        disc = self.discriminators
        if not len(disc.fft_sizes) == len(disc.hop_sizes) == len(disc.win_lengths):
            raise ConfigError(
                "recipe keys 'discriminators.fft_sizes', 'hop_sizes' and 'win_lengths' must have the same length"
            )
        for key, value in (
            ("max_steps", self.max_steps),
            ("batch_size", self.batch_size),
            ("sample_rate", self.sample_rate),
            ("schedule.warmup_steps", self.schedule.warmup_steps),
        ):
            if value < (0 if key == "schedule.warmup_steps" else 1):
                raise ConfigError(f"recipe key {key!r} must be positive, got {value}")
        if self.segment_seconds <= 0:
            raise ConfigError(f"recipe key 'segment_seconds' must be positive, got {self.segment_seconds}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists) that :func:`recipe_from_dict` reads back; what a run writes as YAML."""
        return _plain(dataclasses.asdict(self))


def autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for a recipe's ``precision`` on ``device``; None: run in float32.

    "auto" is bf16 on CUDA (the original trains in 16-bit mixed precision) and float32
    elsewhere (CPU autocast is slower than float32 on most CPUs). "bf16"/"fp16" on the CPU
    are honoured as asked.
    """
    device_type = torch.device(device).type
    if precision == "auto":
        return torch.bfloat16 if device_type == "cuda" else None
    if precision not in PRECISIONS:
        raise ConfigError(f"recipe key 'precision' must be one of {PRECISIONS}, not {precision!r}")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def lr_at(step: int, recipe: TrainRecipe) -> float:
    """Learning rate at optimiser step ``step`` (0-based) of ``recipe``'s schedule (see :class:`ScheduleConfig`).

    The original's ``LambdaLR`` with base lr 1: 1e-5 at step 0, 1e-4 at ``warmup_steps``,
    2e-5 at ``warmup_steps + decay_steps`` and after.
    """
    schedule = recipe.schedule
    warmup = schedule.warmup_steps
    decay = schedule.decay_steps
    if decay is None:
        decay = max(recipe.max_steps - warmup, 1)
    if step < warmup:
        return schedule.initial_lr + (schedule.peak_lr - schedule.initial_lr) * (step / warmup) ** 2
    if step < warmup + decay:
        fraction = (step - warmup) / decay
        return schedule.peak_lr + (schedule.final_lr - schedule.peak_lr) * fraction
    return schedule.final_lr


# ---------------------------------------------------------------------------- loading


def available_recipes() -> list[str]:
    """Names of the recipes shipped in ``xcodec/train/recipes/``."""
    folder = importlib.resources.files("xcodec.train") / "recipes"
    return sorted(entry.name[: -len(".yaml")] for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def load_recipe(name_or_path: str, overrides: Sequence[str] = ()) -> TrainRecipe:
    """A recipe by package name (``xcodec2``, ``xcodec2-decoder``, ``tiny``, ...) or YAML path, with overrides.

    overrides: ``"key=value"`` strings with dotted keys (``loss_weights.mel=10``,
    ``schedule.decay_steps=null``, ``freeze=[encoder]``, ``model.hidden_size=128``); each
    value is read as YAML and checked against the field's type. An unknown key, a value of
    the wrong type or an unknown recipe raises :class:`~xcodec.errors.ConfigError` naming it.
    """
    values = _read_recipe_file(name_or_path, seen=())
    values.setdefault("name", Path(name_or_path).stem if _looks_like_path(name_or_path) else name_or_path)
    apply_overrides(values, overrides)
    return recipe_from_dict(values)


def apply_overrides(values: dict[str, Any], overrides: Sequence[str]) -> None:
    """Set each ``"dotted.key=value"`` of ``overrides`` in the nested dict ``values``, in place.

    Keys are checked against :class:`TrainRecipe` here, so the error names the override as typed.
    """
    yaml = _yaml()
    for override in overrides:
        key, sep, text = override.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {override!r} is not of the form key=value")
        _check_key(key)
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as error:
            raise ConfigError(f"override {key!r}: value {text!r} is not valid YAML ({error})") from None
        target = values
        parts = key.split(".")
        for part in parts[:-1]:
            existing = target.get(part)
            if not isinstance(existing, dict):
                existing = {}
                target[part] = existing
            target = existing
        target[parts[-1]] = value


def recipe_from_dict(values: Mapping[str, Any]) -> TrainRecipe:
    """Build a :class:`TrainRecipe` from a nested dict, checking every key and value type."""
    return _build(TrainRecipe, values, prefix="")


def _looks_like_path(name_or_path: str) -> bool:
    return name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path or Path(name_or_path).is_file()


def _read_recipe_file(name_or_path: str, seen: tuple[str, ...]) -> dict[str, Any]:
    if name_or_path in seen:
        raise ConfigError(f"recipe {name_or_path!r} names itself as a base (chain: {' -> '.join(seen)})")
    yaml = _yaml()
    if _looks_like_path(name_or_path):
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"recipe file {name_or_path!r} does not exist")
        text = path.read_text(encoding="utf-8")
        where = str(path)
    else:
        resource = importlib.resources.files("xcodec.train") / "recipes" / f"{name_or_path}.yaml"
        if not resource.is_file():
            raise ConfigError(
                f"unknown recipe {name_or_path!r}: use one of {available_recipes()} or a path to a YAML file"
            )
        text = resource.read_text(encoding="utf-8")
        where = f"recipe {name_or_path!r}"
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{where} is not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must hold a mapping of recipe keys, not {type(values).__name__}")
    base = values.pop("base", None)
    if base is None:
        return values
    merged = _read_recipe_file(str(base), (*seen, name_or_path))
    merged.pop("name", None)
    _merge(merged, values)
    return merged


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "model":
            _merge(base[key], value)
        elif key == "model" and isinstance(value, dict) and isinstance(base.get(key), dict):
            # Model overrides merge too (a fine-tune recipe may change one field of its base).
            merged = dict(base[key])
            merged.update(value)
            base[key] = merged
        else:
            base[key] = value


def _yaml() -> Any:
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is a dependency of the train extra
        raise ConfigError('reading a training recipe needs PyYAML: pip install "xcodec[train]"') from None
    return yaml


def _check_key(key: str) -> None:
    cls: Any = TrainRecipe
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if cls is dict:
            return  # inside ``model``: Xcodec2Config checks its own keys when it is built
        hints = typing.get_type_hints(cls)
        if part not in hints:
            raise ConfigError(f"unknown recipe key {key!r} ({'.'.join(parts[: depth + 1])!r} is not a field)")
        cls = _dataclass_or_dict(hints[part])
        if cls is None and depth < len(parts) - 1:
            raise ConfigError(f"unknown recipe key {key!r} ({part!r} has no sub-keys)")


def _dataclass_or_dict(hint: Any) -> Any:
    for candidate in (hint, *typing.get_args(hint)):
        if dataclasses.is_dataclass(candidate):
            return candidate
        if candidate is dict or typing.get_origin(candidate) is dict:
            return dict
    return None


def _build(cls: Any, values: Any, prefix: str) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"recipe key {prefix.rstrip('.') or '(top)'!r} must be a mapping, not {values!r}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(f"unknown recipe key {prefix + str(key)!r}")
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` as type ``hint``, or a ConfigError naming ``key``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [arg for arg in args if arg is not type(None)]
        return _coerce(value, non_none[0], key)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".")
    if hint is Any:
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"recipe key {key!r} must be a mapping, not {value!r}")
        return dict(value)
    if origin is tuple:
        if isinstance(value, str):
            value = [value]  # freeze=encoder is taken as freeze=[encoder]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"recipe key {key!r} must be a list, not {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(item, args[0], f"{key}[{i}]") for i, item in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"recipe key {key!r} must have {len(args)} values, not {len(value)}")
        return tuple(
            _coerce(item, arg, f"{key}[{i}]") for i, (item, arg) in enumerate(zip(value, args, strict=True))
        )
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"recipe key {key!r} must be true or false, not {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise ConfigError(f"recipe key {key!r} must be an integer, not {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, str):
            # YAML 1.1 reads "1e-4" (no dot) as a string; accept any float literal.
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"recipe key {key!r} must be a finite number, not {value!r}")
        return float(value)
    if hint is str:
        if isinstance(value, bool):
            # YAML 1.1 reads a bare on/off (``--set fsq_input_norm=on``) as a boolean.
            value = "on" if value else "off"
        if not isinstance(value, str):
            raise ConfigError(f"recipe key {key!r} must be a string, not {value!r}")
        return value
    raise TypeError(f"recipe field {key!r} has a type the loader does not handle: {hint!r}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
