"""IP-Adapter files and their CLIP image encoders under models/ipadapters/, read and checked.

The folder holds h94/IP-Adapter's files as they are published, and the image encoders beside them:

    models/ipadapters/
        ip-adapter_sd15.safetensors              h94's models/ (ViT-H encoder)
        ip-adapter-plus_sd15.bin                 (.bin is read through the safe unpickler)
        ip-adapter_sdxl.safetensors              h94's sdxl_models/ (ViT-bigG encoder)
        ip-adapter-plus_sdxl_vit-h.safetensors   h94's sdxl_models/ (ViT-H encoder)
        image_encoder/                           ViT-H/14: h94's models/image_encoder (config.json + weights)
        image_encoder_sdxl/                      ViT-bigG/14: h94's sdxl_models/image_encoder

An adapter's name is its file's stem (files in sub-folders count too). Its encoder is one of the
`image_encoder*` folders beside the file or at the top of models/ipadapters/ whose widths fit it
(a basic adapter reads the encoder's projected embedding, a plus adapter its penultimate hidden
states); where two fit, a name with "sdxl" but not "vit-h" prefers `image_encoder_sdxl`, any
other `image_encoder`. So a copy of h94's `models/` or `sdxl_models/` folder, with its own
`image_encoder/` inside, works as it is.

A file is `image_proj.*` + `ip_adapter.*` tensors: the projection of the image embedding into
tokens (`proj.weight`: basic; `latents` + `proj_in`: plus, the Resampler; `proj.3.weight`: full)
and, per cross-attention layer of the UNet in diffusers' order, `<k>.to_k_ip.weight` and
`<k>.to_v_ip.weight` with k = 1, 3, 5, ... (diffusers' `_convert_ip_adapter_attn_to_diffusers`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .paths import models_dir
from .safe_load import CHECKPOINT_SUFFIXES, load_state_dict

IPADAPTERS_FOLDER = "ipadapters"
ENCODER_PREFIX = "image_encoder"
# kept here, not taken from .family or ..models: engine.values asks this module whether a name is an
# IP-Adapter, and those import engine.values
FAMILY_NAMES = {"sdxl": "SDXL", "sd2": "SD 2.x", "sd1": "SD 1.x"}
WIDTH_FAMILIES = {768: "sd1", 1024: "sd2", 2048: "sdxl"}    # the cross-attention width a family's UNet reads


def ipadapters_dir() -> Path:
    return models_dir() / IPADAPTERS_FOLDER


def _in_encoder(path: Path, root: Path) -> bool:
    return any(part.startswith(ENCODER_PREFIX) for part in path.relative_to(root).parts[:-1])


def installed_ip_adapters(folder: Path | None = None) -> dict[str, Path]:
    """{name: file} of the IP-Adapters a unit can pick, sorted by name (encoder folders left out)."""
    root = Path(folder) if folder is not None else ipadapters_dir()
    if not root.is_dir():
        return {}
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if (path.is_file() and path.suffix.lower() in CHECKPOINT_SUFFIXES and not path.name.startswith(".")
                and not _in_encoder(path, root)):
            found.setdefault(path.stem, path)
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))


def find_ip_adapter(name: str | None, folder: Path | None = None) -> Path | None:
    """The file of an installed IP-Adapter by name (case-insensitive), or None."""
    if not isinstance(name, str) or not name.strip() or name.startswith("demo"):
        return None
    installed = installed_ip_adapters(folder)
    if name in installed:
        return installed[name]
    return {k.lower(): v for k, v in installed.items()}.get(name.strip().lower())


def is_ip_adapter(model: str | None) -> bool:
    """Whether a unit's model names an IP-Adapter installed under models/ipadapters/."""
    return find_ip_adapter(model) is not None


def file_family(path: Path) -> str | None:
    """The family an adapter file was made for, from its safetensors header (its first layer's
    cross-attention width); None for a pickle or an unknown width (loading still checks)."""
    if path.suffix.lower() != ".safetensors":
        return None
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            if "ip_adapter.1.to_k_ip.weight" in f.keys():
                return WIDTH_FAMILIES.get(int(f.get_slice("ip_adapter.1.to_k_ip.weight").get_shape()[1]))
    except Exception:      # a corrupt file is reported when used; here its family is just unknown
        return None
    return None


