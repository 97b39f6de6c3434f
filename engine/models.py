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


def adapter_family(cfg) -> str:
    """A T2I-Adapter's family: SDXL's adapters are `full_adapter_xl`; the others serve SD 1.x/2.x."""
    return "sdxl" if cfg.get("adapter_type") == "full_adapter_xl" else "sd1"


def _adapter_levels(cfg) -> list:
    """The channels of each feature map an adapter gives (the light adapter repeats its last)."""
    channels = list(cfg.get("channels") or ())
    return channels + channels[-1:] if cfg.get("adapter_type") == "light_adapter" else channels


def _check_adapter_fits(control: ControlModel, backbone: Backbone) -> None:
    cfg = control.net.config
    ours, theirs = adapter_family(cfg), backbone.family
    if (ours == "sdxl") != (theirs == "sdxl"):
        mine = "an SDXL" if ours == "sdxl" else "an SD 1.x/2.x"
        want = "an SDXL T2I-Adapter (t2i-adapter_xl_*, adapter_type full_adapter_xl)" if theirs == "sdxl" else \
            "an SD 1.5 T2I-Adapter (t2iadapter_*_sd15*)"
        raise ValueError(f"T2I-Adapter {control.source!r} is {mine} adapter and backbone {backbone.source!r} is "
                         f"{FAMILY_NAMES[theirs]}; pick {want} for this backbone.")
    blocks = list(backbone.unet.config.get("block_out_channels") or ())
    levels, expected = _adapter_levels(cfg), blocks + blocks[-1:]
    if levels != expected[:len(levels)]:
        raise ValueError(f"T2I-Adapter {control.source!r} gives features of {levels} channels, but backbone "
                         f"{backbone.source!r} takes {expected[:len(levels)]}: the adapter was made for another "
                         "architecture. Pick an adapter made for this backbone's family.")


def check_fits(control: ControlModel, backbone: Backbone) -> None:
    """Refuse a ControlNet or adapter made for another architecture, naming both, instead of
    failing later with a shape error deep inside the UNet."""
    if type(control.net).__name__ == "T2IAdapter":
        return _check_adapter_fits(control, backbone)
    ours, theirs_family = family_of(control.net.config), backbone.family
    if "num_control_type" in control.net.config and theirs_family != "sdxl":
        raise ValueError(f"{control.source!r} is a ControlNet-Union model, which exists only for SDXL, and backbone "
                         f"{backbone.source!r} is {FAMILY_NAMES[theirs_family]}; use an SDXL backbone, or a ControlNet "
                         f"of the kind you need for {FAMILY_NAMES[theirs_family]}.")
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
