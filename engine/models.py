"""What a loaded model is: a backbone (the locked Stable Diffusion) and a control model."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .values import recommended_cfg_scale


@dataclass(frozen=True)
class Backbone:
    source: str
    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler_config: dict
    recommended: dict = field(default_factory=dict)   # its own request defaults (cfg_scale)

    @property
    def cfg_scale(self) -> float:
        """The scale a request that names none runs at: its recommendation, else 7.5."""
        return recommended_cfg_scale(self.recommended)

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def native_size(self) -> int:
        """The size the backbone was trained at: its UNet's sample size in pixels."""
        return int(self.unet.config.sample_size) * self.vae_scale

    @property
    def size_multiple(self) -> int:
        """Width and height must divide by this so every UNet level has whole latent pixels."""
        return self.vae_scale * 2 ** (len(self.unet.config.block_out_channels) - 1)

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype


@dataclass(frozen=True)
class ControlModel:
    source: str
    net: torch.nn.Module
    kind: str | None = None   # the condition it reads (canny, scribble, ...), from its name


def _layout(cfg) -> dict:
    return {
        "cross-attention width": cfg.get("cross_attention_dim"),
        "block channels": tuple(cfg.get("block_out_channels") or ()),
        "down blocks": tuple(cfg.get("down_block_types") or ()),
        "layers per block": cfg.get("layers_per_block"),
        "latent channels": cfg.get("in_channels"),
    }


def check_fits(control: ControlModel, backbone: Backbone) -> None:
    """Refuse a ControlNet made for another architecture, naming both, instead of failing
    later with a shape error deep inside the UNet."""
    mine, theirs = _layout(control.net.config), _layout(backbone.unet.config)
    diff = [k for k in mine if mine[k] != theirs[k]]
    if diff:
        detail = "; ".join(f"{k}: ControlNet {mine[k]} vs backbone {theirs[k]}" for k in diff)
        raise ValueError(
            f"ControlNet {control.source!r} does not fit backbone {backbone.source!r} ({detail}). "
            "Pick a ControlNet made for this backbone's family (SD 1.x ControlNets for SD 1.x backbones, "
            "the demo's for the demo)."
        )
