"""The model manager: keeps backbones and control models resident between generations, so
switching a control model never reloads the backbone, and owns where they sit and how long
they live: placement (`placed`, the offload), eviction (which drops the fast path's graphs and
compiled modules of what it evicts) and the fast path's life cycle around a generation.
Safe to call from several threads."""
from __future__ import annotations

import contextlib
import os
import threading
from collections import Counter, OrderedDict
from typing import Iterable, Iterator

import torch

from . import loading
from .models import Backbone, ControlModel, check_fits

def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device, prefer_bf16: bool = False) -> torch.dtype:
    if device.type == "cuda":
        return torch.bfloat16 if prefer_bf16 else torch.float16
    return torch.float32


class ModelManager:
    """Loads each source once and keeps it. `loads` counts real loads per (kind, source),
    which is how tests prove that a resident model was reused.

    fast: the CUDA-graph fast path (None: on where the device is CUDA); compile: torch.compile
    it in the background; offload: ControlNets wait on `idle_device` (the CPU) and visit the
    device only inside `placed`, for small GPUs. CUDA graphs hold their weights' addresses, so
    offload turns the fast path off."""

    def __init__(self, device=None, dtype=None, max_backbones: int = 1, max_controlnets: int = 8,
                 fast: bool | None = None, offload: bool = False, compile: bool = False, predictor=None):
        self.device = torch.device(device) if device is not None else default_device()
        self.dtype = dtype or default_dtype(self.device)
        self.offload = bool(offload)
        self.idle_device = torch.device("cpu")
        if fast is None:
            fast = self.device.type == "cuda"
        if predictor is None and fast and not self.offload and self.device.type == "cuda":
            from .fast import GraphedPredictor
            predictor = GraphedPredictor(compile=compile)
        self.predictor = predictor
        self.max_backbones, self.max_controlnets = max_backbones, max_controlnets
        self.loads: Counter = Counter()
        self._backbones: OrderedDict[str, Backbone] = OrderedDict()
        self._controlnets: OrderedDict[str, ControlModel] = OrderedDict()
        self._lock = threading.RLock()
        # net -> how many generations use it now; it goes back to idle_device when that reaches 0.
        # Keyed by the module itself (not id()), so an entry can never name a freed, reused address.
        self._placed: dict[torch.nn.Module, int] = {}
        self._placing = threading.Lock()
        self._lora_views = None

    @property
    def lora_views(self):
        """The fast path's LoRA views of each backbone's UNet (engine/lora_slots.py), for the
        predictor in use; None without a fast path (LoRAs then go into the UNet, eagerly)."""
        if self.predictor is None:
            return None
        with self._lock:
            if self._lora_views is None or self._lora_views.predictor is not self.predictor:
                from .lora_slots import LoraViews
                self._lora_views = LoraViews(self.predictor)
            return self._lora_views

    def backbone(self, source: str) -> Backbone:
        with self._lock:
            if source in self._backbones:
                self._backbones.move_to_end(source)
                return self._backbones[source]
            parts = loading.load_backbone_components(source, dtype=self.dtype, device=self.device)
            for m in (parts["unet"], parts["vae"], parts["text_encoder"], parts.get("text_encoder_2")):
                if m is not None:
                    m.requires_grad_(False).eval()
            self._for_fast_path(parts["unet"])
            if parts["vae"].config.get("force_upcast", False) and self.dtype == torch.float16:
                # SDXL's VAE overflows in fp16 (black or NaN pictures): it runs in fp32, as its
                # config asks and diffusers' SDXL pipelines do; the loop casts latents to its dtype
                parts["vae"].to(torch.float32)
            bb = Backbone(source, parts["unet"], parts["vae"], parts["text_encoder"], parts["tokenizer"],
                          dict(parts["scheduler_config"]), parts["recommended"],
                          parts.get("text_encoder_2"), parts.get("tokenizer_2"))
            self.loads["backbone", source] += 1
            self._backbones[source] = bb
            while len(self._backbones) > self.max_backbones:
                self._forget(self._backbones.popitem(last=False)[1])
            return bb

    def controlnet(self, source: str, backbone: Backbone | None = None) -> ControlModel:
        with self._lock:
            cm = self._controlnets.get(source)
            if cm is None:
                net = loading.load_controlnet_model(source, dtype=self.dtype,
                                                    device=self.idle_device if self.offload else self.device)
                net.requires_grad_(False).eval()
                self._for_fast_path(net)
                cm = ControlModel(source, net, loading.condition_kind(source))
                self.loads["controlnet", source] += 1
                self._controlnets[source] = cm
                while len(self._controlnets) > self.max_controlnets:
                    self._forget(self._controlnets.popitem(last=False)[1])
            self._controlnets.move_to_end(source)
        if backbone is not None:
            check_fits(cm, backbone)
        return cm

    @contextlib.contextmanager
    def placed(self, nets: Iterable[torch.nn.Module]) -> Iterator[None]:
        """Around one generation: with offload, each net is on the device inside the block and
        back on idle_device after the last block using it ends, so two threads sharing a net never
        move it from under each other. Without offload, nothing moves."""
        nets = list({id(n): n for n in nets}.values()) if self.offload else []
        with self._placing:
            for net in nets:
                if self._placed.get(net, 0) == 0:
                    net.to(self.device)
                self._placed[net] = self._placed.get(net, 0) + 1
        try:
            yield
        finally:
            with self._placing:
                for net in nets:
                    self._placed[net] -= 1
                    if self._placed[net] == 0:
                        del self._placed[net]
                        net.to(self.idle_device)

    def generation_done(self) -> None:
        """After a generation: the fast path may now compile, in the background, what it captured."""
        if self.predictor is not None and hasattr(self.predictor, "generation_done"):
            self.predictor.generation_done()

    def _for_fast_path(self, module) -> None:
        if self.predictor is not None:
            from .fast import prepare_module
            prepare_module(module)

    def add(self, model: Backbone | ControlModel) -> None:
        """Register a model built in memory (tests, training previews) under its source name."""
        with self._lock:
            table = self._backbones if isinstance(model, Backbone) else self._controlnets
            old = table.get(model.source)
            table[model.source] = model
            if old is not None and old is not model:
                self._forget(old)

    def evict(self, source: str) -> bool:
        """Drop a resident model (backbone or control model) and everything cached for it;
        False if none of that name was resident."""
        with self._lock:
            model = self._backbones.pop(source, None) or self._controlnets.pop(source, None)
            if model is None:
                return False
            self._forget(model)
        return True

    def _forget(self, model: Backbone | ControlModel) -> None:
        """An evicted model's CUDA graphs and compiled modules go with it: they hold its weights,
        and so do a backbone's LoRA views."""
        if isinstance(model, Backbone) and self._lora_views is not None:
            for module in (model.unet, model.text_encoder, model.text_encoder_2):
                if module is not None:
                    self._lora_views.drop(module)
        if self.predictor is not None and hasattr(self.predictor, "forget"):
            self.predictor.forget(model.unet if isinstance(model, Backbone) else model.net)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def free_cache(self) -> None:
        """After a failure such as out-of-memory: drop captured graphs and cached blocks, keep models."""
        if self.predictor is not None and hasattr(self.predictor, "clear"):
            self.predictor.clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def clear(self) -> None:
        with self._lock:
            for model in [*self._backbones.values(), *self._controlnets.values()]:
                self._forget(model)
            self._backbones.clear()
            self._controlnets.clear()
            if self.predictor is not None and hasattr(self.predictor, "clear"):
                self.predictor.clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


