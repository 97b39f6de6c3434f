"""LoRAs on the fast path: views of the locked UNet and text encoders that carry LoRA slots.

A CUDA graph replays the kernels it captured on the tensors it captured, so LoRA layers put into
the UNet and taken out again around each generation (engine/loras.py's eager way) would need a
new capture every time, and would leave the graphs of the plain UNet reading a changed module.
Here, instead, a generation with LoRAs runs on a *view*: a copy of the UNet's module tree (new
module objects) sharing every parameter and buffer with the UNet, whose layers the LoRAs touch
carry PEFT LoRA layers, one adapter ("slot") per LoRA. The locked UNet is never changed, so a
request without LoRAs runs its own graphs and makes the same picture, bit for bit. The fast path
keys its graphs and compiled modules by the module it is given (engine/fast.py), so a view has
graphs of its own. The text encoders get views the same way (they run eagerly, once per
generation): a LoRA's text-encoder part is then a copy into slots as well, not PEFT layers
injected into the encoder and taken out again around every generation, which cost 0.18 s (SD1.5)
and 0.75 s (SDXL) a generation on the GPU (bench/RESULTS.md).

A slot is padded to its rank (peft's `prepare_model_for_compiled_hotswap` does the same padding
for diffusers' `enable_lora_hotswap`): its lora_A/lora_B are zero past the LoRA's own rank, and
its scales (weight * alpha / rank, per layer) are one tensor whose 0-d views the PEFT layers read
as their scaling. So, with the graphs kept:
- a weight change is one multiply into that tensor (a graph input);
- a swap to a LoRA on the slot's layers (or fewer) of the slot's rank (or lower) is a copy into
  the slot's tensors, in place (peft's `hotswap_adapter_from_state_dict` copies the same way);
- any other LoRA makes a new *layout* (per slot: the union of the layers, the larger rank), so a
  new view whose graphs are captured (and compiled) anew; the log says so, and the old view's
  graphs are forgotten before its tensors go.
A view serves one number of LoRAs; `keep` views (by number) stay per module.
"""
from __future__ import annotations

import copy
import logging
import re
import threading
import warnings
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

SLOT = "studio_slot_{}"


class SlotsUnsupported(ValueError):
    """A LoRA the slots cannot hold (DoRA, LoRA biases, a layer kind PEFT pads no rank of): its
    generation runs on the eager path instead."""


@dataclass(frozen=True)
class Part:
    """One LoRA's tensors for one module (the UNet, a text encoder) by layer:
    {module name: (lora_A, lora_B, alpha / rank)}."""

    layers: dict
    rank: int


def unet_part(unet_sd: dict, network_alphas: dict | None) -> Part | None:
    """A LoRA file's UNet part (diffusers' naming, `unet.` keys, kohya alphas) by layer, with each
    layer's alpha/rank as diffusers' `load_lora_adapter` + PEFT's LoraModel would set it."""
    from diffusers.utils.peft_utils import _create_lora_config
    from diffusers.utils.state_dict_utils import convert_unet_state_dict_to_peft

    sd = {k.removeprefix("unet."): v for k, v in unet_sd.items() if k.startswith("unet.")}
    if not sd:
        return None
    if "lora_A" not in next(iter(sd)):
        sd = convert_unet_state_dict_to_peft(sd)
    if any("lora_magnitude_vector" in k or k.endswith("lora_B.bias") for k in sd):
        raise SlotsUnsupported("a DoRA or LoRA-bias network")
    ranks = {f"^{k}": v.shape[1] for k, v in sd.items() if "lora_B" in k and v.ndim > 1}
    alphas = {k.removeprefix("unet."): v for k, v in (network_alphas or {}).items() if k.startswith("unet.")}
    return _by_layer(sd, _create_lora_config(sd, alphas or None, None, ranks))


def text_encoder_part(state_dict: dict, config) -> Part | None:
    """A LoRA file's part for one text encoder (PEFT's naming and its LoraConfig, as
    engine/loading/loras.py reads it) by layer."""
    if getattr(config, "use_dora", False) or any(k.endswith("lora_B.bias") for k in state_dict):
        raise SlotsUnsupported("a DoRA or LoRA-bias network")
    return _by_layer(state_dict, config)


