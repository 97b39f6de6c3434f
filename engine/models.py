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
    text_encoder_2: torch.nn.Module | None = None     # SDXL's second (OpenCLIP bigG) encoder
    tokenizer_2: object = None

    @property
    def family(self) -> str:
        """The family a ControlNet must be made for: "sdxl" (a UNet with SDXL's text/time
        embedding), "sd2" (1024-wide cross-attention) or "sd1" (the rest, the demo's included)."""
        return family_of(self.unet.config)

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


FAMILY_NAMES = {"sdxl": "SDXL", "sd2": "SD 2.x", "sd1": "SD 1.x"}


def family_of(cfg) -> str:
    """A UNet's or ControlNet's family from its config (see Backbone.family)."""
    if cfg.get("addition_embed_type") == "text_time":
        return "sdxl"
    return "sd2" if cfg.get("cross_attention_dim") == 1024 else "sd1"


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
    ours, theirs_family = family_of(control.net.config), backbone.family
    if ours != theirs_family and "sdxl" in (ours, theirs_family):
        raise ValueError(
            f"ControlNet {control.source!r} is an {FAMILY_NAMES[ours]} ControlNet and backbone {backbone.source!r} "
            f"is {FAMILY_NAMES[theirs_family]}; pick an {FAMILY_NAMES[theirs_family]} ControlNet for this backbone, "
            f"or an {FAMILY_NAMES[ours]} backbone for this ControlNet.")
    mine, theirs = _layout(control.net.config), _layout(backbone.unet.config)
    diff = [k for k in mine if mine[k] != theirs[k]]
    if diff:
        detail = "; ".join(f"{k}: ControlNet {mine[k]} vs backbone {theirs[k]}" for k in diff)
        raise ValueError(
            f"ControlNet {control.source!r} does not fit backbone {backbone.source!r} ({detail}). "
            "Pick a ControlNet made for this backbone's family (SD 1.x ControlNets for SD 1.x backbones, "
            "the demo's for the demo)."
        )
