"""LoRAs for one generation: A1111's `<lora:name:weight>` prompt tags, the installed file of
each choice, and applying several LoRAs to a locked backbone (files: engine/loading/loras.py).

Adapters are set for one generation and removed after it, and PEFT's wrapper layers are
replaced by the original layers again, never fused: fuse/unfuse rounds, so the locked backbone
would drift; this way a request without a LoRA after one with it is bit-identical to one that
never had it. diffusers loads the UNet part (`load_lora_into_unet`, on PEFT); the text-encoder
parts go through PEFT's own `inject_adapter_in_model` + `set_peft_model_state_dict`: diffusers
hands them to transformers' `load_adapter`, which transformers 5 allows only with peft>=0.22.

That is the eager way. On the fast path (a manager with a predictor) the backbone is not touched
at all: the LoRAs go into the padded slots of views of the UNet and the text encoders that share
their weights (engine/lora_slots.py); the UNet view's CUDA graphs stay captured across
generations, so a weight change or a swap to a LoRA of the same (or lower) rank on the same (or
fewer) layers captures and compiles nothing, and no layer is injected or removed.
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
from .loading.loras import (TEXT_ENCODERS, LoraError, LoraFile, describe, find_lora, installed_loras,  # noqa: F401
                            loras_dir, read_lora)
from .models import Backbone
from .values import LoraChoice

log = logging.getLogger(__name__)

# `<lora:name>` or `<lora:name:weight>`; A1111's optional further fields (a separate UNet
# weight, `lbw=`) are read past and warned about.
TAG = re.compile(r"<lora:([^:>]+)(?::([^:>]*))?((?::[^>]*)?)>", re.IGNORECASE)

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
    copy of it whose UNet and text encoders are LoRA views (engine/lora_slots.py); `fast` says
    whether the fast path may serve it (False when the LoRAs sit in the locked UNet itself, the
    eager way)."""

    backbone: Backbone
    fast: bool


@contextmanager
def applied(backbone: Backbone, chosen: list[tuple[LoraChoice, Path]], views=None,
            alone: bool = False) -> Iterator[Applied]:
    """Inside the block the chosen LoRAs act, each at its weight; after it the backbone's modules
    are the original modules again, bit for bit.

    With `views` (a `lora_slots.LoraViews`, the fast path's), the LoRAs go into the slots of views
    that share the UNet's and the text encoders' weights, which the block's `Applied.backbone`
    runs, and the backbone's modules are never touched; without, or for a LoRA the slots cannot
    hold, into the UNet and the text encoders in place, taken out after the block. `alone`:
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
        swapped = {}          # module name -> its LoRA view's module (the fast path's way)
        if views is not None:
            try:
                parts = [(lora, views.parts(lora), choice.weight) for (choice, _), lora in zip(chosen, files)]
                for key in ("unet", *TEXT_ENCODERS):
                    module = getattr(backbone, key)
                    held = [(lora, p[key], weight) for lora, p, weight in parts if key in p]
                    if module is not None and held:
                        swapped[key] = views.view_for(module, held).module
            except lora_slots.SlotsUnsupported as e:
                log.warning("the LoRAs cannot go on the fast path (%s); this generation runs eagerly", e)
                views, swapped = None, {}
        names = {"unet": [], **{p: [] for p in TEXT_ENCODERS}}
        weights = {"unet": [], **{p: [] for p in TEXT_ENCODERS}}
        try:
            eager = list(zip(chosen, files)) if views is None else []    # else the views hold every part
            for i, ((choice, _), lora) in enumerate(eager):
                adapter = f"studio_lora_{i}"
                if lora.unet:
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
            yield Applied(replace(backbone, **swapped) if swapped else backbone, fast=views is not None)
        finally:
            if views is None:
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
