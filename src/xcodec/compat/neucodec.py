"""Drop-in for the ``neucodec`` package (PyPI ``neucodec`` 0.0.6, the codec behind NeuTTS).

Code written for the package changes one import::

    from neucodec import NeuCodec            # before
    from xcodec.compat.neucodec import NeuCodec   # after

and keeps calling ``NeuCodec.from_pretrained("neuphonic/neucodec")``,
``encode_code(audio_or_path)``, ``decode_code(codes)``, ``.sample_rate`` and ``.device``.
For a (batch, 1, samples) tensor at 16 kHz the codes equal the package's on the same
weights and the 24 kHz audio is within 1e-4 of its peak (pinned by ``tests/test_compat.py``
against the package's own code).

Differences, all where the package fails:

* a path to a 16 kHz file works (the package skips its reshape when no resampling is
  needed and crashes), and so does a multi-channel file or (batch, channels, samples)
  tensor: channels are averaged to mono (the package's encoder takes one channel);
* files at other rates are resampled with the package's filter (torchaudio's default
  Hann-windowed sinc, :func:`~xcodec.compat._common.sinc_resample`), so their codes are
  the package's too;
* ``encode_code(..., sample_rate=)`` resamples a tensor at another rate, with the same
  filter (the package has no such argument and assumes 16 kHz);
* a list of items of different lengths (tensors (1, samples) or (samples,), or paths)
  gives a list of (1, 1, frames_i) codes; each item's codes are those it gets alone.
  A tensor batch is also encoded item by item in this sense: equal to the package's.

``DistillNeuCodec`` (``neuphonic/distill-neucodec``) is the same interface on the native
:class:`~xcodec.models.distill_neucodec.DistillNeuCodecModel` (an item of ``T`` samples
gets ``T // 320 + 1`` codes, one more than NeuCodec).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from xcodec.audio import load_audio
from xcodec.base import CodecModel
from xcodec.compat._common import (
    DropInCodec,
    check_items,
    codes_tensor,
    decode_items,
    encode_items,
    hub_options,
    sinc_resample,
    stack_equal,
)
from xcodec.errors import ArgumentError
from xcodec.models.distill_neucodec import DistillNeuCodecModel
from xcodec.models.neucodec import NeuCodecModel

__all__ = ["DistillNeuCodec", "NeuCodec"]

AudioOrPath = torch.Tensor | str | os.PathLike[str]
Codes = torch.Tensor | list[torch.Tensor]


class NeuCodec(DropInCodec):
    """``neucodec.NeuCodec``'s interface on the native :class:`~xcodec.models.neucodec.NeuCodecModel`.

    16 kHz audio in, 24 kHz audio out, 50 codes/s: an item of ``T`` samples gets
    ``ceil((T + 1) / 320) - 1`` codes (the package pads 1..320 samples and its semantic
    branch has one frame fewer) and decodes to ``480 * frames`` samples.
    """

    codec: NeuCodecModel | DistillNeuCodecModel
    model_class: type[CodecModel] = NeuCodecModel
    default_model_id = "neuphonic/neucodec"

    def __init__(self, codec: NeuCodecModel | DistillNeuCodecModel) -> None:
        if not isinstance(codec, self.model_class):
            raise ArgumentError(
                f"{type(self).__name__} wraps a {self.model_class.__name__}, got {type(codec).__name__}"
            )
        super().__init__(codec)

    @classmethod
    def from_pretrained(cls, model_id: str | os.PathLike[str] | None = None, **kwargs: Any) -> NeuCodec:
        """Load a hub id or folder in either layout: the package's (``pytorch_model.bin``) or Transformers'.

        model_id: None means the published checkpoint (``neuphonic/neucodec``, for
        :class:`DistillNeuCodec` ``neuphonic/distill-neucodec``). Keyword arguments are :meth:`NeuCodecModel.from_pretrained`'s (``semantic_model``:
        where the original layout's W2V-BERT weights come from, default
        ``facebook/w2v-bert-2.0``; ``device_map``, ``dtype``, ``revision``, ...);
        ``map_location`` is read as ``device``. The model is returned in eval mode.
        """
        if "backbone_repo" in kwargs:  # spelled so by some NeuTTS versions
            model_id = kwargs.pop("backbone_repo")
        if model_id is None:
            model_id = cls.default_model_id
        codec = cls.model_class.from_pretrained(model_id, **hub_options(kwargs))
        assert isinstance(codec, (NeuCodecModel, DistillNeuCodecModel))
        return cls(codec)

    @property
    def sample_rate(self) -> int:
        """24000: the rate of the decoded audio."""
        return self.codec.sample_rate

    @property
    def hop_length(self) -> int:
        """480: output samples per code."""
        return self.codec.hop_length

    # ------------------------------------------------------------------ the package's methods
    def _item(self, source: Any, sample_rate: int, argument: str, *, in_list: bool) -> list[torch.Tensor]:
        """One path or tensor -> its (samples,) items at 16 kHz (a (batch, C, T) tensor gives several).

        A tensor is (batch, channels, samples), as the package requires; a list item may
        also be (samples,) or (channels, samples).
        """
        target = self.codec.input_sample_rate
        if isinstance(source, (str, os.PathLike)):
            loaded = load_audio(Path(source))  # channels averaged, the file's rate
            return [sinc_resample(loaded.waveform, loaded.sample_rate, target)]
        waveform = torch.as_tensor(source)
        if in_list and waveform.dim() in (1, 2):
            waveform = waveform.reshape(1, -1, waveform.shape[-1])
        if waveform.dim() != 3:
            expected = (
                "(samples,), (channels, samples) or (1, channels, samples)"
                if in_list
                else "(batch, 1, samples)"
            )
            raise ArgumentError(
                f"{argument}: expected tensor audio of shape {expected}, got {tuple(waveform.shape)}"
            )
        items = list(waveform.float().mean(dim=1) if waveform.shape[1] > 1 else waveform[:, 0, :])
        check_items(items, argument)
        return [sinc_resample(item, sample_rate, target) for item in items]

    @torch.no_grad()
    def encode_code(
        self, audio_or_path: AudioOrPath | Sequence[AudioOrPath], *, sample_rate: int = 16000
    ) -> Codes:
        """Audio to codes.

        audio_or_path: a (batch, 1, samples) tensor at ``sample_rate`` (16 kHz unless
            given), or the path of an audio file at any rate; or a list of such items
            ((1, samples) or (samples,) tensors, paths) of any lengths.
        Returns (batch, 1, frames) int32 codes on the model's device (frames as in the
        class docstring); for a list, a list of (1, 1, frames_i) codes.
        """
        if isinstance(audio_or_path, (list, tuple)):
            items = [
                item
                for index, source in enumerate(audio_or_path)
                for item in self._item(source, sample_rate, f"audio_or_path[{index}]", in_list=True)
            ]
            if len(items) != len(audio_or_path):
                raise ArgumentError("audio_or_path: each list item must be one waveform or one path")
            return [code[None] for code in encode_items(self.codec, items)]
        items = self._item(audio_or_path, sample_rate, "audio_or_path", in_list=False)
        codes = encode_items(self.codec, items)
        stacked = stack_equal(codes)
        assert stacked is not None  # one file, or rows of one tensor: one length
        return stacked

    @torch.no_grad()
    def decode_code(self, fsq_codes: Codes) -> Codes:
        """Codes (batch, 1, frames) to 24 kHz audio (batch, 1, 480 * frames) on the model's device.

        A list of (1, 1, frames_i) code tensors gives a list of audio tensors, each decoded alone.
        """
        if isinstance(fsq_codes, (list, tuple)):
            items = [codes_tensor(item, f"fsq_codes[{index}]") for index, item in enumerate(fsq_codes)]
            if any(item.shape[0] != 1 for item in items):
                raise ArgumentError("fsq_codes: a list holds one (1, 1, frames) code tensor per item")
            return decode_items(self.codec, items)
        codes = codes_tensor(fsq_codes, "fsq_codes").to(self.device)
        return self.codec.decode(audio_codes=codes).audio_values


class DistillNeuCodec(NeuCodec):
    """``neucodec.DistillNeuCodec``'s interface on the native :class:`~xcodec.models.distill_neucodec.DistillNeuCodecModel`.

    ``from_pretrained("neuphonic/distill-neucodec")`` (either layout; ``semantic_model``
    names where the original layout's DistilHuBERT comes from). Codes: ``T // 320 + 1``
    per item of ``T`` samples at 16 kHz; audio at 24 kHz, 480 samples per code.
    """

    model_class = DistillNeuCodecModel
    default_model_id = "neuphonic/distill-neucodec"
