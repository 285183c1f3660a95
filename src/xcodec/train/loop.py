"""The training loop: discriminator step, then generator step; logging, evaluation, checkpoints, resume, DDP.

One step (global batch B of ``segment`` samples, split over ``world_size`` ranks)::

    audio (B / world, segment) --generator--> out.audio, semantic_pred, semantic_target
    step >= gan_start_step: D loss(D(audio), D(out.audio.detach())) -> backward, clip, AdamW step
    G loss = mel * w.mel + semantic * w.semantic [+ adv * w.adv + fm * w.fm] [+ fsq_drift * w.fsq_drift]
             -> backward, clip, AdamW step

Under ``torchrun`` (WORLD_SIZE > 1) the generator and the discriminators are wrapped in
DistributedDataParallel (gloo on CPU, nccl on GPU); every rank draws its share of the same
global batch (:class:`~xcodec.train.data.CropSampler`), gradients are averaged, and rank 0
alone logs and writes checkpoints. The logged losses are averaged over ranks.

Resume: the newest complete ``checkpoints/step-*`` of RUN_DIR restores the models,
optimisers, step, RNG states and the sampler position, so on one CPU process the losses
after a restart equal those of an uninterrupted run bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xcodec.train.checkpoint import find_latest, load_state, save_atomic, save_state
from xcodec.train.data import CropSampler, load_train_data
from xcodec.train.discriminators import Discriminators
from xcodec.train.generator import TrainableXcodec2
from xcodec.train.init_sources import load_init
from xcodec.train.losses import (
    MultiScaleMelLoss,
    feature_matching_loss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    semantic_loss,
)
from xcodec.train.recipe import TrainRecipe, autocast_dtype, lr_at

__all__ = ["TrainOptions", "train"]


@dataclasses.dataclass
class TrainOptions:
    """What ``xcodec train`` passes besides the recipe (see its ``--help``)."""

    data: str
    out: Path
    init: str | None = None
    device: str = "cpu"
    save_every: int = 100
    eval_every: int = 100
    log_every: int = 1
    keep_checkpoints: int = 3
    eval_clips: int = 4
    progress: bool = True


def _rng_state() -> dict[str, Any]:
    numpy_state: Any = np.random.get_state(legacy=True)
    return {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(numpy_state[1], dtype=np.int64)),
        "numpy_pos": int(numpy_state[2]),
        "python": [list(v) if isinstance(v, tuple) else v for v in random.getstate()],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(
        ("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0)
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def _generator_state(generator: TrainableXcodec2) -> dict[str, torch.Tensor]:
    # The frozen W2V-BERT comes back from --init on resume; not copying it keeps checkpoints small.
    return {k: v for k, v in generator.state_dict().items() if not k.startswith("model.semantic_encoder.")}


def _log_mel_correlation() -> Any:
    try:
        from xcodec.metrics.spectral import mel_correlation
    except ImportError:  # pragma: no cover - the metrics module is optional for training
        return None
    return mel_correlation


def train(recipe: TrainRecipe, options: TrainOptions) -> dict[str, float]:
    """Run (or resume) training to ``recipe.max_steps``; return the last logged losses."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = torch.device(options.device)
    if world_size > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(recipe.seed)
    np.random.seed(recipe.seed)
    random.seed(recipe.seed)
    run_dir = Path(options.out)
    segment = int(recipe.segment_seconds * recipe.sample_rate)
    data = load_train_data(options.data, recipe.sample_rate, segment)
    sampler = CropSampler(data.train, segment, recipe.seed, rank=rank, world_size=world_size)

    init = load_init(options.init, recipe.model, recipe.seed)
    norm = recipe.fsq_input_norm == "on" or (recipe.fsq_input_norm == "scratch" and init.from_scratch)
    generator = TrainableXcodec2(
        init.model,
        freeze=recipe.freeze,
        fsq_input_norm=norm,
        fsq_input_norm_momentum=recipe.fsq_input_norm_momentum,
    )
    discriminators = Discriminators.from_config(recipe.discriminators)
    if init.original_state is not None:
        generator.semantic_head.load_original_state_dict(init.original_state)
        discriminators.load_original_state_dict(init.original_state)
    generator.to(device).train()
    discriminators.to(device).train()
    mel_loss = MultiScaleMelLoss(recipe.sample_rate, recipe.mel_loss.n_mels, recipe.mel_loss.windows).to(
        device
    )
    opt = recipe.optimizer
    g_opt = torch.optim.AdamW(
        generator.trainable_parameters(), lr=1.0, betas=opt.betas, weight_decay=opt.weight_decay, eps=opt.eps
    )
    d_opt = torch.optim.AdamW(
        discriminators.parameters(), lr=1.0, betas=opt.betas, weight_decay=opt.weight_decay, eps=opt.eps
    )
    # The schedule is lr_at(step) itself (LambdaLR over base lr 1), so its state is the step.
    g_sched = torch.optim.lr_scheduler.LambdaLR(g_opt, lambda s: lr_at(s, recipe))
    d_sched = torch.optim.lr_scheduler.LambdaLR(d_opt, lambda s: lr_at(s, recipe))
    step = 0
    latest = find_latest(run_dir)
    if latest is not None:
        state = load_state(latest)
        missing, unexpected = generator.load_state_dict(state["generator"], strict=False)
        missing = [k for k in missing if not k.startswith("model.semantic_encoder.")]
        if missing or unexpected:
            from xcodec.errors import CheckpointError

            raise CheckpointError(
                f"{latest}: generator state does not match: missing {missing}, unexpected {unexpected}"
            )
        discriminators.load_state_dict(state["discriminators"])
        g_opt.load_state_dict(state["g_opt"])
        d_opt.load_state_dict(state["d_opt"])
        g_sched.load_state_dict(state["g_sched"])
        d_sched.load_state_dict(state["d_sched"])
        sampler.load_state_dict(state["sampler"])
        _set_rng_state(state["rng"])
        step = int(state["step"])
    dtype = autocast_dtype(recipe.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    g_model: nn.Module = generator
    d_model: nn.Module = discriminators
    if world_size > 1:
        ids = [device.index] if device.type == "cuda" else None
        g_model = nn.parallel.DistributedDataParallel(generator, device_ids=ids, find_unused_parameters=True)
        d_model = nn.parallel.DistributedDataParallel(discriminators, device_ids=ids)

    is_main = rank == 0
    writer = None
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2) + "\n")
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:
            writer = None
    progress = _progress(recipe.max_steps, step, enabled=is_main and options.progress)
    w = recipe.loss_weights
    last: dict[str, float] = {}
    started = time.time()
    while step < recipe.max_steps:
        audio = sampler.next_batch(recipe.batch_size).to(device)
        gan = step >= recipe.gan_start_step
        losses: dict[str, torch.Tensor] = {}
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = g_model(audio)
        fake = out.audio.float()[:, None]
        real = audio[:, None]
        if gan:
            d_opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                real_logits, _ = d_model(real)
                fake_logits, _ = d_model(fake.detach())
                d_loss = lsgan_discriminator_loss(real_logits, fake_logits)
            scaler.scale(d_loss).backward()
            scaler.unscale_(d_opt)
            nn.utils.clip_grad_norm_(discriminators.parameters(), recipe.grad_clip)
            scaler.step(d_opt)
            losses["discriminator"] = d_loss.detach()
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            losses["mel"] = mel_loss(out.audio.float(), audio)
            losses["semantic"] = semantic_loss(out.semantic_pred.float(), out.semantic_target.float())
            g_loss = w.mel * losses["mel"] + w.semantic * losses["semantic"]
            if out.fsq_drift_penalty is not None and w.fsq_drift > 0:
                losses["fsq_drift"] = out.fsq_drift_penalty
                g_loss = g_loss + w.fsq_drift * losses["fsq_drift"]
            if gan:
                discriminators.requires_grad_(False)
                fake_logits, fake_maps = discriminators(fake)
                with torch.no_grad():
                    _, real_maps = discriminators(real)
                losses["adversarial"] = lsgan_generator_loss(fake_logits)
                losses["feature_matching"] = feature_matching_loss(real_maps, fake_maps)
                g_loss = g_loss + w.adv * losses["adversarial"] + w.fm * losses["feature_matching"]
        losses["generator"] = g_loss
        g_opt.zero_grad(set_to_none=True)
        scaler.scale(g_loss).backward()
        if gan:
            discriminators.requires_grad_(True)
        scaler.unscale_(g_opt)
        nn.utils.clip_grad_norm_(generator.trainable_parameters(), recipe.grad_clip)
        scaler.step(g_opt)
        scaler.update()
        lr = g_sched.get_last_lr()[0]
        g_sched.step()
        if gan:
            d_sched.step()
        step += 1
        values = _reduce({k: v.detach().float() for k, v in losses.items()}, world_size)
        last = values
        if is_main and (step % options.log_every == 0 or step == recipe.max_steps):
            record = {"step": step, "lr": lr, **{f"loss/{k}": v for k, v in values.items()}}
            # Distinct FSQ codes among this rank's batch frames: the first sign of the code
            # collapse of issue 12 (the mel loss keeps falling while every frame gets one code).
            record["codes/distinct"] = int(out.codes.unique().numel())
            record["codes/frames"] = int(out.codes.numel())
            record["time"] = time.time() - started
            _append_jsonl(run_dir / "metrics.jsonl", record)
            if writer is not None:
                for key, value in record.items():
                    if key.startswith(("loss/", "codes/")) or key == "lr":
                        writer.add_scalar(key, value, step)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(mel=f"{values['mel']:.3f}", g=f"{values['generator']:.3f}")
        if is_main and options.eval_every > 0 and step % options.eval_every == 0 and data.held_out:
            _evaluate(
                generator,
                mel_loss,
                data.held_out[: options.eval_clips],
                recipe,
                device,
                run_dir,
                step,
                writer,
            )
        if step % options.save_every == 0 or step == recipe.max_steps:
            if is_main:
                state = {
                    "step": step,
                    "generator": _generator_state(generator),
                    "discriminators": discriminators.state_dict(),
                    "g_opt": g_opt.state_dict(),
                    "d_opt": d_opt.state_dict(),
                    "g_sched": g_sched.state_dict(),
                    "d_sched": d_sched.state_dict(),
                    "sampler": sampler.state_dict(),
                    "rng": _rng_state(),
                }
                save_state(run_dir, step, state, options.keep_checkpoints)
                # The FSQ input normalisation (if on) is folded into project_in for last/.
                with generator.folded_inference_model() as model:
                    save_atomic(run_dir / "last", lambda tmp, model=model: model.save_pretrained(tmp))  # type: ignore[misc]
            if world_size > 1:
                import torch.distributed as dist

                dist.barrier()
    if progress is not None:
        progress.close()
    if writer is not None:
        writer.close()
    return last


