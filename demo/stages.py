"""What every stage of the demo build shares: its config, where its folder is, when it is done,
how much time is left, and the reconstruction loss of the two VAE stages (backbone.py, decoder.py).
Each stage checkpoints into its own folder under the work dir and writes DONE.json at the end,
so a build can run in slices of a few minutes."""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.training import checkpoints

from . import architecture


@dataclass(frozen=True)
class BackboneConfig:
    work_dir: str
    seed: int = 0
    tiny: bool = False
    vae_steps: int = 1000
    vae_batch: int = 64
    vae_lr: float = 5e-4
    decoder_steps: int = 4000      # the decoder stage (decoder.py): the encoder locked, the decoder sharpened
    decoder_batch: int = 64
    decoder_lr: float = 5e-5      # the VAE stage ended at 5e-5; more knocks a trained decoder off its minimum
    unet_steps: int = 10000     # 2500 drew the asked colour 77% of the time, the shape 45% (blobs)
    unet_batch: int = 128
    unet_lr: float = 3e-4
    warmup: int = 200
    caption_dropout: float = 0.1
    junk_word_p: float = 0.1       # captions with a made-up word, so unknown words learn to mean nothing
    ema_decay: float = 0.999
    min_snr: float = 5.0
    workers: int = 8
    checkpoint_every: int = 500
    log_every: int = 100

    @property
    def size(self) -> int:
        return 64 if self.tiny else architecture.IMAGE_SIZE


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine down to a tenth."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def stage_dir(cfg: BackboneConfig, name: str) -> Path:
    return Path(cfg.work_dir) / name


def done(folder: Path) -> dict | None:
    p = folder / "DONE.json"
    return json.loads(p.read_text()) if p.is_file() else None


def finish(folder: Path, info: dict) -> dict:
    (folder / "DONE.json").write_text(json.dumps(info, indent=1))
    return info


def time_left(started: float, budget: float | None, done: int, extra: float = 15.0) -> bool:
    if budget is None:
        return True
    elapsed = time.monotonic() - started
    return elapsed + 2 * elapsed / max(1, done) + extra < budget


def seconds_before(ckpt: Path | None) -> float:
    return float(checkpoints.read_state(ckpt).get("seconds_total", 0.0)) if ckpt is not None else 0.0


def reconstruction_loss(y: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, L1) of a decoded picture against the original, both in [-1, 1]."""
    l1 = (y - x).abs().mean()
    # Edges are what ControlNets follow and judges read: weigh gradients as much as values.
    grad = ((y[..., 1:, :] - y[..., :-1, :]) - (x[..., 1:, :] - x[..., :-1, :])).abs().mean() + \
           ((y[..., 1:] - y[..., :-1]) - (x[..., 1:] - x[..., :-1])).abs().mean()
    return l1 + 0.5 * grad, l1


def optimizer_step(loss: torch.Tensor, params, opt: torch.optim.Optimizer) -> None:
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


def source_vae(cfg: BackboneConfig) -> Path:
    """The VAE the backbone ships: the decoder stage's when it is done, else the VAE stage's."""
    tuned = stage_dir(cfg, "decoder") / "final"
    return tuned if (tuned / "config.json").is_file() else stage_dir(cfg, "vae") / "final"
