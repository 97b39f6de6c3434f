"""An annotator's parameters as widgets, built from its declaration (annotators.spec).

Each panel holds a few slots of each widget type (sliders for numbers, checkboxes for
switches, dropdowns for choices), as many as the most demanding annotator declares. Picking
an annotator relabels the slots from `spec(name)["params"]` and hides the rest, so every
parameter is declared once, in the annotator, and never listed here.
"""
from __future__ import annotations

from typing import Any

import gradio as gr

from . import catalog

_SLOT_OF = {"int": "slider", "float": "slider", "bool": "checkbox", "choice": "dropdown"}
_SLOT_TYPES = ("slider", "checkbox", "dropdown")


def slot_counts() -> dict[str, int]:
    """How many widgets of each type a panel needs to show any annotator's parameters."""
    counts = dict.fromkeys(_SLOT_TYPES, 0)
    for name in catalog.annotator_names():
        per = dict.fromkeys(_SLOT_TYPES, 0)
        for p in catalog.annotator_spec(name)["params"]:
            per[_SLOT_OF[p["type"]]] += 1
        counts = {t: max(counts[t], per[t]) for t in _SLOT_TYPES}
    return counts


def _layout(annotator: str | None) -> list[tuple[dict, str, int]]:
    """(param, slot type, index within that type) for each declared parameter, in order."""
    spec = catalog.annotator_spec(annotator)
    used = dict.fromkeys(_SLOT_TYPES, 0)
    out = []
    for p in (spec or {}).get("params", []):
        kind = _SLOT_OF[p["type"]]
        out.append((p, kind, used[kind]))
        used[kind] += 1
    return out


def _settings(p: dict, value: Any) -> dict:
    """The widget settings (constructor keywords and gr.update keywords alike) showing parameter p."""
    info = p.get("help") or None
    if p["type"] == "bool":
        return dict(visible=True, label=p["name"], info=info, value=bool(value))
    if p["type"] == "choice":
        return dict(visible=True, label=p["name"], info=info, choices=list(p["choices"]), value=value)
    lo = p["min"] if p["min"] is not None else min(0, value)
    hi = p["max"] if p["max"] is not None else max(100, value)
    step = p["step"] or (1 if p["type"] == "int" else (hi - lo) / 100)
    return dict(visible=True, label=p["name"], info=info, minimum=lo, maximum=hi, step=step, value=value)


class ParamPanel:
    """The parameter widgets of one annotator picker. Build it inside a Blocks context."""

    def __init__(self, annotator: str | None = None):
        counts = slot_counts()
        start = {(kind, i): _settings(p, p["default"]) for p, kind, i in _layout(annotator)}
        makers = {"slider": gr.Slider, "checkbox": gr.Checkbox, "dropdown": gr.Dropdown}
        self.slots: dict[str, list] = {t: [] for t in _SLOT_TYPES}
        with gr.Row(equal_height=False):
            for kind in _SLOT_TYPES:
                for i in range(counts[kind]):
                    settings = start.get((kind, i), {"visible": False})
                    self.slots[kind].append(makers[kind](interactive=True, min_width=140, **settings))
        self.widgets = [w for t in _SLOT_TYPES for w in self.slots[t]]

    def updates(self, annotator: str | None, values: dict | None = None) -> list:
        """gr.update()s for every slot: the annotator's parameters shown with `values` (or their
        defaults), every other slot hidden."""
        values = values or {}
        out = {id(w): gr.update(visible=False) for w in self.widgets}
        for p, kind, i in _layout(annotator):
            out[id(self.slots[kind][i])] = gr.update(**_settings(p, values.get(p["name"], p["default"])))
        return [out[id(w)] for w in self.widgets]

    def read(self, annotator: str | None, widget_values: list) -> dict:
        """{parameter: value} of `annotator` from this panel's widget values (in `widgets` order)."""
        by_widget = dict(zip(map(id, self.widgets), widget_values))
        params = {}
        for p, kind, i in _layout(annotator):
            value = by_widget[id(self.slots[kind][i])]
            if p["type"] == "int" and isinstance(value, float) and value.is_integer():
                value = int(value)
            params[p["name"]] = value
        return params
