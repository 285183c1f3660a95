"""xcodec: native PyTorch X-Codec and X-Codec2, audio to discrete tokens and back."""

from xcodec.base import CodecModel, DetokenizeResult, TokenizeResult
from xcodec.errors import AudioError, CheckpointError, XcodecError

__version__ = "0.1.0"

__all__ = [
    "AudioError",
    "CheckpointError",
    "CodecModel",
    "DetokenizeResult",
    "TokenizeResult",
    "XcodecError",
    "__version__",
]
