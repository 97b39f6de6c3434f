"""A model's family (SD 1.x, SD 2.x, SDXL) told without loading it: from a diffusers folder's
config, or from a .safetensors file's header (key names and shapes, no tensor read). What the
studio's pickers show and filter by; loading itself still checks (engine.models.check_fits).
Pickled .ckpt/.pth files are not opened here (that would mean unpickling): their family is None,
unless a control model's `<name>.config/` beside it says."""
from __future__ import annotations

import json
from pathlib import Path

from ..models import FAMILY_NAMES, adapter_family, family_of
from .detect import CONTROL_PREFIX, DIFFUSERS_ATTN2, LDM_ATTN2, UNET_PREFIX
from .places import resolve, sibling_config

WIDTH_FAMILIES = {768: "sd1", 1024: "sd2", 2048: "sdxl"}


def model_family(source: str, role: str) -> str | None:
    """"sd1", "sd2", "sdxl" for a backbone or ControlNet source (role "backbone"/"controlnet"),
    None when it cannot be told cheaply (a pickle, an unreadable file, an unknown layout)."""
    try:
        path = resolve(source, role)
        if path.is_dir():
            return _folder_family(path, role)
        beside = sibling_config(path)
        if beside is not None and role != "backbone":   # a control file's own config says it, pickles too
            return _folder_family(beside, role)
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
            if not isinstance(cfg, dict):
                return None
            return adapter_family(cfg) if cfg.get("_class_name") == "T2IAdapter" else family_of(cfg)
    return None


def _file_family(path: Path) -> str | None:
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        if any(k.startswith("conditioner.embedders.") for k in keys) or "add_embedding.linear_1.weight" in keys:
            return "sdxl"
        for key in ("adapter.conv_in.weight", "conv_in.weight"):
            if key in keys and not any(k.startswith("down_blocks.") for k in keys):   # a T2I-Adapter
                # the input conv reads channels x unshuffle^2: SDXL's adapters unshuffle by 16, SD 1.5's by 8
                return "sdxl" if f.get_slice(key).get_shape()[1] in (256, 768) else "sd1"
        for key in (UNET_PREFIX + LDM_ATTN2, CONTROL_PREFIX + LDM_ATTN2, LDM_ATTN2, DIFFUSERS_ATTN2):
            if key in keys:
                return WIDTH_FAMILIES.get(f.get_slice(key).get_shape()[1])
    return None
