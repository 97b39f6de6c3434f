"""LoRA files: what `models/loras/` holds, and reading one for a backbone.

A name is a file's stem (A1111's habit) or a diffusers folder's name. A file is read in either
layout a user meets: A1111/kohya (`lora_unet_*`, `lora_te_*`, `lora_te1_*`/`lora_te2_*` with
`.alpha`) or diffusers' (`unet.*`/`text_encoder*.*` with `lora_A`/`lora_B`): diffusers converts
kohya keys (`lora_state_dict`); the text-encoder parts are put in PEFT's naming with their
LoraConfig, as diffusers' `_load_lora_into_text_encoder` builds them. LyCORIS networks of other
kinds, another family's LoRA, a corrupt file and a LoRA whose layers do not fit are refused
(LoraError, naming the file). Applying them is engine/loras.py's job.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..models import FAMILY_NAMES, Backbone
from .paths import models_dir
from .safe_load import CHECKPOINT_SUFFIXES, load_state_dict

log = logging.getLogger(__name__)

LORAS_FOLDER = "loras"
DIFFUSERS_WEIGHT_NAMES = ("pytorch_lora_weights.safetensors", "pytorch_lora_weights.bin")
TEXT_ENCODERS = ("text_encoder", "text_encoder_2")

# Key fragments of LyCORIS's other decompositions, which diffusers does not read for SD/SDXL.
_LYCORIS = {"hada_w1_a": "LoHa", "hada_w2_a": "LoHa", "lokr_w1": "LoKr", "lokr_w2": "LoKr",
            "oft_blocks": "OFT", "oft_diag": "OFT", "lora_mid": "LoCon (CP decomposition)",
            ".diff": "full-difference (LyCORIS 'full')", "w_norm": "GLoRA", "a1.weight": "GLoRA"}

# The family a LoRA was made for, from its cross-attention width (the attn2 to_k input).
_WIDTH_FAMILY = {768: "sd1", 1024: "sd2", 2048: "sdxl"}


class LoraError(ValueError):
    """A LoRA that cannot be used as asked; the message names the file and what to do."""


def loras_dir(folder: Path | None = None) -> Path:
    return Path(folder) if folder is not None else models_dir() / LORAS_FOLDER


def installed_loras(folder: Path | None = None) -> dict[str, Path]:
    """{name: path} of the LoRAs a user can pick, sorted by name. A file's name is its stem
    (A1111's habit: `<lora:stem:w>`), a diffusers folder's name is the folder's; files in
    sub-folders count too, by their own stem."""
    root = loras_dir(folder)
    if not root.is_dir():
        return {}
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in CHECKPOINT_SUFFIXES and not path.name.startswith("."):
            name = path.parent.name if path.name in DIFFUSERS_WEIGHT_NAMES and path.parent != root else path.stem
            found.setdefault(name, path)
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))


def read_header(path: Path) -> tuple[str | None, dict]:
    """The family ("sd1", "sd2", "sdxl") a LoRA file was made for and its text metadata (kohya's
    `ss_*` training notes), from the safetensors header alone (no tensor read). (None, {}) for a
    pickle, and a None family for a width no family has."""
    if path.suffix.lower() != ".safetensors":
        return None, {}
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            keys, metadata = list(f.keys()), dict(f.metadata() or {})
            if any(k.startswith(("lora_te2_", "text_encoder_2.")) for k in keys):
                return "sdxl", metadata
            for key in keys:
                if ("attn2_to_k" in key or "attn2.to_k" in key) and ("lora_down" in key or "lora_A" in key):
                    return _WIDTH_FAMILY.get(int(f.get_slice(key).get_shape()[1])), metadata
            return None, metadata
    except Exception as e:      # a corrupt file is reported when used; here it is just unknown
        log.info("cannot read %s's header: %s", path, e)
        return None, {}


def describe(folder: Path | None = None) -> list[dict]:
    """What the pickers and the APIs list: [{"name", "path", "family", "metadata"}] per LoRA."""
    out = []
    for name, path in installed_loras(folder).items():
        family, metadata = read_header(path)
        out.append({"name": name, "path": str(path), "family": family, "metadata": metadata})
    return out


def find_lora(name: str, folder: Path | None = None) -> Path | None:
    """The file of an installed LoRA by name (case-insensitive, as A1111 matches), or None."""
    installed = installed_loras(folder)
    if name in installed:
        return installed[name]
    lowered = {k.lower(): v for k, v in installed.items()}
    return lowered.get(name.strip().lower())


@dataclass(frozen=True)
class LoraFile:
    """A LoRA's tensors as diffusers' loaders take them: the UNet part in diffusers' naming
    with kohya's alphas (or None), and each text encoder's part in PEFT's naming with its config."""

    name: str
    path: Path
    unet: dict
    network_alphas: dict | None
    text_encoders: dict          # "text_encoder"/"text_encoder_2" -> (peft state dict, LoraConfig)
    family: str | None           # what it was made for, from its widths (None: unknown)


def _refuse_lycoris(keys, path: Path) -> None:
    for key in keys:
        for fragment, kind in _LYCORIS.items():
            if fragment in key:
                raise LoraError(
                    f"LoRA file {path.name} is a LyCORIS {kind} network (key {key!r}); the studio reads plain "
                    "LoRA (and LoCon) files in the A1111/kohya or diffusers layout only. Use a plain LoRA version "
                    "of it, or convert it to a LoRA.")


def _family(unet_sd: dict, te_parts: dict) -> str | None:
    if "text_encoder_2" in te_parts:
        return "sdxl"
    for key, tensor in unet_sd.items():
        if "attn2.to_k" in key and "lora_A" in key and tensor.ndim == 2:
            return _WIDTH_FAMILY.get(int(tensor.shape[1]))
    return None


def _text_encoder_part(state_dict: dict, alphas: dict | None, prefix: str, text_encoder) -> tuple | None:
    """One text encoder's tensors in PEFT's naming and their LoraConfig, as diffusers'
    `_load_lora_into_text_encoder` builds them (ranks from lora_B, alphas from kohya's)."""
    from diffusers.utils.peft_utils import get_peft_kwargs
    from diffusers.utils.state_dict_utils import convert_state_dict_to_diffusers, convert_state_dict_to_peft
    from peft import LoraConfig

    part = {k.removeprefix(f"{prefix}."): v for k, v in state_dict.items() if k.startswith(f"{prefix}.")}
    if not part:
        return None
    part = convert_state_dict_to_peft(convert_state_dict_to_diffusers(part))
    if not hasattr(text_encoder, "text_model"):
        part = {k.removeprefix("text_model."): v for k, v in part.items()}
    ranks = {k: v.shape[1] for k, v in part.items() if k.endswith("lora_B.weight")}
    if not ranks:
        return None
    own_alphas = None
    if alphas:
        own_alphas = {k.removeprefix(f"{prefix}."): v for k, v in alphas.items() if k.split(".")[0] == prefix}
    return part, LoraConfig(**get_peft_kwargs(ranks, own_alphas, part, is_unet=False))


def read_lora(name: str, path: Path, backbone: Backbone) -> LoraFile:
    """Read one LoRA file for `backbone`, refusing (LoraError, naming the file) a corrupt file,
    a LyCORIS network of another kind, and a LoRA made for another family or shape."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin, StableDiffusionXLLoraLoaderMixin

    try:
        raw = load_state_dict(path)
    except ValueError as e:
        raise LoraError(f"LoRA {name!r}: {e}") from None
    _refuse_lycoris(raw, path)
    mixin = StableDiffusionXLLoraLoaderMixin if backbone.family == "sdxl" else StableDiffusionLoraLoaderMixin
    try:
        state_dict, alphas = mixin.lora_state_dict(raw, unet_config=backbone.unet.config)
    except Exception as e:   # diffusers' converter raises ValueError, KeyError or worse on a foreign layout
        raise LoraError(f"LoRA file {path.name} is not a LoRA diffusers can read ({type(e).__name__}: {e}).") from None
    unet_sd = {k: v for k, v in state_dict.items() if k.startswith("unet.")}
    te_parts = {}
    for prefix in TEXT_ENCODERS:
        encoder = getattr(backbone, prefix, None)
        if any(k.startswith(f"{prefix}.") for k in state_dict):
            if encoder is None:
                raise LoraError(_wrong_family(path, "sdxl", backbone))
            part = _text_encoder_part(state_dict, alphas, prefix, encoder)
            if part is not None:
                te_parts[prefix] = part
    if not unet_sd and not te_parts:
        raise LoraError(f"LoRA file {path.name} holds no UNet or text-encoder LoRA weights (keys like "
                        f"{sorted(raw)[:2]}); is it a LoRA for Stable Diffusion?")
    family = _family({k.removeprefix("unet."): v for k, v in unet_sd.items()}, te_parts)
    if family is not None and family != backbone.family:
        raise LoraError(_wrong_family(path, family, backbone))
    _check_shapes(path, backbone, unet_sd, te_parts)
    return LoraFile(name, path, unet_sd, alphas, te_parts, family)


def _wrong_family(path: Path, family: str, backbone: Backbone) -> str:
    return (f"LoRA file {path.name} is made for {FAMILY_NAMES.get(family, family)} and backbone {backbone.source!r} "
            f"is {FAMILY_NAMES[backbone.family]}; pick a {FAMILY_NAMES[backbone.family]} LoRA for this backbone.")


def _check_shapes(path: Path, backbone: Backbone, unet_sd: dict, te_parts: dict) -> None:
    """Every LoRA layer must sit on a layer of the backbone with its in and out widths, else
    PEFT would fail deep inside the first step."""
    modules = {"unet": dict(backbone.unet.named_modules())}
    for prefix in te_parts:
        modules[prefix] = dict(getattr(backbone, prefix).named_modules())
    parts = [("unet", {k.removeprefix("unet."): v for k, v in unet_sd.items()})]
    parts += [(prefix, sd) for prefix, (sd, _) in te_parts.items()]
    for prefix, sd in parts:
        for key, tensor in sd.items():
            if ".lora_A." not in key or not key.endswith(".weight"):
                continue
            target = key.split(".lora_A.")[0]
            layer = modules[prefix].get(target)
            weight = getattr(layer, "weight", None)
            down, up = tensor, sd.get(key.replace(".lora_A.", ".lora_B."))
            ok = weight is not None and up is not None and down.shape[1] == weight.shape[1] and up.shape[0] == weight.shape[0]
            if not ok:
                have = "no such layer" if weight is None else f"layer {tuple(weight.shape)}"
                raise LoraError(
                    f"LoRA file {path.name} does not fit backbone {backbone.source!r}: {prefix}.{target} is "
                    f"{tuple(down.shape)}->{None if up is None else tuple(up.shape)} in the LoRA, {have} in the backbone. "
                    "It was made for another model; pick one made for this backbone.")
