"""xcodec: native PyTorch X-Codec and X-Codec2, audio to discrete tokens and back.

Quick start::

    import xcodec
    codec = xcodec.load("HKUSTAudio/xcodec2-hf")
    codes = codec.encode(["a.wav"])
    audio = codec.decode(codes)
"""

# Registers each codec's checkpoint loader and saver (xcodec.registry), which the model
# classes' from_pretrained/save_pretrained look up: keep this import, even in a lazy root.
import xcodec.checkpoints  # noqa: F401  (isort: keep first)
from xcodec.api import BatchError, Codec, ItemError, load
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
from xcodec.runtime import RuntimeOptions

__version__ = "0.1.0"

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