def _by_layer(sd: dict, config) -> Part | None:
    """{layer: (lora_A, lora_B, alpha / rank)} with each layer's rank and alpha as PEFT's LoraModel
    sets them from `config` (its rank and alpha patterns)."""
    from peft.utils.other import get_pattern_key

    layers = {}
    for key, down in sd.items():
        if not key.endswith(".lora_A.weight"):
            continue
        name = key[: -len(".lora_A.weight")]
        up = sd[f"{name}.lora_B.weight"]
        r = config.rank_pattern.get(get_pattern_key(config.rank_pattern.keys(), name), config.r)
        alpha = config.alpha_pattern.get(get_pattern_key(config.alpha_pattern.keys(), name), config.lora_alpha)
        layers[name] = (down, up, float(alpha) / float(r))
    if not layers:
        return None
    return Part(layers, max(int(up.shape[1]) for _, up, _ in layers.values()))


def structure_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A new module tree of the same classes whose parameters and buffers are the same tensors:
    changing the copy's children leaves `module` as it is."""
    clone = copy.copy(module)
    clone._parameters = dict(module._parameters)
    clone._buffers = dict(module._buffers)
    clone._non_persistent_buffers_set = set(module._non_persistent_buffers_set)
    for key, value in module.__dict__.items():
        if "hook" in key and isinstance(value, dict):
            clone.__dict__[key] = type(value)(value)
    clone._modules = {name: None if child is None else structure_copy(child) for name, child in module._modules.items()}
    return clone


Layout = tuple   # per slot: (frozenset of layer names, rank)


class View:
    """One layout's view of a module (the UNet, a text encoder): the module a generation runs,
    and its slots."""

    def __init__(self, unet: torch.nn.Module, layout: Layout):
        from peft import LoraConfig, inject_adapter_in_model
        from peft.tuners.lora import LoraLayer

        self.layout = layout
        self.module = structure_copy(unet)
        for i, (names, rank) in enumerate(layout):
            config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0,
                                target_modules="(" + "|".join(re.escape(n) for n in sorted(names)) + ")")
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Already found a `peft_config`")
                inject_adapter_in_model(config, self.module, adapter_name=SLOT.format(i))
        self.layers = [{n: self.module.get_submodule(n) for n in sorted(names)} for names, _ in layout]
        for module in self.module.modules():
            if isinstance(module, LoraLayer):
                module.set_adapter([a for a in (SLOT.format(i) for i in range(len(layout))) if a in module.lora_A])
        self.module.requires_grad_(False)
        device = next(unet.parameters()).device
        self.base = [torch.zeros(len(names), device=device) for names, _ in layout]      # alpha/rank per layer
        self.scales = [torch.zeros(len(names), device=device) for names, _ in layout]    # weight * base
        for i, layers in enumerate(self.layers):
            for j, layer in enumerate(layers.values()):
                if not isinstance(layer, LoraLayer) or SLOT.format(i) not in layer.lora_A:
                    raise SlotsUnsupported(f"layer kind {type(layer).__name__}")
                layer.scaling[SLOT.format(i)] = self.scales[i][j]     # a view: the graphs read the tensor
        self.held = [None] * len(layout)      # the LoRA file each slot holds now
        self.weights = [None] * len(layout)
        self.fills = 0                       # slots filled from a file (a swap or a first use)

    def holds(self, want: Layout) -> bool:
        return len(want) == len(self.layout) and all(
            names <= have and rank <= r for (names, rank), (have, r) in zip(want, self.layout))

    def grown(self, want: Layout) -> Layout:
        return tuple((have | names, max(r, rank)) for (names, rank), (have, r) in zip(want, self.layout))

    @torch.no_grad()
    def load(self, parts: list) -> None:
        """Put each (file, Part, weight) into its slot: the tensors only when the slot held
        another file, the scales only when the weight changed."""
        for i, (held, part, weight) in enumerate(parts):
            if self.held[i] is not held:
                self._fill(i, part)
                self.held[i], self.weights[i] = held, None
            if self.weights[i] != weight:
                torch.mul(self.base[i], float(weight), out=self.scales[i])
                self.weights[i] = weight

    def _fill(self, i: int, part: Part) -> None:
        adapter, base = SLOT.format(i), []
        for name, layer in self.layers[i].items():
            a_dst, b_dst = layer.lora_A[adapter].weight, layer.lora_B[adapter].weight
            if name not in part.layers:
                a_dst.zero_()
                b_dst.zero_()       # zero A too: stale values times a zero B could still overflow to inf
                base.append(0.0)
                continue
            down, up, scale = part.layers[name]
            r = down.shape[0]
            if down.shape[1:] != a_dst.shape[1:] or up.shape[0] != b_dst.shape[0] or up.shape[2:] != b_dst.shape[2:]:
                raise SlotsUnsupported(f"layer {name} is {tuple(down.shape)}->{tuple(up.shape)}, "
                                       f"its slot {tuple(a_dst.shape)}->{tuple(b_dst.shape)}")
            a_dst[:r].copy_(down)
            a_dst[r:].zero_()
            b_dst[:, :r].copy_(up)
            b_dst[:, r:].zero_()
            base.append(scale)
        self.base[i].copy_(torch.tensor(base, dtype=self.base[i].dtype))
        self.fills += 1


