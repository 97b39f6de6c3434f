"""The denoising loop: encode the prompt, prepare latents, step with the locked UNet plus the
units' residuals. It reads top to bottom like diffusers' pipeline and matches it numerically
(tests/engine/test_parity.py), but composes units itself, skips units outside their window and
embeds each control map once.

Its protocol is k-diffusion's: after every model evaluation it calls `callback(Step)` with the
step, the total, the latent and the denoised estimate x0 (k-diffusion's `denoised`), and it
returns `Denoised(latents, denoised, interrupted)`; previews and an interrupted result decode
x0, as AUTOMATIC1111 and ComfyUI do, because the latent itself is still mostly noise."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor

from .adapter import PreparedAdapter, adapter_features
from .control import combined_residuals, controlnet_forward, in_window
from annotators.image import fit

from . import reference
from .models import Backbone
from .prompt import encode_prompts, encode_prompts_sdxl
from .samplers import make_scheduler

OnStep = Callable[[int, int, Callable[[], np.ndarray]], object]


@dataclass(frozen=True)
class Step:
    """What the loop reports after each model evaluation (k-diffusion's callback dict)."""

    i: int                    # evaluations done, 1..total
    total: int                # evaluations in the run (Heun makes two per step)
    x: torch.Tensor           # the latent after this evaluation
    denoised: torch.Tensor    # the estimate of the clean latent x0 (inpainting: the kept area blended in)


@dataclass(frozen=True)
class Denoised:
    latents: torch.Tensor     # the final latent, or the latest one when interrupted
    denoised: torch.Tensor    # the latest x0 estimate; what an interrupted run decodes
    interrupted: bool

    @property
    def result(self) -> torch.Tensor:
        return self.denoised if self.interrupted else self.latents


@torch.inference_mode()
def encode(backbone: Backbone, pictures: list[np.ndarray], generators: list[torch.Generator]) -> torch.Tensor:
    """The scaled latents of uint8 pictures (H, W, 3), each sampled from the VAE's posterior with
    its own image's generator, which then goes on to draw that image's noise (as diffusers'
    img2img pipelines do)."""
    vae = backbone.vae
    out = []
    for picture, generator in zip(pictures, generators):
        t = torch.from_numpy(np.array(picture)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
        t = t.to(device=backbone.device, dtype=vae.dtype)
        out.append(vae.encode(t).latent_dist.sample(generator))
    return torch.cat(out).to(backbone.dtype) * vae.config.scaling_factor


def predict_noise(unet, units: list, x_in, t, text, cfg_scale: float | None, cn_forward=controlnet_forward,
                  streams=None, added: dict | None = None):
    """One step's noise prediction: the locked UNet plus the given (active) units' residuals,
    then classifier-free guidance when cfg_scale is given. `added` is SDXL's added_cond_kwargs
    (text_embeds, time_ids), batched like `text`. engine.fast captures this same function in a
    CUDA graph. T2I-Adapter units (engine.adapter) add their step-independent features inside
    the down blocks; ControlNet and Union units add residuals to the skip connections."""
    cfg = cfg_scale is not None
    adapters = [u for u in units if isinstance(u, PreparedAdapter)]
    nets = [u for u in units if not isinstance(u, PreparedAdapter)] if adapters else units
    downs, mid = combined_residuals(nets, x_in, t, text, cfg, cn_forward, streams, added)
    extra = {"added_cond_kwargs": added} if added is not None else {}
    if adapters:
        extra["down_intrablock_additional_residuals"] = adapter_features(adapters, x_in.shape[0], cfg)
    noise_pred = unet(x_in, t, encoder_hidden_states=text, down_block_additional_residuals=downs,
                      mid_block_additional_residual=mid, return_dict=False, **extra)[0]
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


def denoised_estimate(scheduler, model_output: torch.Tensor, t, sample: torch.Tensor) -> torch.Tensor:
    """x0 from one model evaluation, for the scheduler's parameterisation, read before its step.
    Multistep solvers (UniPC, DPM++) convert the output to x0 themselves and keep it in
    `model_outputs`; the loop takes theirs after the step instead."""
    x0 = _x0(scheduler, scheduler.config.prediction_type, model_output, t, sample)
    if scheduler.config.get("clip_sample", False):   # the scheduler clips its own x0 so (DDIM's default)
        x0 = x0.clamp(-scheduler.config.clip_sample_range, scheduler.config.clip_sample_range)
    return x0


def _x0(scheduler, kind: str, model_output, t, sample):
    if kind == "sample":
        return model_output
    if hasattr(scheduler, "sigmas") and getattr(scheduler, "step_index", None) is not None:
        # Sigma schedulers (Euler, Heun, LMS): x = x0 + sigma * eps. The sigma the model saw is the
        # step index's, in Heun's second evaluation too (its sigmas are interleaved to match).
        sigma = scheduler.sigmas[scheduler.step_index].to(sample.device, sample.dtype)
        if kind == "epsilon":
            return sample - sigma * model_output
        return model_output * (-sigma / (sigma**2 + 1) ** 0.5) + sample / (sigma**2 + 1)
    # DDIM-like: x = sqrt(a) x0 + sqrt(1 - a) eps, a the cumulative alpha at t.
    a = scheduler.alphas_cumprod.to(sample.device)[int(t)].to(sample.dtype)
    if kind == "epsilon":
        return (sample - (1 - a) ** 0.5 * model_output) / a**0.5
    return a**0.5 * sample - (1 - a) ** 0.5 * model_output


@torch.inference_mode()
def decode(backbone: Backbone, latents: torch.Tensor, request, width: int, height: int) -> np.ndarray:
    """Float pictures (B, H, W, 3) in [0, 1] of latents; for inpainting, the init image is kept
    outside the mask, pixel for pixel."""
    images = _decode(backbone, latents)
    if request.inpaint_mask is not None:
        m = fit(request.inpaint_mask, width, height)[None, :, :, None] / 255.0
        init = fit(request.init_image, width, height)[None] / 255.0
        images = init * (1 - m) + images * m
    return images


def _decode(backbone: Backbone, latents: torch.Tensor) -> np.ndarray:
    vae = backbone.vae
    z = latents / vae.config.scaling_factor
    if getattr(vae.config, "shift_factor", None):
        z = z + vae.config.shift_factor
    # the VAE may run in fp32 beside an fp16 UNet (force_upcast: SDXL's VAE overflows in fp16)
    image = vae.decode(z.to(vae.dtype), return_dict=False)[0]
    return (image / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().cpu().numpy()


def conditioning(backbone: Backbone, request, width: int, height: int, batch: int, cfg: bool):
    """The UNet's text input for the batch ([negative, positive] with CFG) and, for SDXL, its
    added_cond_kwargs: the pooled embedding and the size/crop time ids as diffusers' SDXL
    pipelines compute them (original size = target size = the frame, crop (0, 0))."""
    device, dtype = backbone.device, backbone.dtype
    if backbone.text_encoder_2 is None:
        pos, neg = encode_prompts(backbone.tokenizer, backbone.text_encoder, request.prompt,
                                  request.negative_prompt, device, dtype)
        pos, neg = pos.repeat(batch, 1, 1), neg.repeat(batch, 1, 1)
        return (torch.cat([neg, pos]) if cfg else pos), None
    pos, neg, pooled, pooled_neg = encode_prompts_sdxl(
        (backbone.tokenizer, backbone.tokenizer_2), (backbone.text_encoder, backbone.text_encoder_2),
        request.prompt, request.negative_prompt, device, dtype)
    pos, neg = pos.repeat(batch, 1, 1), neg.repeat(batch, 1, 1)
    pooled, pooled_neg = pooled.repeat(batch, 1), pooled_neg.repeat(batch, 1)
    time_ids = torch.tensor([[height, width, 0, 0, height, width]], device=device, dtype=dtype)
    time_ids = time_ids.repeat(2 * batch if cfg else batch, 1)
    text = torch.cat([neg, pos]) if cfg else pos
    embeds = torch.cat([pooled_neg, pooled]) if cfg else pooled
    return text, {"text_embeds": embeds, "time_ids": time_ids}


def _schedule(request, run_steps: int | None, img2img: bool) -> tuple[int, int]:
    """(schedule length, steps skipped at its start). img2img as diffusers' ControlNet img2img
    pipeline: skip the first (1 - strength) of the schedule; with `run_steps` (the hires fix's
    second pass) exactly that many steps run, from a schedule stretched by the strength (A1111)."""
    if not img2img:
        return request.steps, 0
    if run_steps is not None:
        from .hires import schedule_steps
        length = schedule_steps(run_steps, request.strength)
        return length, length - run_steps
    keep = min(int(request.steps * request.strength), request.steps)
    return request.steps, max(request.steps - keep, 0)


def evaluations(backbone: Backbone, request, img2img: bool = False, run_steps: int | None = None) -> int:
    """How many model evaluations `denoise` will report for this request (Heun makes two per step)."""
    scheduler = make_scheduler(request.sampler, backbone.scheduler_config)
    length, skip = _schedule(request, run_steps, img2img)
    scheduler.set_timesteps(length)
    return len(scheduler.timesteps[skip * scheduler.order:])


@torch.inference_mode()
def denoise(backbone: Backbone, units: list, request, width: int, height: int, seeds: list[int],
            callback: Callable[[Step], object] | None = None, stop=None, predict=None,
            references: list = (), init_latents: torch.Tensor | None = None,
            run_steps: int | None = None, ip_adapters=None) -> Denoised:
    """Run one request on a loaded backbone and prepared units (engine.control.PreparedUnit).
    `callback(Step)` after each model evaluation; it returning False, or `stop` (a
    threading.Event) being set, ends the loop there. `predict` replaces predict_noise (the
    CUDA-graph fast path passes its own). `references` (engine.reference.PreparedReference):
    before each evaluation in its window, a reference unit's pass writes the bank the main
    UNet call reads; such a run is eager (the fast path's graphs hold no hooks). `ip_adapters`
    (engine.ip_adapter.IPAdapterRun, its processors already on the UNet) gets each step's
    index to set its units' scales by their windows, and goes to `predict` with each step.
    `init_latents` (scaled, at this size) start an img2img run in place of the VAE-encoded
    init_image, and `run_steps` fixes how many steps it runs: the hires fix's second pass
    (engine.hires)."""
    with reference.attached(backbone.unet, list(references)) as bank:
        return _denoise(backbone, units, request, width, height, seeds, callback, stop,
                        None if references else predict, list(references), bank, init_latents,
                        run_steps, ip_adapters)


def _denoise(backbone, units, request, width, height, seeds, callback, stop, predict, references, bank,
             init_latents, run_steps, ip_adapters=None) -> Denoised:
    device, dtype = backbone.device, backbone.dtype
    unet, vae, batch = backbone.unet, backbone.vae, len(seeds)
    cfg = request.cfg_scale > 1.0
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]

    text, added = conditioning(backbone, request, width, height, batch, cfg)

    img2img = request.init_image is not None or init_latents is not None
    length, t_start = _schedule(request, run_steps, img2img)
    scheduler = make_scheduler(request.sampler, backbone.scheduler_config)
    scheduler.set_timesteps(length, device=device)
    timesteps = scheduler.timesteps
    shape = (batch, unet.config.in_channels, height // backbone.vae_scale, width // backbone.vae_scale)

    image_latents = noise = latent_mask = None
    if not img2img:
        latents = randn_tensor(shape, generator=generators, device=device, dtype=dtype) * scheduler.init_noise_sigma
    else:
        timesteps = timesteps[t_start * scheduler.order:]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(t_start * scheduler.order)
        if len(timesteps) == 0:
            raise ValueError(f"strength {request.strength} with {request.steps} steps leaves no step to run; raise either")
        if init_latents is not None:
            image_latents = init_latents.to(device=device, dtype=dtype)
        else:
            image_latents = encode(backbone, [fit(request.init_image, width, height)] * batch, generators)
        noise = randn_tensor(image_latents.shape, generator=generators, device=device, dtype=dtype)
        latents = scheduler.add_noise(image_latents, noise, timesteps[:1].repeat(batch))
        if request.inpaint_mask is not None:
            m = fit(request.inpaint_mask, width, height)
            m = torch.from_numpy((m > 127).astype(np.float32))[None, None]
            latent_mask = F.interpolate(m, size=shape[-2:]).to(device=device, dtype=dtype)

    step_kwargs = _step_kwargs(scheduler, generators)
    multistep = hasattr(scheduler, "model_outputs")
    total = len(timesteps)
    denoised = latents

    for i, t in enumerate(timesteps):
        x_in = torch.cat([latents] * 2) if cfg else latents
        x_in = scheduler.scale_model_input(x_in, t)
        active = [u for u in units if in_window(i, total, u.start, u.end)]
        extra = {"added": added} if added is not None else {}
        if ip_adapters is not None:
            ip_adapters.step(i, total)
            if predict is not None:
                extra["ip"] = ip_adapters
        refs = [r for r in references if in_window(i, total, r.start, r.end)]
        if refs:
            reference.write(unet, bank, refs, t, text, scheduler.alphas_cumprod, cfg, added)
        noise_pred = (predict or predict_noise)(unet, active, x_in, t, text, request.cfg_scale if cfg else None, **extra)
        denoised = None if multistep else denoised_estimate(scheduler, noise_pred, t, latents)
        latents = scheduler.step(noise_pred, t, latents, **step_kwargs, return_dict=False)[0]
        if multistep:
            denoised = scheduler.model_outputs[-1]
        if latent_mask is not None:
            # Outside the mask the picture is the init image, noised to where the schedule now is;
            # its clean estimate there is the init image itself.
            known = image_latents
            if i < total - 1:
                known = scheduler.add_noise(image_latents, noise, timesteps[i + 1:i + 2].repeat(batch))
            latents = (1 - latent_mask) * known + latent_mask * latents
            denoised = (1 - latent_mask) * image_latents + latent_mask * denoised
        halt = callback is not None and callback(Step(i + 1, total, latents, denoised)) is False
        if (halt or (stop is not None and stop.is_set())) and i < total - 1:
            return Denoised(latents, denoised, interrupted=True)
    return Denoised(latents, denoised, interrupted=False)
