"""A training step's random draws, one generator per sample of the step's global batch.

Sample j of process r's slice is sample r * batch + j of the global batch (data.StepBatches
hands out the slices in that order), and its generator is fixed by (seed, step, that place),
so N processes of batch B draw exactly what one process of batch N * B draws, and a resumed
run draws what an uninterrupted one would have. Each generator draws in one fixed order:
prompt dropout, the VAE's latent sample, the noise, the timestep."""
from __future__ import annotations

import torch
from diffusers.utils.torch_utils import randn_tensor

from . import data

TIMESTEP_SCHEDULES = ("uniform", "cubic")


def generators(seed: int, step: int, first: int, n: int, device) -> list[torch.Generator]:
    """Generators of global samples first ... first + n - 1 of step `step`."""
    return [torch.Generator(device).manual_seed(int(data.rng(seed, step, first + j, 0xD7).integers(2 ** 62)))
            for j in range(n)]


def uniform(gens: list[torch.Generator], device) -> torch.Tensor:
    """One uniform number in [0, 1) per sample."""
    return torch.cat([torch.rand(1, generator=g, device=device) for g in gens])


def noise(gens: list[torch.Generator], shape: tuple, device, dtype=torch.float32) -> torch.Tensor:
    """Gaussian noise of `shape` (batch first), each sample's from its own generator."""
    return randn_tensor(tuple(shape), generator=gens, device=torch.device(device), dtype=dtype)


def timesteps(kind: str, total: int, gens: list[torch.Generator], device) -> torch.Tensor:
    """One training timestep per sample: uniform over [0, total), or "cubic", which draws noisy
    timesteps more often (T2I-Adapter's schedule: t = (1 - u^3) * total)."""
    if kind not in TIMESTEP_SCHEDULES:
        raise ValueError(f"unknown timestep schedule {kind!r}: use uniform or cubic")
    u = uniform(gens, device)
    if kind == "cubic":
        u = 1 - u ** 3
    return (u * total).long().clamp(0, total - 1)