_default: ModelManager | None = None
_default_lock = threading.Lock()

# The documented user overrides (README, "GPU options"); read here and nowhere else.
ENV_FAST, ENV_COMPILE, ENV_OFFLOAD = "CNSTUDIO_FAST", "CNSTUDIO_COMPILE", "CNSTUDIO_OFFLOAD"


def env_options() -> dict:
    """The GPU options the environment asks for: CNSTUDIO_FAST=0 no CUDA-graph fast path,
    CNSTUDIO_COMPILE=0 no background torch.compile, CNSTUDIO_OFFLOAD=1 idle ControlNets wait on
    the CPU (small GPUs; the fast path is off then)."""
    return {"fast": None if os.environ.get(ENV_FAST, "1") != "0" else False,
            "compile": os.environ.get(ENV_COMPILE, "1") != "0",
            "offload": os.environ.get(ENV_OFFLOAD, "0") == "1"}


def build_manager(fast: bool | None = None, compile: bool | None = None, offload: bool | None = None,
                  **kwargs) -> ModelManager:
    """A manager for a long-lived process (the studio, the Python API's default): the options
    given win, those left None come from the environment's overrides, then the defaults. The
    compile default is on, because such a process lives long enough to profit from it."""
    asked = {"fast": fast, "compile": compile, "offload": offload}
    options = {**env_options(), **{k: v for k, v in asked.items() if v is not None}}
    return ModelManager(**options, **kwargs)


def default_manager() -> ModelManager:
    """The manager engine.generate uses when it is given none (built once, from the environment)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = build_manager()
        return _default