class LoraViews:
    """The views of each UNet and text encoder a manager holds, for one fast path (`predictor`):
    it is told to forget a view before the view's tensors are let go."""

    def __init__(self, predictor, keep: int = 2):
        self.predictor, self.keep = predictor, keep
        self._views: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._parts: OrderedDict = OrderedDict()     # id(file) -> (file, its parts), the last few
        self.layouts = 0            # views built (each a new capture, and compile, on the fast path)

    def parts(self, lora) -> dict:
        """A LoRA file's parts, {"unet" / "text_encoder" / "text_encoder_2": Part}, worked out
        once per file read (a weight change costs no work)."""
        with self._lock:
            hit = self._parts.get(id(lora))
            if hit is not None and hit[0] is lora:
                return hit[1]
        parts = {"unet": unet_part(lora.unet, lora.network_alphas)}
        for prefix, (state_dict, config) in lora.text_encoders.items():
            parts[prefix] = text_encoder_part(state_dict, config)
        parts = {k: v for k, v in parts.items() if v is not None}
        with self._lock:
            self._parts[id(lora)] = (lora, parts)      # the file is held, so its id is not reused
            while len(self._parts) > 16:
                self._parts.popitem(last=False)
        return parts

    def view_for(self, unet: torch.nn.Module, parts: list) -> View | None:
        """The view of `unet` (or a text encoder) carrying `parts` [(file, Part, weight)] in that
        order, filled; None when no part touches it (the plain module serves)."""
        if not parts:
            return None
        want = tuple((frozenset(part.layers), part.rank) for _, part, _ in parts)
        with self._lock:
            views = self._views.setdefault(unet, OrderedDict())
            view = views.get(len(parts))
            if view is None or not view.holds(want):
                layout = want if view is None else view.grown(want)
                ranks = ", ".join(str(rank) for _, rank in layout)
                log.info("fast path: %s LoRA slot layout of the %s for %d LoRA(s) (ranks %s, %d layers)%s",
                         "a new" if view is None else "a larger", type(unet).__name__, len(parts), ranks,
                         sum(len(names) for names, _ in layout),
                         "; its CUDA graphs are captured anew" if _is_unet(unet) else "")
                if view is not None:
                    self._drop(views.pop(len(parts)))
                view = views[len(parts)] = View(unet, layout)
                self.layouts += 1
                while len(views) > self.keep:
                    self._drop(views.pop(next(iter(views))))
            views.move_to_end(len(parts))
        view.load(parts)
        return view

    def _drop(self, view: View) -> None:
        if self.predictor is not None and hasattr(self.predictor, "forget"):
            self.predictor.forget(view.module)

    def drop(self, unet: torch.nn.Module) -> None:
        """Forget every view of `unet` or a text encoder (the manager evicts it)."""
        with self._lock:
            views = self._views.pop(unet, {})
        for view in views.values():
            self._drop(view)


def _is_unet(module: torch.nn.Module) -> bool:
    return hasattr(module, "conv_in")