def _reduce(values: dict[str, torch.Tensor], world_size: int) -> dict[str, float]:
    if world_size > 1:
        import torch.distributed as dist

        keys = sorted(values)
        stacked = torch.stack([values[k] for k in keys])
        dist.all_reduce(stacked)
        return {k: float(v) / world_size for k, v in zip(keys, stacked.cpu(), strict=True)}
    return {k: float(v) for k, v in values.items()}


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


@torch.no_grad()
def _evaluate(
    generator: TrainableXcodec2,
    mel_loss: MultiScaleMelLoss,
    clips: list[np.ndarray],
    recipe: TrainRecipe,
    device: torch.device,
    run_dir: Path,
    step: int,
    writer: Any,
) -> None:
    """Held-out mel loss (and log-mel correlation when xcodec.metrics has it); writes decoded samples."""
    from xcodec.audio import save_audio

    generator.eval()
    correlation = _log_mel_correlation()
    mels, correlations = [], []
    samples = run_dir / "samples" / f"step-{step:07d}"
    samples.mkdir(parents=True, exist_ok=True)
    for index, clip in enumerate(clips):
        audio = torch.from_numpy(clip[: int(10 * recipe.sample_rate)])[None].to(device)
        out = generator(audio)
        mels.append(float(mel_loss(out.audio.float(), audio)))
        decoded = out.audio[0].float().cpu().numpy()
        if correlation is not None:
            correlations.append(float(correlation(clip[: decoded.shape[-1]], decoded, recipe.sample_rate)))
        if index < 2:
            save_audio(samples / f"held_out_{index}.wav", decoded, recipe.sample_rate)
    generator.train()
    record: dict[str, Any] = {"step": step, "eval/mel": float(np.mean(mels))}
    if correlations:
        record["eval/log_mel_correlation"] = float(np.mean(correlations))
    _append_jsonl(run_dir / "metrics.jsonl", record)
    if writer is not None:
        for key, value in record.items():
            if key != "step":
                writer.add_scalar(key, value, step)


def _progress(total: int, initial: int, *, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainProgress(total, initial)
    return tqdm(total=total, initial=initial, desc="train", unit="step", file=sys.stderr)


class _PlainProgress:
    """One stderr line every 10 steps when tqdm is not installed."""

    def __init__(self, total: int, initial: int) -> None:
        self.total, self.n, self.start, self.initial = total, initial, time.time(), initial
        self.postfix = ""

    def update(self, count: int) -> None:
        self.n += count
        if self.n % 10 == 0 or self.n == self.total:
            rate = (self.n - self.initial) / max(time.time() - self.start, 1e-9)
            eta = (self.total - self.n) / max(rate, 1e-9)
            print(
                f"step {self.n}/{self.total} {rate:.2f} steps/s ETA {eta:.0f} s {self.postfix}",
                file=sys.stderr,
            )

    def set_postfix(self, **values: str) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        pass
