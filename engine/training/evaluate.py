"""Condition fidelity during training: generate from held-out maps through the engine's own
denoising loop, score each picture with engine.fidelity, and keep the curve (CSV + PNG plot),
so whether and where "sudden convergence" happens is visible."""
from __future__ import annotations

import contextlib
import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import fidelity
from ..generate import render
from ..manager import ModelManager
from ..models import Backbone, ControlModel
from ..values import ControlUnit, GenerationRequest
from . import plot

BACKBONE_NAME, CONTROL_NAME = "training:backbone", "training:controlnet"


@dataclass(frozen=True)
class EvalItem:
    caption: str
    control_map: np.ndarray
    seed: int


def eval_items(dataset, n: int) -> list[EvalItem]:
    """The first n items of a dataset as fixed evaluation items. Pass a dataset built with a
    different seed from the training one (the world), or a held-out folder."""
    items = []
    for i in range(n):
        s = dataset[i]
        cmap = (s["conditioning_pixel_values"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        items.append(EvalItem(s["caption"], cmap, seed=i))
    return items


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def generate_batch(parts: dict, controlnet, items: list[EvalItem], steps: int = 20, cfg_scale: float = 5.0,
                   weight: float = 1.0, size: int | None = None, prompt: str | None = None) -> list[np.ndarray]:
    """One picture (HxWx3 uint8) per item: its caption (or `prompt`), its map at `weight`
    (weight 0 = no control), its seed; UniPC through engine.generate.render."""
    unet = parts["unet"]
    manager = ModelManager(device=unet.device, dtype=unet.dtype)
    # The plain eager path: the weights change between evaluations, so captured graphs would
    # only cost capture time (and compiling in the background races the capture).
    manager.predictor = None
    manager.add(Backbone(BACKBONE_NAME, unet, parts["vae"], parts["text_encoder"], parts["tokenizer"],
                         dict(parts["scheduler_config"])))
    if controlnet is not None:
        manager.add(ControlModel(CONTROL_NAME, controlnet))
    was_training = controlnet.training if controlnet is not None else False
    if controlnet is not None:
        controlnet.eval()
    out = []
    try:
        with _autocast(unet.device):
            for it in items:
                units = (ControlUnit(CONTROL_NAME, it.control_map, weight=weight),) if controlnet is not None and weight > 0 else ()
                req = GenerationRequest(backbone=BACKBONE_NAME, prompt=it.caption if prompt is None else prompt,
                                        units=units, width=size, height=size, steps=steps, cfg_scale=cfg_scale,
                                        seed=it.seed, sampler="unipc")
                arrays = render(req, manager).images
                out.append((arrays[0] * 255).round().astype(np.uint8))
    finally:
        if was_training:
            controlnet.train()
    return out


def mean_fidelity(kind: str, images: list[np.ndarray], items: list[EvalItem], model: str | None = None,
                  annotator: str | None = None) -> float | None:
    """model None: pictures of the demo's world (its judges apply); else a real model's name."""
    scores = [fidelity.score(kind, im, it.control_map, model=model, annotator=annotator)
              for im, it in zip(images, items)]
    scores = [s for s in scores if s is not None]
    return float(np.mean(scores)) if scores else None


class FidelityLog:
    """fidelity.csv (step, fidelity, loss, seconds) and fidelity.png, rewritten after each point.
    A resumed run appends to the same files (rows after its checkpoint's step are dropped)."""

    FIELDS = ("step", "fidelity", "loss", "seconds")

    def __init__(self, folder: str | Path, kind: str, resume_step: int = 0, threshold: float | None = None):
        self.csv, self.png = Path(folder) / "fidelity.csv", Path(folder) / "fidelity.png"
        self.kind, self.threshold = kind, threshold
        self.rows: list[dict] = []
        if self.csv.is_file():
            with self.csv.open() as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]

    def add(self, step: int, value: float | None, loss: float | None, seconds: float) -> None:
        self.rows = [r for r in self.rows if int(r["step"]) != step]
        self.rows.append({"step": step, "fidelity": "" if value is None else f"{value:.4f}",
                          "loss": "" if loss is None else f"{loss:.5f}", "seconds": f"{seconds:.1f}"})
        self.csv.parent.mkdir(parents=True, exist_ok=True)
        with self.csv.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.FIELDS)
            w.writeheader()
            w.writerows(self.rows)
        pts = [(int(r["step"]), float(r["fidelity"])) for r in self.rows if r["fidelity"] != ""]
        plot.line_chart({self.kind: pts}, self.png, title=f"{self.kind} ControlNet: condition fidelity",
                        ylabel="fidelity", y_range=(0.0, 1.0), hline=self.threshold)