def describe(folder: Path | None = None) -> list[dict]:
    """What the pickers and the APIs list: [{"name", "path", "family"}] per installed IP-Adapter."""
    return [{"name": name, "path": str(path), "family": file_family(path)}
            for name, path in installed_ip_adapters(folder).items()]


@dataclass(frozen=True)
class IPAdapterFile:
    """One IP-Adapter file's tensors in diffusers' split ({"image_proj": ..., "ip_adapter": ...})
    and what they say: the projection's kind, the encoder width it reads, the cross-attention
    width (the family) and the (out, in) shape of each layer's to_k_ip."""

    name: str
    path: Path
    state_dict: dict
    kind: str                    # "basic" (ImageProjection), "plus" (Resampler), "full"
    encoder_width: int           # projection_dim (basic) or hidden_size (plus, full) of the encoder
    cross_attention_dim: int
    layers: tuple                # ((out, in) of to_k_ip) per cross-attention layer, in key order

    @property
    def family(self) -> str | None:
        return WIDTH_FAMILIES.get(self.cross_attention_dim)

    @property
    def reads_hidden_states(self) -> bool:
        return self.kind != "basic"


def read_ip_adapter(name: str, path: Path) -> IPAdapterFile:
    """Read and sort an h94-layout file; ValueError naming the file for anything else."""
    try:
        raw = load_state_dict(path, nested=True)
    except ValueError as e:
        raise ValueError(f"IP-Adapter {name!r}: {e}") from None
    split = {"image_proj": {}, "ip_adapter": {}}
    for key, value in raw.items():
        head, _, rest = key.partition(".")
        if head in split and rest:
            split[head][rest] = value
    proj, attn = split["image_proj"], split["ip_adapter"]
    if not proj or not attn:
        raise ValueError(f"IP-Adapter file {path.name} ({path.parent}) is not in h94's IP-Adapter layout: it needs "
                         f"image_proj.* and ip_adapter.* tensors, it has keys like {sorted(raw)[:3]}. FaceID and other "
                         "kinds with LoRA parts are not read; use an h94/IP-Adapter file.")
    if "proj.weight" in proj:
        kind, encoder_width = "basic", int(proj["proj.weight"].shape[1])
    elif "latents" in proj and "proj_in.weight" in proj:
        kind, encoder_width = "plus", int(proj["proj_in.weight"].shape[1])
    elif "proj.3.weight" in proj:
        kind, encoder_width = "full", int(proj["proj.0.weight"].shape[1])
    else:
        raise ValueError(f"IP-Adapter file {path.name}: its image projection ({sorted(proj)[:3]}...) is none of "
                         "the basic, plus (Resampler) or full kinds; FaceID adapters are not supported.")
    layers, k = [], 1
    while f"{k}.to_k_ip.weight" in attn:
        to_k, to_v = attn[f"{k}.to_k_ip.weight"], attn.get(f"{k}.to_v_ip.weight")
        if to_v is None or to_v.shape != to_k.shape or to_k.ndim != 2:
            raise ValueError(f"IP-Adapter file {path.name}: layer {k}'s to_k_ip/to_v_ip weights are missing or "
                             "mismatched; the file is damaged. Download it again.")
        layers.append(tuple(int(n) for n in to_k.shape))
        k += 2
    if not layers or len(attn) != 2 * len(layers):
        raise ValueError(f"IP-Adapter file {path.name}: its ip_adapter.* keys are not the 1, 3, 5, ... .to_k_ip/"
                         ".to_v_ip layers of h94's layout; the file is damaged or of another kind.")
    return IPAdapterFile(name, path, split, kind, encoder_width, layers[0][1], tuple(layers))


