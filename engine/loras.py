"""LoRAs: files under models/loras/, A1111's `<lora:name:weight>` prompt tags, and applying
several LoRAs to a locked backbone for one generation.

A file is read once (kept while unchanged on disk), in either layout a user meets: A1111/kohya
(`lora_unet_*`, `lora_te_*`, `lora_te1_*`/`lora_te2_*` with `.alpha`) or diffusers'
(`unet.*`/`text_encoder*.*` with `lora_A`/`lora_B`). diffusers converts kohya keys
(`lora_state_dict`) and loads the UNet part (`load_lora_into_unet`, on PEFT). The text-encoder
part goes through PEFT's own `inject_adapter_in_model` + `set_peft_model_state_dict`: diffusers
hands it to transformers' `load_adapter`, which transformers 5 allows only with peft>=0.22.

Adapters are set for one generation and removed after it, and PEFT's wrapper layers are
replaced by the original layers again, never fused: fuse/unfuse rounds, so the locked backbone
would drift; this way a request without a LoRA after one with it is bit-identical to one that
never had it.

That is the eager way. On the fast path (a manager with a predictor) the UNet is not touched at
all: its LoRAs go into the padded slots of a view that shares its weights (engine/lora_slots.py),
whose CUDA graphs stay captured across generations, so a weight change or a swap to a LoRA of the
same (or lower) rank on the same (or fewer) layers captures and compiles nothing. The text
encoders take their LoRA parts in place either way (they run once per generation, eagerly).
"""
from __future__ import annotations

import logging
import re
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import torch

from . import limits
from .kept import Kept, number
from .loading import models_dir
from .loading.safe_load import CHECKPOINT_SUFFIXES, load_state_dict
from .models import FAMILY_NAMES, Backbone
from .values import LoraChoice

log = logging.getLogger(__name__)

LORAS_FOLDER = "loras"
DIFFUSERS_WEIGHT_NAMES = ("pytorch_lora_weights.safetensors", "pytorch_lora_weights.bin")
TEXT_ENCODERS = ("text_encoder", "text_encoder_2")

# `<lora:name>` or `<lora:name:weight>`; A1111's optional further fields (a separate UNet
# weight, `lbw=`) are read past and warned about.
TAG = re.compile(r"<lora:([^:>]+)(?::([^:>]*))?((?::[^>]*)?)>", re.IGNORECASE)

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


def split_prompt(prompt: str) -> tuple[str, list[LoraChoice], list[str]]:
    """The prompt without its `<lora:...>` tags, the LoRAs they ask for, and warnings about
    tags that could not be read as asked (a bad weight, extra fields)."""
    choices, warnings = [], []

    def take(match: re.Match) -> str:
        name, weight_text, extra = match.group(1).strip(), match.group(2), match.group(3)
        weight = 1.0
        if weight_text is not None and weight_text.strip():
            try:
                weight = float(weight_text)
            except ValueError:
                warnings.append(f"{match.group(0)}: {weight_text!r} is not a number; LoRA {name!r} runs at weight 1.")
        if extra:
            warnings.append(f"{match.group(0)}: only one weight is read (for the UNet and the text "
                            f"encoders alike); {extra[1:]!r} is ignored.")
        try:
            choices.append(LoraChoice(name, weight))
        except ValueError as e:
            warnings.append(f"{match.group(0)} is skipped: {e}")
        return ""

    clean = TAG.sub(take, prompt)
    # a tag's own spaces and commas go with it, as A1111 leaves a readable prompt behind
    clean = re.sub(r"\s*,(\s*,)+", ",", re.sub(r"[ \t]{2,}", " ", clean)).strip(" ,\t")
    return clean, choices, warnings


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


class _Files:
    """Read LoRA files, kept while the file on disk is unchanged (path, size, mtime) and while
    the same backbone asks: a weight change costs no reading."""

    def __init__(self, keep: int = 8):
        self._kept = Kept(keep)

    def get(self, name: str, path: Path, backbone: Backbone) -> LoraFile:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns, number(backbone.unet))
        return self._kept.get(key, lambda: read_lora(name, path, backbone))


_files = _Files()


def resolve(choices, folder: Path | None = None) -> tuple[list[tuple[LoraChoice, Path]], list[str]]:
    """The installed file of each choice and a warning for each name that is not installed
    (the rest runs, as A1111 does). A name chosen twice keeps its last weight."""
    merged: dict[str, LoraChoice] = {}
    for choice in choices:
        merged.pop(choice.name.lower(), None)
        merged[choice.name.lower()] = choice
    found, warnings = [], []
    for choice in merged.values():
        path = find_lora(choice.name, folder)
        if path is None:
            root = loras_dir(folder)
            warnings.append(f"LoRA {choice.name!r} is not installed (no such file in {root}); it was left out.")
        elif choice.weight != 0:      # weight 0 adds nothing, so it costs nothing
            found.append((choice, path))
    if len(found) > limits.MAX_LORAS:
        raise LoraError(f"{len(found)} LoRAs asked for; at most {limits.MAX_LORAS} run at once.")
    return found, warnings


