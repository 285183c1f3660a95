"""xcodec: native PyTorch X-Codec and X-Codec2, audio to discrete tokens and back.

Quick start::

    import xcodec
    codec = xcodec.load("HKUSTAudio/xcodec2-hf")
    codes = codec.encode(["a.wav"])
    audio = codec.decode(codes)

The package root is lazy (PEP 562): ``import xcodec`` loads neither torch nor a model
module; each public name is imported from its module on first use. So
``xcodec.load(onnx_export_folder)`` runs on onnxruntime in a process without torch
(:mod:`xcodec.onnx.runtime`).
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any, cast

# Registers each codec's checkpoint loader and saver (xcodec.registry), which the model
# classes' from_pretrained/save_pretrained look up. It names functions without importing
# them, so it loads no torch: keep it in the lazy root.
import xcodec.checkpoints  # noqa: F401

if TYPE_CHECKING:
    from xcodec.api import BatchError, Codec, ItemError
    from xcodec.auto import AutoFeatureExtractor, AutoModel
    from xcodec.base import CodecModel, DetokenizeResult, TokenizeResult
    from xcodec.configs.distill_neucodec import DistillNeuCodecConfig
    from xcodec.configs.neucodec import NeuCodecConfig
    from xcodec.configs.ssl import HubertConfig, WavLMConfig
    from xcodec.configs.w2v_bert import Wav2Vec2BertConfig
    from xcodec.configs.xcodec import XcodecConfig
    from xcodec.configs.xcodec2 import Xcodec2Config
    from xcodec.errors import ArgumentError, AudioError, CheckpointError, ConfigError, XcodecError
    from xcodec.evaluation import EvalReport, evaluate
    from xcodec.features import NeuCodecFeatureExtractor, Xcodec2FeatureExtractor, XcodecFeatureExtractor
    from xcodec.models.distill_neucodec import DistillNeuCodecModel
    from xcodec.models.neucodec import NeuCodecModel
    from xcodec.models.xcodec import XcodecModel
    from xcodec.models.xcodec2 import Xcodec2Model
    from xcodec.onnx.runtime import OnnxCodec
    from xcodec.runtime import RuntimeOptions

__version__ = "0.1.0"

# Public name -> the module that defines it (imported on first access).
_LAZY: dict[str, str] = {
    "ArgumentError": "xcodec.errors",
    "AudioError": "xcodec.errors",
    "AutoFeatureExtractor": "xcodec.auto",
    "AutoModel": "xcodec.auto",
    "BatchError": "xcodec.errors",
    "CheckpointError": "xcodec.errors",
    "Codec": "xcodec.api",
    "CodecModel": "xcodec.base",
    "ConfigError": "xcodec.errors",
    "DetokenizeResult": "xcodec.base",
    "DistillNeuCodecConfig": "xcodec.configs.distill_neucodec",
    "DistillNeuCodecModel": "xcodec.models.distill_neucodec",
    "EvalReport": "xcodec.evaluation",
    "HubertConfig": "xcodec.configs.ssl",
    "ItemError": "xcodec.errors",
    "NeuCodecConfig": "xcodec.configs.neucodec",
    "NeuCodecFeatureExtractor": "xcodec.features",
    "NeuCodecModel": "xcodec.models.neucodec",
    "OnnxCodec": "xcodec.onnx.runtime",
    "RuntimeOptions": "xcodec.runtime",
    "TokenizeResult": "xcodec.base",
    "Wav2Vec2BertConfig": "xcodec.configs.w2v_bert",
    "WavLMConfig": "xcodec.configs.ssl",
    "Xcodec2Config": "xcodec.configs.xcodec2",
    "Xcodec2FeatureExtractor": "xcodec.features",
    "Xcodec2Model": "xcodec.models.xcodec2",
    "XcodecConfig": "xcodec.configs.xcodec",
    "XcodecError": "xcodec.errors",
    "XcodecFeatureExtractor": "xcodec.features",
    "XcodecModel": "xcodec.models.xcodec",
    "evaluate": "xcodec.evaluation",
}

__all__ = [
    "ArgumentError",
    "AudioError",
    "AutoFeatureExtractor",
    "AutoModel",
    "BatchError",
    "CheckpointError",
    "Codec",
    "CodecModel",
    "ConfigError",
    "DetokenizeResult",
    "DistillNeuCodecConfig",
    "DistillNeuCodecModel",
    "EvalReport",
    "HubertConfig",
    "ItemError",
    "NeuCodecConfig",
    "NeuCodecFeatureExtractor",
    "NeuCodecModel",
    "OnnxCodec",
    "RuntimeOptions",
    "TokenizeResult",
    "Wav2Vec2BertConfig",
    "WavLMConfig",
    "Xcodec2Config",
    "Xcodec2FeatureExtractor",
    "Xcodec2Model",
    "XcodecConfig",
    "XcodecError",
    "XcodecFeatureExtractor",
    "XcodecModel",
    "__version__",
    "evaluate",
    "load",
]


def load(id_or_path: str | os.PathLike[str] = "HKUSTAudio/xcodec2-hf", **kwargs: Any) -> Codec:
    """Load a codec behind the simple API: :func:`xcodec.api.load`'s arguments.

    An ONNX export folder (``xcodec export-onnx``) loads as :class:`~xcodec.onnx.runtime.OnnxCodec`
    on onnxruntime, without importing torch; so does ``backend="onnxruntime"`` with a
    checkpoint (exported once into $XCODEC_ONNX_CACHE, else ~/.cache/xcodec/onnx; the
    export needs torch). ``backend="torch"`` forces PyTorch.
    """
    from xcodec.onnx.runtime import is_onnx_export

    backend = kwargs.pop("backend", None)
    if backend not in (None, "torch", "onnxruntime"):
        from xcodec.errors import ArgumentError

        raise ArgumentError(f"backend must be 'torch' or 'onnxruntime', not {backend!r}")
    if backend == "onnxruntime" and not is_onnx_export(id_or_path):
        from xcodec.onnx.export import cached_export

        hub = {k: kwargs[k] for k in ("revision", "local_files_only") if kwargs.get(k) is not None}
        id_or_path = cached_export(id_or_path, hub_cache_dir=kwargs.get("cache_dir"), **hub)
    if backend != "torch" and is_onnx_export(id_or_path):
        from xcodec.onnx.runtime import OnnxCodec

        if str(kwargs.get("device") or "cpu") != "cpu" or str(kwargs.get("dtype") or "float32") not in (
            "float32",
            "torch.float32",
        ):
            from xcodec.errors import ArgumentError

            raise ArgumentError(
                f"{id_or_path}: an ONNX export runs in float32 on onnxruntime's CPU provider; "
                f"device={kwargs.get('device')!r} and dtype={kwargs.get('dtype')!r} do not apply"
            )
        options = {k: v for k, v in kwargs.items() if k in ("max_batch_seconds", "windows") and v is not None}
        # OnnxCodec has Codec's public methods and properties (numpy results in place of
        # tensors); typed as Codec so callers keep one type for both backends.
        return cast("Codec", OnnxCodec(id_or_path, **options))
    from xcodec.api import load as load_torch

    return load_torch(id_or_path, **kwargs)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'xcodec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
