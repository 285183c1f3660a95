"""Train the demo X-Codec2 (recipe ``demo``) on the demo corpus: a stop-gap until ``xcodec train`` lands.

    python3 scripts/train_demo.py --data /work/demo_corpus --out /work/demo_run [--max-steps N]

Built on the training package's parts (TrainableXcodec2, MultiScaleMelLoss, semantic_loss,
reinit_for_training_, lr_at); mel + semantic losses only (the demo recipe starts the GAN
terms after its last step). Resumable: RUN_DIR/last/ holds the model in Transformers layout
plus ``train_state.pt`` (optimiser, step, RNG); rerunning the same command continues.
Log: one line per logged step on stdout (step, seconds, lr, mel loss, semantic loss).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from xcodec.configs.xcodec2 import Xcodec2Config
from xcodec.models.xcodec2 import Xcodec2Model
from xcodec.train import (
    MultiScaleMelLoss,
    TrainableXcodec2,
    load_recipe,
    lr_at,
    reinit_for_training_,
    semantic_loss,
)
from xcodec.train.init import standardise_fsq_input_

# The acoustic encoder has no normalisation: its 15 residual units each add a unit-variance
# branch, so activations grow ~3x per unit and a few hundred AdamW steps at fan-in init
# blew them up to 1e7 (codes collapsed to one value; measured in the first demo run).
# Starting each residual branch at a tenth (the "skip-init" idea) keeps the stack near
# identity, so the encoder output stays O(1) while it learns.
RESIDUAL_SCALE = 0.1
PROJECT_IN_LR_SCALE = 0.1


@torch.no_grad()
def damp_encoder_residuals_(model: Xcodec2Model, scale: float) -> None:
    """Scale the last conv of every acoustic-encoder residual unit by ``scale``, then re-standardise the FSQ input."""
    for name, module in model.acoustic_encoder.named_modules():
        if "res_unit" in name and name.endswith("conv2") and isinstance(module, torch.nn.Conv1d):
            module.weight.mul_(scale)
    standardise_fsq_input_(model)


@torch.no_grad()
def standardise_fsq_input_on_speech_(model: Xcodec2Model, audio: torch.Tensor) -> None:
    """As ``standardise_fsq_input_`` but on speech ``audio`` (batch, samples), not white noise.

    The noise-clip standardisation left the FSQ inputs of speech at 10-30x unit spread in
    the second and third demo runs (the bound saturated: ~40 distinct codes per 200 frames).
    """
    captured: list[torch.Tensor] = []
    project_in = model.quantizer.project_in
    handle = project_in.register_forward_hook(lambda _m, _i, output: captured.append(output))
    try:
        model.encode(audio[:, None, :])
    finally:
        handle.remove()
    values = captured[0].float().reshape(-1, captured[0].shape[-1])
    mean, std = values.mean(dim=0), values.std(dim=0).clamp(min=1e-8)
    project_in.weight.div_(std[:, None])
    project_in.bias.sub_(mean).div_(std)


def load_corpus(data: Path, segment: int) -> list[np.ndarray]:
    rows = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
    clips = []
    for row in rows:
        if row["split"] == "train" and row["seconds"] * 16000 > segment:
            audio, _ = sf.read(str(data / row["path"]), dtype="float32")
            clips.append(audio)
    return clips


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--recipe", default="demo")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--save-every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe)
    max_steps = args.max_steps or recipe.max_steps
    segment = int(recipe.segment_seconds * recipe.sample_rate)
    last = args.out / "last"
    if (last / "train_state.pt").exists():
        model = Xcodec2Model.from_pretrained(str(last))
        state = torch.load(last / "train_state.pt", weights_only=True)
    else:
        assert recipe.model is not None
        model = Xcodec2Model(Xcodec2Config.from_dict(recipe.model))
        reinit_for_training_(model, recipe.seed, include_semantic_encoder=True)
        damp_encoder_residuals_(model, RESIDUAL_SCALE)
        state = None
    generator = TrainableXcodec2(model, freeze=recipe.freeze)
    generator.train()
    mel_loss = MultiScaleMelLoss(recipe.sample_rate, recipe.mel_loss.n_mels, recipe.mel_loss.windows)
    opt = recipe.optimizer
    # AdamW moves every weight by ~lr per step whatever its gradient's size, so the FSQ
    # input projection (160 inputs summed coherently) grew 10-50x in 200 steps at lr 1e-3
    # in the second demo run: the bound saturated and the codes sat on a few corners. It
    # learns at a tenth of the rate.
    project_in = {id(p) for p in model.quantizer.project_in.parameters()}
    params = generator.trainable_parameters()
    groups = [
        {"params": [p for p in params if id(p) not in project_in], "scale": 1.0},
        {"params": [p for p in params if id(p) in project_in], "scale": PROJECT_IN_LR_SCALE},
    ]
    optimizer = torch.optim.AdamW(groups, lr=1.0, betas=opt.betas, weight_decay=opt.weight_decay, eps=opt.eps)
    step, elapsed = 0, 0.0
    rng = np.random.default_rng(recipe.seed)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        generator.semantic_head.load_state_dict(state["semantic_head"])
        step, elapsed = int(state["step"]), float(state["elapsed"])
        rng = np.random.default_rng([recipe.seed, step])
    clips = load_corpus(args.data, segment)
    if state is None:
        probe = np.random.default_rng(recipe.seed + 1)
        picks = [clips[int(i)] for i in probe.integers(len(clips), size=16)]
        standardise_fsq_input_on_speech_(model, torch.from_numpy(np.stack([c[:segment] for c in picks])))
    print(f"{len(clips)} clips; starting at step {step}", flush=True)
    start = time.time() - elapsed
    while step < max_steps:
        batch = []
        for _ in range(recipe.batch_size):
            clip = clips[rng.integers(len(clips))]
            offset = rng.integers(clip.size - segment + 1)
            batch.append(clip[offset : offset + segment])
        audio = torch.from_numpy(np.stack(batch))
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, recipe) * group["scale"]
        out = generator(audio)
        mel = mel_loss(out.audio, audio)
        sem = semantic_loss(out.semantic_pred, out.semantic_target)
        loss = recipe.loss_weights.mel * mel + recipe.loss_weights.semantic * sem
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(generator.trainable_parameters(), recipe.grad_clip)
        optimizer.step()
        step += 1
        if step % 10 == 0:
            print(
                f"step {step} t {time.time() - start:.0f} lr {lr_at(step, recipe):.2e} "
                f"mel {mel.item():.4f} sem {sem.item():.4f} distinct_codes {out.codes.unique().numel()}",
                flush=True,
            )
        if step % args.save_every == 0 or step == max_steps:
            tmp = args.out / "last.tmp"
            model.save_pretrained(tmp)
            torch.save(
                {
                    "optimizer": optimizer.state_dict(),
                    "semantic_head": generator.semantic_head.state_dict(),
                    "step": step,
                    "elapsed": time.time() - start,
                },
                tmp / "train_state.pt",
            )
            if last.exists():
                last.rename(args.out / "last.old")
            tmp.rename(last)
            if (args.out / "last.old").exists():
                import shutil

                shutil.rmtree(args.out / "last.old")
    return 0


if __name__ == "__main__":
    sys.exit(main())
