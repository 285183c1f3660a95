"""Drop-in for the ``xcodec2`` package (PyPI ``xcodec2`` 0.1.5, the codec behind Llasa).

Code written for the package changes one import::

    from xcodec2.modeling_xcodec2 import XCodec2Model   # before
    from xcodec.compat.xcodec2 import XCodec2Model      # after

and keeps calling ``XCodec2Model.from_pretrained(...)``, ``encode_code(wav)``,
``decode_code(codes)`` and ``model(wav)``. The codes are the package's own: for a batch
of one item, or items of one length, they equal ``xcodec2``'s on the same checkpoint
(pinned by ``tests/test_compat.py`` against the package's code), and the audio is within
1e-4 of its peak.

Differences, all where the package fails or gives wrong results:

* a batch of several items works: the package computes the semantic features of item 0
  only and fails to concatenate them with the others' acoustic features. Here each
  item's codes are those it gets alone;
* items of different lengths may be passed as a list of (samples,) tensors; the result is
  then a list of (1, 1, frames_i) codes (and ``decode_code`` takes such a list back);
* a (samples,) tensor is taken as one item (the package needs (batch, samples));
* ``sample_rate`` other than 16000 resamples the input (soxr) instead of failing in the
  feature extractor.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from xcodec.compat._common import (
    DropInCodec,
    check_items,
    codes_tensor,
    decode_items,
    encode_items,
    hub_options,
    resample_items,
    stack_equal,
)
from xcodec.errors import ArgumentError
from xcodec.models.neucodec import NeuCodecModel
from xcodec.models.xcodec2 import Xcodec2Model

__all__ = ["XCodec2Model"]

Waveforms = torch.Tensor | Sequence[torch.Tensor]
Codes = torch.Tensor | list[torch.Tensor]


class XCodec2Model(DropInCodec):
    """``xcodec2.modeling_xcodec2.XCodec2Model``'s interface on the native :class:`~xcodec.models.xcodec2.Xcodec2Model`.

    16 kHz audio in and out, one code per 320 samples: an item of ``T`` samples gets
    ``T // 320 + 1`` codes (the package always pads 1..320 samples) and decodes to
    ``320 * frames`` samples.
    """

    codec: Xcodec2Model

    def __init__(self, codec: Xcodec2Model) -> None:
        if not isinstance(codec, Xcodec2Model) or isinstance(codec, NeuCodecModel):
            raise ArgumentError(f"XCodec2Model wraps an X-Codec2 model, got {type(codec).__name__}")
        super().__init__(codec)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike[str], **kwargs: Any
    ) -> XCodec2Model:
        """Load a hub id or folder in either layout: the package's (``HKUSTAudio/xcodec2``) or Transformers' (``-hf``).

        Keyword arguments are :meth:`Xcodec2Model.from_pretrained`'s (``device_map``,
        ``dtype``, ``revision``, ``cache_dir``, ``token``, ...); Transformers' ``torch_dtype``
        is read as ``dtype``. The model is returned in eval mode.
        """
        codec = Xcodec2Model.from_pretrained(pretrained_model_name_or_path, **hub_options(kwargs))
        return cls(codec)

    @property
    def sample_rate(self) -> int:
        """16000: the rate of the audio in and out."""
        return self.codec.sample_rate

    # ------------------------------------------------------------------ the package's methods
    def _items(self, input_waveform: Waveforms, sample_rate: int) -> tuple[list[torch.Tensor], bool]:
        """(items at 16 kHz, whether the caller passed a list) from any accepted input."""
        if isinstance(input_waveform, (list, tuple)):
            items = [torch.as_tensor(item) for item in input_waveform]
            as_list = True
        else:
            waveform = torch.as_tensor(input_waveform)
            if waveform.dim() == 3 and waveform.shape[1] == 1:
                waveform = waveform[:, 0, :]
            if waveform.dim() == 1:
                waveform = waveform[None, :]
            if waveform.dim() != 2:
                raise ArgumentError(
                    f"input_waveform: expected (samples,) or (batch, samples), got shape {tuple(waveform.shape)}"
                )
            items = list(waveform)
            as_list = False
        if not items:
            raise ArgumentError("input_waveform: no items")
        check_items(items, "input_waveform")
        return resample_items(items, sample_rate, self.codec.sample_rate), as_list

    @torch.no_grad()
    def encode_code(self, input_waveform: Waveforms, sample_rate: int = 16000) -> Codes:
        """Audio to codes.

        input_waveform: (batch, samples) or (samples,) at ``sample_rate``; or a list of
            (samples,) tensors of any lengths.
        Returns (batch, 1, samples // 320 + 1) int32 codes on the model's device; for a
        list input whose items differ in length, a list of (1, 1, frames_i) codes.
        """
        items, as_list = self._items(input_waveform, sample_rate)
        codes = encode_items(self.codec, items)
        if as_list:
            return [code[None] for code in codes]
        stacked = stack_equal(codes)
        assert stacked is not None  # rows of one tensor have one length
        return stacked

    def _decode(self, vq_code: Codes) -> Codes:
        if isinstance(vq_code, (list, tuple)):
            items = [codes_tensor(item, f"vq_code[{index}]") for index, item in enumerate(vq_code)]
            if any(item.shape[0] != 1 for item in items):
                raise ArgumentError("vq_code: a list holds one (1, 1, frames) code tensor per item")
            return decode_items(self.codec, items)
        codes = codes_tensor(vq_code, "vq_code").to(self.device)
        return self.codec.decode(audio_codes=codes).audio_values

    @torch.no_grad()
    def decode_code(self, vq_code: Codes) -> Codes:
        """Codes (batch, 1, frames) to audio (batch, 1, frames * 320) at 16 kHz on the model's device.

        A list of (1, 1, frames_i) code tensors (what :meth:`encode_code` returns for a
        list) gives a list of (1, 1, frames_i * 320) audio tensors, each decoded alone.
        """
        return self._decode(vq_code)

    def forward(self, input_waveform: Waveforms, sample_rate: int = 16000) -> Codes:
        """Encode and decode: (batch, samples) -> (batch, 1, (samples // 320 + 1) * 320), as the package does.

        Like the package's, the decode runs with gradients enabled (the codes carry none).
        """
        return self._decode(self.encode_code(input_waveform, sample_rate))
