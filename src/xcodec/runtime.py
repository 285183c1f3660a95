"""How a loaded codec computes: one typed object instead of attributes set module by module.

None of these options changes what the codec is; they trade speed or memory against
the reference's exact operation order (outputs equal up to float summation order, codes
equal but at near-ties, pinned by tests/test_fast_paths.py, test_xcodec2_model.py and
test_ssl_semantic.py). :func:`xcodec.load` takes one (``runtime=``), and
:func:`apply_runtime_options` applies one to any model.
"""

from __future__ import annotations

import dataclasses

from xcodec.base import CodecModel
from xcodec.models.xcodec2 import Xcodec2Decoder
from xcodec.semantic.wavlm import WavLMEncoder
from xcodec.stages.bigcodec import AcousticEncoder
from xcodec.stages.dac import DacDecoder, DacEncoder
from xcodec.windowing import WindowConfig

__all__ = ["RuntimeOptions", "apply_runtime_options"]


@dataclasses.dataclass(frozen=True)
class RuntimeOptions:
    """Runtime choices of a loaded codec.

    exact_order: True runs the reference's operation order wherever a faster equivalent
        exists (X-Codec2's decoder applies its rotary embedding over the heads axis, which
        cannot change attention scores; WavLM attention without fused SDPA); False takes
        the fast paths everywhere; None keeps each module's default (X-Codec2's decoder
        fast, WavLM exact).
    chunking: False runs the acoustic encoders and the DAC decoder over the whole input
        at once (more memory, no chunk joins); True keeps their default chunk sizes.
    windows: the long-audio windows of :class:`xcodec.api.Codec`; None: the default
        :class:`~xcodec.windowing.WindowConfig` (30 s, 2 s context).
    """

    exact_order: bool | None = None
    chunking: bool = True
    windows: WindowConfig | None = None


def apply_runtime_options(model: CodecModel, options: RuntimeOptions) -> CodecModel:
    """Set ``options`` on every module of ``model`` they concern; returns ``model``."""
    for module in model.modules():
        if options.exact_order is not None:
            if isinstance(module, Xcodec2Decoder):
                module.rotate_over_heads = options.exact_order
            elif isinstance(module, WavLMEncoder):
                module.use_sdpa = not options.exact_order
        if not options.chunking:
            if isinstance(module, AcousticEncoder):
                module.chunk_samples = module.trailing_chunk_samples = 0
            elif isinstance(module, (DacEncoder, DacDecoder)):
                module.chunk_samples = 0
    return model
