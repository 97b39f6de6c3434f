"""A model's family (SD 1.x, SD 2.x, SDXL) told without loading it: from a diffusers folder's
config, or from a .safetensors file's header (key names and shapes, no tensor read). What the
studio's pickers show and filter by; loading itself still checks (engine.models.check_fits).
Pickled .ckpt/.pth files are not opened here (that would mean unpickling): their family is None."""
from __future__ import annotations

import json
from pathlib import Path

from ..models import FAMILY_NAMES, family_of
from .detect import CONTROL_PREFIX, DIFFUSERS_ATTN2, LDM_ATTN2, UNET_PREFIX
from .places import resolve

WIDTH_FAMILIES = {768: "sd1", 1024: "sd2", 2048: "sdxl"}


def model_family(source: str, role: str) -> str | None:
    """"sd1", "sd2", "sdxl" for a backbone or ControlNet source (role "backbone"/"controlnet"),
    None when it cannot be told cheaply (a pickle, an unreadable file, an unknown layout)."""
    try:
        path = resolve(source, role)
        if path.is_dir():
            return _folder_family(path, role)
        if path.suffix.lower() == ".safetensors":
            return _file_family(path)
    except (OSError, ValueError):
        return None
    return None


def family_label(family: str | None) -> str:
    return FAMILY_NAMES.get(family, "unknown family")


def _folder_family(folder: Path, role: str) -> str | None:
    for config in ((folder / "unet" / "config.json",) if role == "backbone"
                   else (folder / "config.json", folder / "controlnet" / "config.json")):
        if config.is_file():
            cfg = json.loads(config.read_text())
            return family_of(cfg) if isinstance(cfg, dict) else None
    return None


def _file_family(path: Path) -> str | None:
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        if any(k.startswith("conditioner.embedders.") for k in keys) or "add_embedding.linear_1.weight" in keys:
            return "sdxl"
        for key in (UNET_PREFIX + LDM_ATTN2, CONTROL_PREFIX + LDM_ATTN2, LDM_ATTN2, DIFFUSERS_ATTN2):
            if key in keys:
                return WIDTH_FAMILIES.get(f.get_slice(key).get_shape()[1])
    return None
