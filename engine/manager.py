"""The model manager: keeps backbones and control models resident between generations, so
switching a control model never reloads the backbone. Safe to call from several threads."""
from __future__ import annotations

import os
import threading
from collections import Counter, OrderedDict

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
    which is how tests prove that a resident model was reused."""

    def __init__(self, device=None, dtype=None, max_backbones: int = 1, max_controlnets: int = 8,
                 fast: bool | None = None, offload: bool = False, compile: bool = False):
        self.device = torch.device(device) if device is not None else default_device()
        self.dtype = dtype or default_dtype(self.device)
        if fast is None:  # on by default on CUDA; CNSTUDIO_FAST=0 turns it off
            fast = self.device.type == "cuda" and os.environ.get("CNSTUDIO_FAST", "1") != "0"
        # offload: ControlNets wait on the CPU and visit the GPU only during a generation that
        # uses them (for small GPUs). CUDA graphs hold their weights' addresses, so no fast path then.
        self.offload = offload and self.device.type == "cuda"
        self.predictor = None
        if fast and not self.offload:
            from .fast import GraphedPredictor
            self.predictor = GraphedPredictor(compile=compile)
        self.max_backbones, self.max_controlnets = max_backbones, max_controlnets
        self.loads: Counter = Counter()
        self._backbones: OrderedDict[str, Backbone] = OrderedDict()
        self._controlnets: OrderedDict[str, ControlModel] = OrderedDict()
        self._lock = threading.RLock()

    def backbone(self, source: str) -> Backbone:
        with self._lock:
            if source in self._backbones:
                self._backbones.move_to_end(source)
                return self._backbones[source]
            parts = loading.load_backbone_components(source, dtype=self.dtype, device=self.device)
            for m in (parts["unet"], parts["vae"], parts["text_encoder"]):
                m.requires_grad_(False).eval()
            self._for_fast_path(parts["unet"])
            bb = Backbone(source, parts["unet"], parts["vae"], parts["text_encoder"], parts["tokenizer"],
                          dict(parts["scheduler_config"]), parts["recommended"])
            self.loads["backbone", source] += 1
            self._backbones[source] = bb
            while len(self._backbones) > self.max_backbones:
                self._backbones.popitem(last=False)
            return bb

    def controlnet(self, source: str, backbone: Backbone | None = None) -> ControlModel:
        with self._lock:
            cm = self._controlnets.get(source)
            if cm is None:
                net = loading.load_controlnet_model(source, dtype=self.dtype,
                                                    device="cpu" if self.offload else self.device)
                net.requires_grad_(False).eval()
                self._for_fast_path(net)
                cm = ControlModel(source, net, loading.condition_kind(source))
                self.loads["controlnet", source] += 1
                self._controlnets[source] = cm
                while len(self._controlnets) > self.max_controlnets:
                    self._controlnets.popitem(last=False)
            self._controlnets.move_to_end(source)
        if backbone is not None:
            check_fits(cm, backbone)
        return cm

    def _for_fast_path(self, module) -> None:
        if self.predictor is not None:
            from .fast import prepare_module
            prepare_module(module)

    def add(self, model: Backbone | ControlModel) -> None:
        """Register a model built in memory (tests, training previews) under its source name."""
        with self._lock:
            table = self._backbones if isinstance(model, Backbone) else self._controlnets
            table[model.source] = model

    def free_cache(self) -> None:
        """After a failure such as out-of-memory: drop captured graphs and cached blocks, keep models."""
        if self.predictor is not None:
            self.predictor.clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def clear(self) -> None:
        with self._lock:
            self._backbones.clear()
            self._controlnets.clear()
            if self.predictor is not None:
                self.predictor.clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


_default: ModelManager | None = None
_default_lock = threading.Lock()


def env_options() -> dict:
    """The default manager's GPU options from the environment (the studio's flags set them):
    CNSTUDIO_FAST=0 no CUDA-graph fast path, CNSTUDIO_COMPILE=0 no background torch.compile,
    CNSTUDIO_OFFLOAD=1 idle ControlNets wait on the CPU (small GPUs; the fast path is off then)."""
    return {"fast": None if os.environ.get("CNSTUDIO_FAST", "1") != "0" else False,
            "compile": os.environ.get("CNSTUDIO_COMPILE", "1") != "0",
            "offload": os.environ.get("CNSTUDIO_OFFLOAD", "0") == "1"}


def default_manager() -> ModelManager:
    global _default
    with _default_lock:
        if _default is None:
            # The app's manager also compiles its graphs (in the background) for its long life.
            _default = ModelManager(**env_options())
        return _default
