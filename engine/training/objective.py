"""The denoising objective in the backbone's own parametrisation, as diffusers' training
examples write it (examples/controlnet/train_controlnet.py): the scheduler noises the latents
(`add_noise`) and says what the UNet predicts, the noise (epsilon) or the velocity
v = sqrt(a) * noise - sqrt(1 - a) * x0 (v-prediction: SD 2.x 768-v; Salimans and Ho 2022).
Min-SNR-gamma weights (Hang et al. 2023) come from diffusers' compute_snr."""
from __future__ import annotations

import torch
from diffusers.training_utils import compute_snr

PREDICTION_TYPES = ("epsilon", "v_prediction")


def prediction_type(scheduler) -> str:
    kind = scheduler.config.prediction_type
    if kind not in PREDICTION_TYPES:
        raise ValueError(f"the backbone's scheduler predicts {kind!r}; training supports "
                         f"{' and '.join(PREDICTION_TYPES)} backbones (its scheduler_config's prediction_type)")
    return kind


def noisy_and_target(scheduler, latents: torch.Tensor, noise: torch.Tensor,
                     timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The noised latents the UNet sees at `timesteps`, and what it should predict from them."""
    kind = prediction_type(scheduler)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    target = noise if kind == "epsilon" else scheduler.get_velocity(latents, noise, timesteps)
    return noisy, target


def min_snr_weights(scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample loss weights min(SNR, gamma) / SNR for epsilon, / (SNR + 1) for v, as
    diffusers' train_text_to_image.py weighs its MSE."""
    snr = compute_snr(scheduler, timesteps)
    clipped = torch.clamp(snr, max=gamma)
    return clipped / snr if prediction_type(scheduler) == "epsilon" else clipped / (snr + 1)
