"""Training data: the corpus ``xcodec tokenize`` reads, split into train / held-out, cut into random crops.

Data path::

    DATA (folder, glob, manifest, ``datasets`` folder, Parquet) --dataset.sources.discover--> items
    items --dataset.decode.decode_item--> waveforms (samples,) float32, mono, 16 kHz
    waveforms --split by a hash of the item id--> train clips, held-out clips
    train clips --CropSampler(seed, position)--> batches (B, segment) float32

Crops are a pure function of (seed, global crop index), so the sampler's whole state is
its position: a resumed run and a run on N ranks draw exactly the crops of the
uninterrupted single-process run (rank r takes crops r, r + N, ... of each global batch).
Clips are decoded once, at start-up, into memory (fine for fine-tuning sets of hours on a
machine with tens of GB of RAM; larger corpora want a streaming reader, not written yet).
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings

import numpy as np
import torch

from xcodec.dataset.decode import DecodeRequest, decode_item
from xcodec.dataset.sources import discover
from xcodec.errors import XcodecError

__all__ = ["CropSampler", "TrainData", "load_train_data"]


@dataclasses.dataclass
class TrainData:
    """Decoded clips. train / held_out: (samples,) float32 waveforms; *_ids: their item ids."""

    train: list[np.ndarray]
    train_ids: list[str]
    held_out: list[np.ndarray]
    held_out_ids: list[str]
    skipped: list[str]


def _held_out_key(item_id: str) -> str:
    return hashlib.sha1(item_id.encode("utf-8")).hexdigest()


def load_train_data(
    spec: str, sample_rate: int, segment: int, *, held_out_fraction: float = 0.05, max_held_out: int = 16
) -> TrainData:
    """Read DATA, skip what cannot be used (a warning names each file), split off a held-out set.

    segment: crop length in samples; shorter clips are skipped. The held-out set is the
    ``held_out_fraction`` of items (at least one when there are two or more usable clips,
    at most ``max_held_out``) whose id hashes lowest: the same for every run on the same DATA.
    Raises XcodecError naming DATA when nothing usable is left for training.
    """
    source, items = discover(spec)
    clips: dict[str, np.ndarray] = {}
    skipped: list[str] = []
    for index, item in enumerate(items):
        decoded = decode_item(DecodeRequest(index, item.source, item.path, item.row), sample_rate, source)
        if decoded.waveform is None:
            warnings.warn(f"skipping {item.source}: {decoded.error}", stacklevel=2)
            skipped.append(item.source)
            continue
        if decoded.waveform.shape[-1] < segment:
            seconds = decoded.waveform.shape[-1] / sample_rate
            warnings.warn(
                f"skipping {item.source}: {seconds:.2f} s is shorter than the {segment / sample_rate:.2f} s crop",
                stacklevel=2,
            )
            skipped.append(item.source)
            continue
        clips[item.id] = np.ascontiguousarray(decoded.waveform, dtype=np.float32)
    ids = sorted(clips)
    held: list[str] = []
    if len(ids) >= 2 and held_out_fraction > 0:
        count = min(max_held_out, max(1, round(held_out_fraction * len(ids))))
        held = sorted(sorted(ids, key=_held_out_key)[:count])
    train_ids = [i for i in ids if i not in set(held)]
    if not train_ids:
        raise XcodecError(
            f"--data {spec}: no usable training clip ({len(skipped)} skipped, {len(ids)} usable)"
        )
    return TrainData(
        train=[clips[i] for i in train_ids],
        train_ids=train_ids,
        held_out=[clips[i] for i in held],
        held_out_ids=held,
        skipped=skipped,
    )


class CropSampler:
    """Seeded random crops; state = ``position`` (global crops drawn so far).

    Crop k: clip ``rng.integers(len(clips))`` and offset ``rng.integers(len - segment + 1)``
    with ``rng = numpy.random.default_rng([seed, k])``: independent of how many crops were
    drawn before, of the rank and of restarts.
    """

    def __init__(
        self, clips: list[np.ndarray], segment: int, seed: int, *, rank: int = 0, world_size: int = 1
    ):
        self.clips = clips
        self.segment = segment
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.position = 0

    def crop(self, k: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, k])
        clip = self.clips[int(rng.integers(len(self.clips)))]
        offset = int(rng.integers(clip.shape[-1] - self.segment + 1))
        return clip[offset : offset + self.segment]

    def next_batch(self, global_batch: int) -> torch.Tensor:
        """(global_batch / world_size, segment) float32: this rank's share of the next global batch."""
        if global_batch % self.world_size:
            raise XcodecError(
                f"--batch-size {global_batch} is not divisible by the {self.world_size} processes"
            )
        start = self.position
        self.position += global_batch
        crops = [self.crop(start + k) for k in range(self.rank, global_batch, self.world_size)]
        return torch.from_numpy(np.stack(crops))

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.position = int(state["position"])
        self.seed = int(state["seed"])
