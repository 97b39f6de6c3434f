"""The hires fix (AUTOMATIC1111's `enable_hr`): the first pass's result enlarged, then a second,
img2img pass at the larger size. Enlarging is weight-free: the latent interpolated (A1111's six
"Latent" modes) or the decoded picture resized (Lanczos, nearest).

Sizes follow A1111's `calculate_target_resolution`: `hr_scale` times the first pass's size, or
`hr_resize_x`/`hr_resize_y` (one of them 0: the other side keeps the aspect ratio; both given:
enlarged to cover that frame, then centre-cropped to it). Sides are floored to the VAE's
multiple, as A1111 floors them to whole latent pixels."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import limits

# A1111's shared.latent_upscale_modes: name -> (torch interpolation mode, antialias)
LATENT_UPSCALERS = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
# Weight-free picture upscalers (A1111 lists these beside its model-based ones)
PICTURE_UPSCALERS = {"Lanczos": Image.Resampling.LANCZOS, "Nearest": Image.Resampling.NEAREST}
UPSCALERS: tuple[str, ...] = (*LATENT_UPSCALERS, *PICTURE_UPSCALERS)
DEFAULT_UPSCALER = "Latent"      # A1111's latent_upscale_default_mode
FALLBACK_UPSCALER = "Lanczos"    # what a model-based upscaler this studio lacks runs as (ui/a1111)


class HiresOption(Enum):
    """Which passes of a hires-fix run a unit acts in; each value is the ControlNet extension's name."""

    both = "Both"
    low = "Low res only"
    high = "High res only"


HR_OPTIONS: tuple[str, ...] = tuple(o.name for o in HiresOption)


def acts_in(hr_option: str, second_pass: bool) -> bool:
    return hr_option == "both" or hr_option == ("high" if second_pass else "low")


@dataclass(frozen=True)
class Target:
    """The second pass's frame, and the larger frame it is cut from (equal unless both
    hr_resize_x and hr_resize_y were given with another aspect ratio than the first pass)."""

    width: int
    height: int
    cover_width: int
    cover_height: int


def target_size(request, width: int, height: int, multiple: int) -> Target:
    """The second pass's size for a first pass of width x height; ValueError past the limits."""
    rx, ry = request.hr_resize_x, request.hr_resize_y
    if not rx and not ry:
        w, h = int(width * request.hr_scale), int(height * request.hr_scale)
        cw, ch = w, h
    elif not ry:
        w, h = rx, rx * height // width
        cw, ch = w, h
    elif not rx:
        w, h = ry * width // height, ry
        cw, ch = w, h
    else:
        w, h = rx, ry
        if width / height < rx / ry:
            cw, ch = rx, rx * height // width
        else:
            cw, ch = ry * width // height, ry
    w, h, cw, ch = (max(multiple, v // multiple * multiple) for v in (w, h, cw, ch))
    if max(w, h) > limits.MAX_SIZE:
        raise ValueError(f"the hires fix would make {w}x{h}, over the {limits.MAX_SIZE}-pixel limit per side; "
                         "lower hr_scale (or hr_resize_x/hr_resize_y) or the first pass's size")
    return Target(w, h, cw, ch)


def _centre_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top:top + h, left:left + w]


def upscale_latents(latents: torch.Tensor, target: Target, vae_scale: int, upscaler: str) -> torch.Tensor:
    """The first pass's latents enlarged to the target (A1111: F.interpolate in latent space)."""
    mode, antialias = LATENT_UPSCALERS[upscaler]
    size = (target.cover_height // vae_scale, target.cover_width // vae_scale)
    # interpolate in fp32: bicubic and antialiasing are not implemented for half tensors on every device
    up = F.interpolate(latents.float(), size=size, mode=mode, antialias=antialias).to(latents.dtype)
    return _centre_crop(up, target.height // vae_scale, target.width // vae_scale)


def upscale_pictures(images: np.ndarray, target: Target, upscaler: str) -> list[np.ndarray]:
    """Float pictures (B, H, W, 3) in [0, 1] as uint8 pictures at the target, resized by PIL."""
    out = []
    for a in images:
        im = Image.fromarray((a * 255).round().astype(np.uint8))
        im = im.resize((target.cover_width, target.cover_height), PICTURE_UPSCALERS[upscaler])
        left = (target.cover_width - target.width) // 2
        top = (target.cover_height - target.height) // 2
        out.append(np.asarray(im.crop((left, top, left + target.width, top + target.height))))
    return out


def schedule_steps(run_steps: int, strength: float) -> int:
    """The length of the schedule whose last `run_steps` steps the second pass runs: A1111's
    hires pass always runs exactly its steps, taken from a schedule stretched by the strength
    (sd_samplers_common.setup_img2img_steps with steps given)."""
    return max(run_steps, int(run_steps / min(strength, 0.999)))


def second_pass_steps(request) -> int:
    return request.hr_second_pass_steps or request.steps

