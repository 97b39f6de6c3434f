"""Loading models, in one direction: a source name -> a place (places: demo, folder, single
file, hub cache) -> a folder or single-file loader (folders, single_file) -> family and kind
detection (detect) -> reading tensors (safe_load: safetensors, safe unpickling). Paths and
environment overrides are read in paths; small JSON files in files; CLIP's tokenizer ships in
engine/configs (tokenizers). Nothing here writes under models/.

    load_backbone_components(source) -> dict(unet, vae, text_encoder, tokenizer, scheduler_config,
                                              recommended, source; SDXL: text_encoder_2, tokenizer_2)
    load_controlnet_model(source) -> a diffusers ControlNetModel
    recommended_settings(source), list_installed(), condition_kind(name),
    model_family(source, role) ("sd1"/"sd2"/"sdxl"/None, without loading), family_label(family)
"""
from __future__ import annotations

import torch

from .detect import CONDITION_ALIASES, condition_kind
from .family import family_label, model_family
from .files import RECOMMENDED_FILE, read_json_object, read_recommended, read_scheduler_config
from .folders import BACKBONE_PARTS, load_backbone_folder, load_controlnet_folder
from .paths import CONFIGS_DIR, REPO_ROOT, downloads_allowed, hf_cache_dir, models_dir, outputs_dir
from .places import list_installed, resolve, sibling_config
from .safe_load import CHECKPOINT_SUFFIXES, load_state_dict
from .single_file import load_backbone_file, load_controlnet_file


def load_backbone_components(source: str, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> dict:
    """dict(unet, vae, text_encoder, tokenizer, scheduler_config, source) for a backbone source."""
    path = resolve(source, "backbone")
    if path.is_dir():
        parts = load_backbone_folder(path, dtype, source)
    else:
        parts = load_backbone_file(path, dtype=dtype, config_dir=sibling_config(path), device=device)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if parts.get(name) is not None:
            parts[name] = parts[name].to(device).eval()
    return {**parts, "recommended": read_recommended(path), "source": source}


def recommended_settings(source: str) -> dict:
    """The request settings a backbone recommends for itself ({} when it names none), read
    without loading it: what the studio shows when an artist picks the backbone."""
    return read_recommended(resolve(source, "backbone"))


def load_controlnet_model(source: str, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """A diffusers ControlNetModel for a ControlNet source."""
    path = resolve(source, "controlnet")
    if path.is_dir():
        net = load_controlnet_folder(path, dtype, source)
    else:
        net = load_controlnet_file(path, dtype=dtype, config_dir=sibling_config(path))
    return net.to(device).eval()


__all__ = [
    "load_backbone_components", "load_controlnet_model", "recommended_settings", "list_installed", "condition_kind",
    "resolve", "models_dir", "outputs_dir", "hf_cache_dir", "downloads_allowed", "read_recommended",
    "read_json_object", "read_scheduler_config", "load_state_dict", "load_backbone_file", "load_controlnet_file",
    "load_backbone_folder", "load_controlnet_folder", "sibling_config", "CONDITION_ALIASES", "RECOMMENDED_FILE",
    "BACKBONE_PARTS", "CHECKPOINT_SUFFIXES", "CONFIGS_DIR", "REPO_ROOT", "model_family", "family_label",
]
