"""The LoRAs accordion of the generate panel: a fixed number of rows, each an installed LoRA (or
none) and its weight, as A1111/Forge artists know them; only LoRAs fitting the backbone's
family are offered."""
from __future__ import annotations

import gradio as gr

import engine
from engine import LoraChoice, limits

from . import catalog

ROWS = 4
NONE = ""                       # the row's empty choice: no LoRA
NONE_LABEL = "(none)"
DEFAULT_WEIGHT = 1.0


def loras_for(backbone: str | None) -> list[str]:
    """Names of the installed LoRAs fitting the backbone's family: those of its family and those
    whose family cannot be told from the file (loading still checks them); all of them where the
    backbone's family cannot be told (the demo)."""
    fam = catalog.family(backbone) if backbone and backbone != catalog.DEMO_BACKBONE else None
    return [lora["name"] for lora in catalog.loras() if fam is None or lora["family"] in (None, fam)]


def choices(names: list[str]) -> list[tuple[str, str]]:
    return [(NONE_LABEL, NONE), *((n, n) for n in names)]


def missing_loras_note(installed: list) -> str:
    if installed:
        return ""
    return (f"**No LoRA is installed.** Put LoRA files (kohya or diffusers `.safetensors`) in "
            f"`{engine.models_dir() / 'loras'}`, then restart the studio.")


class LoraRows:
    """`fields` are the widgets a request's LoRAs are read from: the rows' names, then their weights."""

    def __init__(self, backbone: str | None):
        installed = catalog.loras()
        offer = choices(loras_for(backbone))
        with gr.Accordion("LoRAs", open=False, elem_id="loras") as self.accordion:
            self.note = gr.Markdown(missing_loras_note(installed), elem_id="no-loras", elem_classes=["notice"],
                                    visible=not installed)
            self.names, self.weights = [], []
            for i in range(ROWS):
                with gr.Row(equal_height=True):
                    # custom values allowed: a dropped recipe may name a LoRA this studio lacks, and the
                    # row must show it (the run then warns that it is missing) rather than drop it silently
                    self.names.append(gr.Dropdown(offer, value=NONE, label=f"LoRA {i + 1}", scale=3,
                                                  allow_custom_value=True, elem_id=f"lora{i + 1}"))
                    self.weights.append(gr.Slider(-limits.MAX_LORA_WEIGHT, limits.MAX_LORA_WEIGHT,
                                                  value=DEFAULT_WEIGHT, step=0.05, label="Weight", scale=2,
                                                  elem_id=f"lora{i + 1}-weight"))

    @property
    def fields(self) -> list:
        return [*self.names, *self.weights]

    @staticmethod
    def to_loras(values: list) -> tuple:
        """LoraChoice values of the rows with a LoRA chosen; a bad weight is the engine's clear ValueError."""
        names, weights = values[:ROWS], values[ROWS:]
        out = []
        for name, weight in zip(names, weights):
            if name and str(name).strip():
                out.append(LoraChoice(str(name), DEFAULT_WEIGHT if weight is None else weight))
        if len(out) > limits.MAX_LORAS:
            raise ValueError(f"at most {limits.MAX_LORAS} LoRAs can be on at once")
        return tuple(out)

    @staticmethod
    def from_loras(loras: tuple, backbone: str | None) -> list:
        """Updates of `fields` showing `loras`, offering the LoRAs of `backbone` (a dropped recipe sets
        the backbone without the picker's .input event); more than the rows hold is a clear error."""
        if len(loras) > ROWS:
            raise ValueError(f"this recipe has {len(loras)} LoRAs; the page shows {ROWS} rows")
        picked = list(loras) + [None] * (ROWS - len(loras))
        offer = choices(loras_for(backbone))
        return [*(gr.update(choices=offer, value=NONE if c is None else c.name) for c in picked),
                *(DEFAULT_WEIGHT if c is None else c.weight for c in picked)]

    def wire(self, backbone) -> None:
        def offer(chosen, *current):
            fitting = loras_for(chosen)
            # a chosen LoRA of another family is cleared; one the folder lacks stays (it was typed or restored)
            return [gr.update(choices=choices(fitting), value=c if c in fitting or c not in _all() else NONE)
                    for c in current]
        backbone.input(offer, [backbone, *self.names], self.names, show_progress="hidden", queue=False)


def _all() -> set[str]:
    return {lora["name"] for lora in catalog.loras()}
