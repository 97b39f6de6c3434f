"""The denoising loop: encode the prompt, prepare latents, step with the locked UNet plus the
units' residuals, decode. It reads top to bottom like diffusers' pipeline and matches it
numerically (tests/engine/test_parity.py), but composes units itself, skips units outside
their window and embeds each control map once."""
from __future__ import annotations

import inspect
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor

from .control import combined_residuals, controlnet_forward, in_window
from .images import resize
from .models import Backbone
from .prompt import encode_prompts
from .samplers import make_scheduler

OnStep = Callable[[int, int, Callable[[], np.ndarray]], object]


def _image_tensor(image: np.ndarray, width: int, height: int, device, dtype) -> torch.Tensor:
    image = resize(np.asarray(image), width, height, "just_resize")
    t = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    return t.to(device=device, dtype=dtype)


def predict_noise(unet, units: list, x_in, t, text, cfg_scale: float | None, cn_forward=controlnet_forward,
                  streams=None):
    """One step's noise prediction: the locked UNet plus the given (active) units' residuals,
    then classifier-free guidance when cfg_scale is given. engine.fast captures this same
    function in a CUDA graph."""
    downs, mid = combined_residuals(units, x_in, t, text, cfg_scale is not None, cn_forward, streams)
    noise_pred = unet(x_in, t, encoder_hidden_states=text, down_block_additional_residuals=downs,
                      mid_block_additional_residual=mid, return_dict=False)[0]
    if cfg_scale is not None:
        uncond, cond = noise_pred.chunk(2)
        noise_pred = uncond + cfg_scale * (cond - uncond)
    return noise_pred


def _step_kwargs(scheduler, generators) -> dict:
    accepted = set(inspect.signature(scheduler.step).parameters)
    kwargs = {}
    if "eta" in accepted:
        kwargs["eta"] = 0.0
    if "generator" in accepted:
        kwargs["generator"] = generators
    return kwargs


def _decode(backbone: Backbone, latents: torch.Tensor) -> np.ndarray:
    vae = backbone.vae
    z = latents / vae.config.scaling_factor
    if getattr(vae.config, "shift_factor", None):
        z = z + vae.config.shift_factor
    image = vae.decode(z.to(vae.dtype), return_dict=False)[0]
    return (image / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().cpu().numpy()


@torch.inference_mode()
def denoise(backbone: Backbone, units: list, request, width: int, height: int, seeds: list[int],
            on_step: OnStep | None = None, stop=None, predict=None) -> tuple[np.ndarray, bool]:
    """Run one request on a loaded backbone and prepared units (engine.control.PreparedUnit).
    `predict` replaces predict_noise (the CUDA-graph fast path passes its own).
    Returns float images (B, H, W, 3) in [0, 1] and whether it was interrupted."""
    device, dtype = backbone.device, backbone.dtype
    unet, vae, batch = backbone.unet, backbone.vae, len(seeds)
    cfg = request.cfg_scale > 1.0
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]

    pos, neg = encode_prompts(backbone.tokenizer, backbone.text_encoder, request.prompt,
                              request.negative_prompt, device, dtype)
    pos, neg = pos.repeat(batch, 1, 1), neg.repeat(batch, 1, 1)
    text = torch.cat([neg, pos]) if cfg else pos

    scheduler = make_scheduler(request.sampler, backbone.scheduler_config)
    scheduler.set_timesteps(request.steps, device=device)
    timesteps = scheduler.timesteps
    shape = (batch, unet.config.in_channels, height // backbone.vae_scale, width // backbone.vae_scale)

    image_latents = noise = latent_mask = None
    if request.init_image is None:
        latents = randn_tensor(shape, generator=generators, device=device, dtype=dtype) * scheduler.init_noise_sigma
    else:
        # img2img as diffusers' ControlNet img2img pipeline: skip the first (1 - strength) of the schedule.
        keep = min(int(request.steps * request.strength), request.steps)
        t_start = max(request.steps - keep, 0)
        timesteps = timesteps[t_start * scheduler.order:]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(t_start * scheduler.order)
        if len(timesteps) == 0:
            raise ValueError(f"strength {request.strength} with {request.steps} steps leaves no step to run; raise either")
        init = _image_tensor(request.init_image, width, height, device, dtype)
        image_latents = torch.cat([vae.encode(init).latent_dist.sample(g) for g in generators])
        image_latents = image_latents * vae.config.scaling_factor
        noise = randn_tensor(image_latents.shape, generator=generators, device=device, dtype=dtype)
        latents = scheduler.add_noise(image_latents, noise, timesteps[:1].repeat(batch))
        if request.inpaint_mask is not None:
            m = resize(np.asarray(request.inpaint_mask), width, height, "just_resize")
            m = torch.from_numpy((m > 127).astype(np.float32))[None, None]
            latent_mask = F.interpolate(m, size=shape[-2:]).to(device=device, dtype=dtype)

    step_kwargs = _step_kwargs(scheduler, generators)
    total, interrupted = len(timesteps), False

    for i, t in enumerate(timesteps):
        x_in = torch.cat([latents] * 2) if cfg else latents
        x_in = scheduler.scale_model_input(x_in, t)
        active = [u for u in units if in_window(i, total, u.start, u.end)]
        noise_pred = (predict or predict_noise)(unet, active, x_in, t, text, request.cfg_scale if cfg else None)
        latents = scheduler.step(noise_pred, t, latents, **step_kwargs, return_dict=False)[0]
        if latent_mask is not None:
            # Outside the mask the picture is the init image, noised to where the schedule now is.
            known = image_latents
            if i < total - 1:
                known = scheduler.add_noise(image_latents, noise, timesteps[i + 1:i + 2].repeat(batch))
            latents = (1 - latent_mask) * known + latent_mask * latents
        halt = False
        if on_step is not None:
            current = latents
            halt = on_step(i + 1, total, lambda: _decode(backbone, current)) is False
        halt = halt or (stop is not None and stop.is_set())
        if halt and i < total - 1:
            interrupted = True
            break

    if hasattr(predict, "generation_done"):
        predict.generation_done()
    images = _decode(backbone, latents)
    if request.inpaint_mask is not None:
        m = resize(np.asarray(request.inpaint_mask), width, height, "just_resize")[None, :, :, None] / 255.0
        init = resize(np.asarray(request.init_image), width, height, "just_resize")[None] / 255.0
        images = init * (1 - m) + images * m
    return images, interrupted