class _Exclusive:
    """Generations without LoRAs share a backbone; one with LoRAs has it to itself while its
    adapters are on (a readers-writer lock, writers waiting for readers to finish)."""

    def __init__(self):
        self._cond, self._readers, self._writer = threading.Condition(), 0, False

    @contextmanager
    def shared(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._writer)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._writer and self._readers == 0)
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


_locks: dict[int, _Exclusive] = {}
_locks_lock = threading.Lock()


def _lock_for(backbone: Backbone) -> _Exclusive:
    with _locks_lock:
        return _locks.setdefault(id(backbone.unet), _Exclusive())


@dataclass(frozen=True)
class Applied:
    """What a generation runs on inside `applied`: the backbone itself, or (on the fast path) a
    copy of it whose UNet is a LoRA view (engine/lora_slots.py); `fast` says whether the fast
    path may serve it (False when the LoRAs sit in the locked UNet itself, the eager way)."""

    backbone: Backbone
    fast: bool


@contextmanager
def applied(backbone: Backbone, chosen: list[tuple[LoraChoice, Path]], views=None,
            alone: bool = False) -> Iterator[Applied]:
    """Inside the block the chosen LoRAs act, each at its weight; after it the backbone's modules
    are the original modules again, bit for bit.

    The text encoders carry them in place (they run once per generation, eagerly). The UNet: with
    `views` (a `lora_slots.LoraViews`, the fast path's), the LoRAs go into the slots of a view that
    shares the UNet's weights, which the block's `Applied.backbone` runs, and the UNet itself is
    never touched; without, or for a LoRA the slots cannot hold, into the UNet in place. `alone`:
    the generation has the backbone to itself even without LoRAs (it sets IP-Adapter processors)."""
    if not chosen:
        lock = _lock_for(backbone)
        with (lock.exclusive() if alone else lock.shared()):
            yield Applied(backbone, True)
        return
    from diffusers.loaders import StableDiffusionLoraLoaderMixin
    from diffusers.utils.peft_utils import set_weights_and_activate_adapters
    from peft import inject_adapter_in_model, set_peft_model_state_dict

    from . import lora_slots

    files = [_files.get(choice.name, path, backbone) for choice, path in chosen]
    with _lock_for(backbone).exclusive():
        view = None
        if views is not None:
            try:
                parts = [(lora, part, choice.weight) for (choice, _), lora in zip(chosen, files)
                         if (part := views.part(lora)) is not None]
                view = views.view_for(backbone.unet, parts) if parts else None
            except lora_slots.SlotsUnsupported as e:
                log.warning("the LoRAs cannot go on the fast path (%s); this generation runs eagerly", e)
                views = None
        names = {"unet": [], **{p: [] for p in TEXT_ENCODERS}}
        weights = {"unet": [], **{p: [] for p in TEXT_ENCODERS}}
        try:
            for i, ((choice, _), lora) in enumerate(zip(chosen, files)):
                adapter = f"studio_lora_{i}"
                if lora.unet and views is None:
                    StableDiffusionLoraLoaderMixin.load_lora_into_unet(
                        lora.unet, lora.network_alphas, backbone.unet, adapter_name=adapter)
                    names["unet"].append(adapter)
                    weights["unet"].append(choice.weight)
                for prefix, (state_dict, config) in lora.text_encoders.items():
                    encoder = getattr(backbone, prefix)
                    with warnings.catch_warnings():
                        # PEFT warns that a second adapter joins the first: that is the point here
                        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                        inject_adapter_in_model(config, encoder, adapter_name=adapter)
                    result = set_peft_model_state_dict(encoder, state_dict, adapter_name=adapter)
                    missing = [k for k in getattr(result, "unexpected_keys", []) if adapter in k]
                    if missing:
                        raise LoraError(f"LoRA file {lora.path.name}: {len(missing)} text-encoder tensors found no "
                                        f"layer (e.g. {missing[0]}).")
                    names[prefix].append(adapter)
                    weights[prefix].append(choice.weight)
            if names["unet"]:
                backbone.unet.set_adapters(names["unet"], weights["unet"])
            for prefix in TEXT_ENCODERS:
                if names[prefix]:
                    set_weights_and_activate_adapters(getattr(backbone, prefix), names[prefix], weights[prefix])
            runs_on = backbone if view is None else replace(backbone, unet=view.module)
            yield Applied(runs_on, fast=views is not None)
        finally:
            for module in (backbone.unet, backbone.text_encoder, backbone.text_encoder_2):
                if module is not None:
                    _restore(module)


def _restore(model: torch.nn.Module) -> None:
    """Put every PEFT-wrapped layer's original layer back and drop PEFT's bookkeeping, so the
    module is the one that was loaded (same objects, same parameters, same state-dict keys)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    wrapped = [(name, m) for name, m in model.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, module in wrapped:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
    for attr in ("peft_config", "_hf_peft_config_loaded"):
        if attr in model.__dict__:
            delattr(model, attr)
    if wrapped:
        log.debug("LoRA layers removed from %s (%d layers)", type(model).__name__, len(wrapped))
