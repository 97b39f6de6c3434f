"""T2I-Adapter units: an adapter turns its map into one feature map per UNet level, and the
locked UNet adds them inside its down blocks (diffusers' `down_intrablock_additional_residuals`).
The features depend on the map alone, never on the latent or the step, so they are computed once
per generation and only scaled at each step; a unit outside its window is not added at all.

Modes follow AUTOMATIC1111's ControlNet extension (scripts/hook.py): `balanced` scales every
level by the weight; `prompt` and `control` use the extension's soft scales for adapters,
0.25 / 0.62 / 0.825 / 1.0 from the shallowest level on, and `control` adds the features to the
conditional half of the CFG batch only."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from annotators.image import fit

# The extension's soft-injection scales for an adapter's (up to) four levels; a tiny test adapter
# with fewer levels takes the first ones, as the extension's zip() does.
ADAPTER_SOFT_SCALES = (0.25, 0.62, 0.825, 1.0)


def adapter_scales(n_levels: int, weight: float, mode: str) -> torch.Tensor:
    if mode == "balanced":
        return torch.full((n_levels,), float(weight))
    curve = list(ADAPTER_SOFT_SCALES[:n_levels]) + [1.0] * max(0, n_levels - len(ADAPTER_SOFT_SCALES))
    return torch.tensor(curve) * weight


@dataclass
class PreparedAdapter:
    """An adapter unit made ready for one generation: its features (each (1, C, h, w), unscaled)."""

    net: torch.nn.Module
    features: list
    scales: torch.Tensor
    start: float
    end: float
    cond_only: bool
    mask: torch.Tensor | None


def is_adapter(net) -> bool:
    return type(net).__name__ == "T2IAdapter"


def adapter_input(image: np.ndarray, in_channels: int, device, dtype) -> torch.Tensor:
    """The map as the adapter reads it: RGB in [0, 1]; a one-channel (sketch) adapter gets the
    first channel, as the extension feeds it (the studio's grey maps have R = G = B)."""
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float().div(255.0)
    if in_channels == 1:
        x = x[:, :1]
    return x.to(device=device, dtype=dtype)


def prepare_adapter(unit, net, width: int, height: int, device, dtype) -> PreparedAdapter:
    factor = net.total_downscale_factor
    if width % factor or height % factor:
        raise ValueError(f"T2I-Adapter {unit.model!r} needs a width and height that divide by {factor}; "
                         f"{width}x{height} does not: pick a size that is a multiple of {factor}")
    image = fit(unit.image, width, height, unit.resize_mode)
    with torch.no_grad():
        features = list(net(adapter_input(image, net.config.in_channels, device, dtype)))
    mask = None
    if unit.mask is not None:
        m = fit(unit.mask, width, height, unit.resize_mode)
        mask = torch.from_numpy(np.array(m)).float().div(255.0)[None, None].to(device=device, dtype=dtype)
    scales = adapter_scales(len(features), unit.weight, unit.mode).to(device)
    return PreparedAdapter(net, features, scales, unit.start, unit.end, cond_only=unit.mode == "control", mask=mask)


def adapter_features(units: list, batch: int, cfg: bool) -> list | None:
    """The summed, scaled features of the given (active) adapter units for a UNet batch of
    `batch` rows ([unconditional, conditional] halves with CFG); None when there are none. A new
    list each call: the UNet pops from the one it is given."""
    if not units:
        return None
    total = None
    for unit in units:
        out = []
        for i, f in enumerate(unit.features):
            f = f * unit.scales[i]
            if unit.mask is not None:
                f = f * F.interpolate(unit.mask, size=f.shape[-2:], mode="bilinear", align_corners=False)
            if cfg and unit.cond_only:
                half = f.expand(batch // 2, -1, -1, -1)
                f = torch.cat([torch.zeros_like(half), half])
            else:
                f = f.expand(batch, -1, -1, -1)
            out.append(f)
        total = out if total is None else [a + b for a, b in zip(total, out)]
    return total
