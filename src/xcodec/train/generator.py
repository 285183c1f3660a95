"""The trainable generator: our inference model plus the training-only semantic head.

Data path of one training step (shapes for X-Codec2, hop 320, F = samples // 320 + 1)::

    audio (B, T) 16 kHz --feature extractor (no grad)--> input_values (B, 1, 320 F), input_features (B, F, 160)
    input_features --W2V-BERT (frozen, eval, no grad)--> semantic_target (B, F, 1024)   = hidden_states[16]
    model.encode: adapter + acoustic encoder + fc_encoder + FSQ (straight-through) --> latents (B, 2048, F), codes
    model.decode(latents) --> audio (B, T * sample_rate / input_sample_rate)
    semantic head(latents) --> semantic_pred (B, F, 1024)

The model is the inference class itself (:class:`~xcodec.models.xcodec2.Xcodec2Model`, or
:class:`~xcodec.models.neucodec.NeuCodecModel`), so what is trained is exactly what
``save_pretrained`` writes and ``xcodec.load`` runs; the semantic head lives here and is
never saved with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from xcodec.errors import ConfigError
from xcodec.models.xcodec2 import Xcodec2Model
from xcodec.train.fsq_norm import FsqInputNorm, quantize_with_input_norm
from xcodec.train.semantic_head import SemanticReconstructionHead

__all__ = ["FREEZE_GROUPS", "GeneratorOutput", "TrainableXcodec2"]

# Names a recipe's ``freeze`` list may use for groups of parameters (prefixes of the
# TrainableXcodec2 parameter names). "encoder" is everything that decides the codes, so a
# run that freezes it keeps the tokens of its initial checkpoint.
FREEZE_GROUPS: dict[str, tuple[str, ...]] = {
    "encoder": (
        "model.semantic_adapter.",
        "model.acoustic_encoder.",
        "model.fc_encoder.",
        "model.quantizer.project_in.",
    ),
    "decoder": ("model.quantizer.project_out.", "model.acoustic_decoder."),
    "semantic_head": ("semantic_head.",),
}


@dataclasses.dataclass
class GeneratorOutput:
    """Result of :meth:`TrainableXcodec2.forward`.

    audio: (batch, samples * sample_rate / input_sample_rate) decoded waveform at the
        model's output rate (NeuCodec: 24 kHz; compare it with the reference resampled to it).
    semantic_pred: (batch, frames, semantic_hidden) the head's reconstruction.
    semantic_target: (batch, frames, semantic_hidden) the frozen W2V-BERT's
        ``hidden_states[16]`` (no gradient).
    codes: (batch, frames) int32 FSQ indices (no gradient; for codebook-usage metrics).
    fsq_drift_penalty: () the FSQ input normalisation's drift penalty (training with
        ``fsq_input_norm`` only, else None; see :class:`~xcodec.train.fsq_norm.FsqInputNorm`).
    """

    audio: torch.Tensor
    semantic_pred: torch.Tensor
    semantic_target: torch.Tensor
    codes: torch.Tensor
    fsq_drift_penalty: torch.Tensor | None = None


class TrainableXcodec2(nn.Module):
    """An X-Codec2-family model made trainable end to end, with the semantic reconstruction head.

    model: the inference model to train (weights shared, not copied); its W2V-BERT
        ``semantic_encoder`` is frozen for good (``requires_grad`` False, always in eval mode).
    freeze: names from :data:`FREEZE_GROUPS` or parameter-name prefixes (``"model.acoustic_decoder.head"``)
        whose parameters stay fixed; an unknown name raises :class:`~xcodec.errors.ConfigError`.
    semantic_head: an existing head (e.g. loaded from an original checkpoint), else a new one
        (PyTorch's default initialisation).
    fsq_input_norm: standardise the FSQ input digits over the batch while training
        (:class:`~xcodec.train.fsq_norm.FsqInputNorm`, the fix for the code collapse of
        issue 12); its running statistics are folded into ``project_in`` by
        :meth:`folded_inference_model`. Needs a trainable ``project_in`` (with a frozen
        encoder the codes must not move): else :class:`~xcodec.errors.ConfigError`.
    fsq_input_norm_momentum: weight of each new batch in the running statistics.

    Hand :meth:`trainable_parameters` to the optimiser; save :meth:`folded_inference_model`.
    The FSQ rounding passes gradients straight through (``layers/fsq.py``), so the encoder
    learns from the decoder's losses.
    """

    def __init__(
        self,
        model: Xcodec2Model,
        freeze: Sequence[str] = (),
        semantic_head: SemanticReconstructionHead | None = None,
        *,
        fsq_input_norm: bool = False,
        fsq_input_norm_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        if model.loaded_parts != "all":
            raise ConfigError(
                f"training needs the whole model; this one was loaded with parts={model.loaded_parts!r}"
            )
        self.model = model
        config = model.config
        self.semantic_head = semantic_head or SemanticReconstructionHead(
            config.quantization_dim, config.semantic_model_config.hidden_size
        )
        self.freeze = tuple(freeze)
        model.semantic_encoder.requires_grad_(False)
        model.semantic_encoder.eval()
        for parameter in self._frozen_parameters(self.freeze):
            parameter.requires_grad_(False)
        self.fsq_input_norm: FsqInputNorm | None = None
        if fsq_input_norm:
            if not model.quantizer.project_in.weight.requires_grad:
                raise ConfigError(
                    "recipe key 'fsq_input_norm': the FSQ input projection is frozen (freeze "
                    f"{list(self.freeze)}), so the codes must not move; set fsq_input_norm=off"
                )
            levels = model.quantizer.quantizer.quantization_levels
            self.fsq_input_norm = FsqInputNorm(len(levels), momentum=fsq_input_norm_momentum)

    def _frozen_parameters(self, freeze: Sequence[str]) -> Iterator[nn.Parameter]:
        prefixes: list[str] = []
        names = [name for name, _ in self.named_parameters()]
        for entry in freeze:
            if entry in FREEZE_GROUPS:
                prefixes.extend(FREEZE_GROUPS[entry])
                continue
            prefix = entry if entry.endswith(".") or entry in names else entry + "."
            if not any(name == entry or name.startswith(prefix) for name in names):
                raise ConfigError(
                    f"recipe key 'freeze': {entry!r} is neither a group ({sorted(FREEZE_GROUPS)}) nor "
                    "a parameter-name prefix of the generator (e.g. 'model.acoustic_decoder')"
                )
            prefixes.append(prefix if entry not in names else entry)
        for name, parameter in self.named_parameters():
            if any(name == prefix or name.startswith(prefix) for prefix in prefixes):
                yield parameter

    @property
    def inference_model(self) -> Xcodec2Model:
        """The inference model (shares its weights with this module; no semantic head).

        With ``fsq_input_norm`` its ``project_in`` holds the weights before the
        normalisation: save :meth:`folded_inference_model` instead.
        """
        return self.model

    @contextlib.contextmanager
    def folded_inference_model(self) -> Iterator[Xcodec2Model]:
        """The inference model with the FSQ input normalisation folded into ``project_in``, for saving.

        Inside the ``with`` block ``project_in`` holds the folded weights (the model then
        computes in plain inference math what this module computes in eval mode); on exit
        the training weights are restored bit for bit. Without ``fsq_input_norm``: the model
        as it is.
        """
        norm = self.fsq_input_norm
        if norm is None:
            yield self.model
            return
        project_in = self.model.quantizer.project_in
        saved = project_in.weight.detach().clone(), project_in.bias.detach().clone()
        weight, bias = norm.folded(project_in)
        with torch.no_grad():
            project_in.weight.copy_(weight)
            project_in.bias.copy_(bias)
        try:
            yield self.model
        finally:
            with torch.no_grad():
                project_in.weight.copy_(saved[0])
                project_in.bias.copy_(saved[1])

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser updates: everything but the W2V-BERT encoder and the ``freeze`` list."""
        return [parameter for parameter in self.parameters() if parameter.requires_grad]

    def named_trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """(name, parameter) pairs of :meth:`trainable_parameters`."""
        return [(name, parameter) for name, parameter in self.named_parameters() if parameter.requires_grad]

    def train(self, mode: bool = True) -> TrainableXcodec2:
        """As ``nn.Module.train``, but the frozen W2V-BERT encoder stays in eval mode."""
        super().train(mode)
        self.model.semantic_encoder.eval()
        return self

    def forward(self, audio: torch.Tensor) -> GeneratorOutput:
        """audio: (batch, samples) at ``model.input_sample_rate`` (16 kHz), every item full length.

        Returns decoded audio cut to the input's duration, the semantic prediction and
        target, and the codes (see :class:`GeneratorOutput`). Differentiable with respect to
        every trainable parameter.
        """
        if audio.dim() != 2:
            raise ValueError(f"audio must be (batch, samples), got {tuple(audio.shape)}")
        T = audio.shape[-1]
        model = self.model
        # The inference extractor pads as the reference does ("always pad"), so the codes
        # a step trains on are those xcodec.load gives for the same crop.
        extractor = model._feature_extractor()
        with torch.no_grad():
            inputs = extractor(
                list(audio.detach().float()), sampling_rate=extractor.sampling_rate, return_tensors="pt"
            )
        parameter = next(model.acoustic_encoder.parameters())
        input_values = inputs["input_values"].to(device=parameter.device, dtype=parameter.dtype)
        input_features = inputs["input_features"].to(device=parameter.device, dtype=parameter.dtype)
        # The encoder's output is captured on its way into the adapter: the semantic target
        # is what the codes were made from, computed once per step. The hook lives only for
        # this call, so the model's own encode/tokenize calls capture nothing.
        captured: list[torch.Tensor] = []
        handles = [
            model.semantic_encoder.register_forward_hook(
                lambda _module, _inputs, output: captured.append(output)
            )
        ]
        norm = self.fsq_input_norm
        if norm is not None:
            # The quantiser's output is recomputed with the digits standardised (the hook's
            # return value replaces it); only while this call runs, like the capture above.
            handles.append(
                model.quantizer.register_forward_hook(
                    lambda module, inputs, _output: quantize_with_input_norm(module, norm, inputs[0])
                )
            )
        try:
            encoded = model.encode(input_values, input_features, output_latents=True)
        finally:
            for handle in handles:
                handle.remove()
        if len(captured) != 1:
            raise RuntimeError(f"expected one semantic encoder call, saw {len(captured)}")
        semantic_target = captured[0].detach()
        assert encoded.latents is not None
        latents = encoded.latents  # (B, quantization_dim, F)
        frames = latents.shape[-1]
        # NeuCodec keeps one code frame fewer than it has semantic frames (its "code count" quirk).
        semantic_target = semantic_target[:, :frames]
        decoded = model.decode(latents=latents).audio_values[:, 0, :]
        output_length = T * model.sample_rate // model.input_sample_rate
        semantic_pred = self.semantic_head(latents.transpose(1, 2))
        return GeneratorOutput(
            audio=decoded[:, :output_length],
            semantic_pred=semantic_pred,
            semantic_target=semantic_target,
            codes=encoded.audio_codes[:, 0, :].detach(),
            fsq_drift_penalty=None if norm is None else norm.drift_penalty,
        )
