"""Checkpoint I/O: hub resolution, safetensors and pickle reading, key maps, weight-norm folding.

Importing this package registers each codec's loader and saver in :mod:`xcodec.registry`,
where the model classes' ``from_pretrained``/``save_pretrained`` find them (the models
never import this package). Registration names functions without importing them, so it
is free.
"""

from xcodec.registry import register_codec, register_resolver

register_resolver("xcodec.checkpoints.common:resolve_checkpoint")
register_codec(
    "xcodec.models.xcodec2.Xcodec2Model",
    load="xcodec.checkpoints.xcodec2:from_pretrained",
    save="xcodec.checkpoints.xcodec2:save_xcodec2",
)
register_codec(
    "xcodec.models.neucodec.NeuCodecModel",
    load="xcodec.checkpoints.neucodec:from_pretrained",
    save="xcodec.checkpoints.neucodec:save_neucodec",
)
register_codec(
    "xcodec.models.distill_neucodec.DistillNeuCodecModel",
    load="xcodec.checkpoints.distill_neucodec:from_pretrained",
    save="xcodec.checkpoints.distill_neucodec:save_distill_neucodec",
)
register_codec(
    "xcodec.models.xcodec.XcodecModel",
    load="xcodec.checkpoints.xcodec:from_pretrained",
    save="xcodec.checkpoints.xcodec:save_xcodec",
)