def check_fits(adapter: IPAdapterFile, unet, backbone_source: str, backbone_family: str) -> None:
    """The adapter's layers must be the backbone UNet's cross-attention layers, width for width
    (diffusers would fail deep inside its state-dict loading otherwise); the message names the
    file and both families."""
    wanted = [(_hidden_size(unet, name), unet.config.cross_attention_dim) for name in unet.attn_processors
              if name.endswith("attn2.processor")]
    if list(adapter.layers) == wanted:
        return
    theirs = FAMILY_NAMES.get(adapter.family, f"a UNet of cross-attention width {adapter.cross_attention_dim}")
    ours = FAMILY_NAMES.get(backbone_family, backbone_family)
    raise ValueError(
        f"IP-Adapter {adapter.name!r} ({adapter.path}) is made for {theirs} ({len(adapter.layers)} cross-attention "
        f"layers of width {adapter.cross_attention_dim}); backbone {backbone_source!r} is {ours} ({len(wanted)} layers "
        f"of width {unet.config.cross_attention_dim}). Pick an IP-Adapter made for {ours}.")


def _hidden_size(unet, name: str) -> int:
    """The width of a cross-attention layer, as diffusers' converter reads it from the name."""
    blocks = list(unet.config.block_out_channels)
    if name.startswith("mid_block"):
        return blocks[-1]
    if name.startswith("up_blocks"):
        return list(reversed(blocks))[int(name[len("up_blocks.")])]
    return blocks[int(name[len("down_blocks.")])]


# -- the image encoders -----------------------------------------------------------------------

def _encoder_config(folder: Path) -> dict:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config.get("vision_config", config) if isinstance(config, dict) else {}


def encoder_width(folder: Path, hidden_states: bool) -> int | None:
    config = _encoder_config(folder)
    return config.get("hidden_size" if hidden_states else "projection_dim")


def encoder_folders(adapter_path: Path) -> list[Path]:
    """The `image_encoder*` folders an adapter may use: beside its file, then at the top of the folder."""
    seen, out = set(), []
    for where in (adapter_path.parent, ipadapters_dir()):
        if where.is_dir():
            for folder in sorted(where.iterdir()):
                if folder.is_dir() and folder.name.startswith(ENCODER_PREFIX) and folder.resolve() not in seen:
                    seen.add(folder.resolve())
                    out.append(folder)
    return out


def find_encoder(adapter: IPAdapterFile) -> Path:
    """The image encoder folder that fits the adapter; ValueError listing what was looked at."""
    folders = encoder_folders(adapter.path)
    fitting = [f for f in folders if encoder_width(f, adapter.reads_hidden_states) == adapter.encoder_width]
    prefer_bigg = "sdxl" in adapter.name.lower() and "vit-h" not in adapter.name.lower()
    fitting.sort(key=lambda f: (f.name.endswith("sdxl") != prefer_bigg, len(f.name)))
    if fitting:
        return fitting[0]
    which = "hidden size" if adapter.reads_hidden_states else "projection_dim"
    seen = ", ".join(f"{f} ({which} {encoder_width(f, adapter.reads_hidden_states) or 'no config.json'})"
                     for f in folders) or "none"
    usual = ("ViT-bigG/14, h94's sdxl_models/image_encoder, as image_encoder_sdxl/" if prefer_bigg else
             "ViT-H/14, h94's models/image_encoder, as image_encoder/")
    raise ValueError(
        f"IP-Adapter {adapter.name!r} ({adapter.path.name}) needs a CLIP image encoder with {which} "
        f"{adapter.encoder_width} in a folder named image_encoder* beside it or in {ipadapters_dir()}; found: {seen}. "
        f"Place its encoder ({usual}: config.json and model.safetensors) there.")


def load_encoder(folder: Path, dtype: torch.dtype, device):
    """transformers' CLIPVisionModelWithProjection from a local folder; ValueError naming it."""
    from transformers import CLIPVisionModelWithProjection
    try:
        model = CLIPVisionModelWithProjection.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
    except Exception as e:     # transformers raises OSError, ValueError, safetensors errors ... by cause
        raise ValueError(f"The CLIP image encoder in {folder} cannot be loaded ({type(e).__name__}: "
                         f"{str(e)[:200]}); it needs config.json and model.safetensors (or pytorch_model.bin) "
                         "of a CLIPVisionModelWithProjection. Copy it again.") from None
    return model.to(device).eval()
