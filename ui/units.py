"""The stack of control units: each one a control model, the map it reads (from a tab, a dropped
file or the last output), its annotator and parameters, weight, start/end, mode, resize mode, an
optional mask and its fidelity after a generation. Three show at first; more on request."""
from __future__ import annotations

import json

import gradio as gr
import numpy as np

from engine import (DEFAULT_STYLE_FIDELITY, HR_OPTIONS, MODES, REFERENCE_MODELS, RESIZE_MODES, UNION_CONTROL_TYPES,
                    ControlMode, ControlUnit, HiresOption, ResizeMode, limits)

from . import catalog, map_status
from .errors import shown, warn
from .params import ParamPanel
from .pictures import Picture, UnitMap, Unreadable

SHOWN_AT_START = 3
SOURCES = ["sketch", "pose", "upload", "last output", "map as is"]
AS_IS = "map as is"
# AUTOMATIC1111's words for the engine's modes (the enums' values), the default first.
MODE_LABELS = [(ControlMode[m].value, m) for m in MODES]
UNION_AUTO = "auto"
UNION_LABELS = [("from the annotator", UNION_AUTO), *((t, t) for t in UNION_CONTROL_TYPES)]
HR_LABELS = [(HiresOption[o].value, o) for o in HR_OPTIONS]     # the extension's words, "Both" first
RESIZE_LABELS = [(ResizeMode[m].value, m) for m in sorted(RESIZE_MODES, key=lambda m: m != "crop")]


class Unit:
    """One control unit's widgets. Build inside a Blocks context."""

    def __init__(self, index: int, controlnets: list[str], visible: bool):
        self.index = index
        n = index + 1
        with gr.Column(visible=visible, variant="panel", elem_id=f"unit{n}", elem_classes=["unit"]) as self.box:
            with gr.Row(equal_height=True):
                self.enabled = gr.Checkbox(False, label=f"Unit {n}: enable", min_width=110, elem_id=f"unit{n}-enabled")
                self.source = gr.Dropdown(SOURCES, value=AS_IS, label="Reads", min_width=110,
                                          elem_id=f"unit{n}-source")
                self.annotator = gr.Dropdown([(catalog.NO_ANNOTATOR, catalog.NO_ANNOTATOR)] + catalog.annotator_choices(),
                                             value=catalog.NO_ANNOTATOR, label="Annotator", min_width=120,
                                             elem_id=f"unit{n}-annotator")
                self.model = gr.Dropdown(catalog.with_references(controlnets), value=catalog.controlnet_for("scribble", controlnets)
                                         or (controlnets[0] if controlnets else None),
                                         label="Control model", allow_custom_value=True, min_width=150,
                                         elem_id=f"unit{n}-model")
            with gr.Row(equal_height=False):
                self.map = UnitMap(label="Control map", type="numpy", format="png", sources=["upload", "clipboard"],
                                    height=150, min_width=120, elem_id=f"unit{n}-map")
                self.mask = Picture(label="Mask (white: act here)", type="numpy", format="png",
                                     sources=["upload", "clipboard"], height=150, min_width=120,
                                     elem_id=f"unit{n}-mask")
                with gr.Column(min_width=180):
                    self.weight = gr.Slider(0, limits.MAX_WEIGHT, value=1.0, step=0.05, label="Weight",
                                            elem_id=f"unit{n}-weight")
                    self.start = gr.Slider(0, 1, value=0.0, step=0.01, label="Start (fraction of steps)")
                    self.end = gr.Slider(0, 1, value=1.0, step=0.01, label="End")
                    # A1111's "Style Fidelity (only for Balanced mode)": shown only for reference units
                    self.style_fidelity = gr.Slider(0, 1, value=DEFAULT_STYLE_FIDELITY, step=0.01,
                                                    label="Style fidelity (Balanced mode only)", visible=False,
                                                    elem_id=f"unit{n}-style-fidelity")
                with gr.Column(min_width=160):
                    self.mode = gr.Dropdown(MODE_LABELS, value="balanced", label="Control mode",
                                            elem_id=f"unit{n}-mode")
                    self.resize_mode = gr.Dropdown(RESIZE_LABELS, value="crop", label="Resize mode",
                                                   elem_id=f"unit{n}-resize-mode")
                    # a ControlNet-Union model reads many kinds of map: which one (auto: the annotator's kind)
                    self.union_type = gr.Dropdown(UNION_LABELS, value=UNION_AUTO, label="Union control type",
                                                  visible=False, elem_id=f"unit{n}-union-type")
                    # the extension's hr_option: shown while the hires fix is on (ui.layout follows its box)
                    self.hr_option = gr.Dropdown(HR_LABELS, value="both", label="Hires passes", visible=False,
                                                 elem_id=f"unit{n}-hr-option")
            with gr.Accordion("Annotator parameters", open=False):
                self.params = ParamPanel(None)
            self.fidelity = gr.Markdown("", elem_id=f"unit{n}-fidelity", elem_classes=["fidelity"])
            # the OpenPose JSON the map was drawn from (sent from the pose tab), which the recipe keeps
            self.pose = gr.State(None)
            # the last readable map, put back when an upload is no picture
            self.good_map = gr.State(None)

    # -- reading and writing a unit's widgets -------------------------------------------------
    @property
    def fields(self) -> list:
        """The widgets whose values make a ControlUnit, in `to_unit`'s argument order."""
        return [self.enabled, self.model, self.map, self.mask, self.weight, self.start, self.end, self.mode,
                self.resize_mode, self.annotator, self.pose, self.style_fidelity, self.union_type, self.hr_option,
                *self.params.widgets]

    @property
    def restorable(self) -> list:
        """The widgets `from_unit` sets, in its order."""
        return [*self.fields, self.source, self.fidelity]

    def to_unit(self, values: list) -> ControlUnit | None:
        """The ControlUnit of these widget values; None for an unused unit (disabled, no map)."""
        (enabled, model, cmap, mask, weight, start, end, mode, resize_mode, annotator, pose, fidelity, union, hr,
         *params) = values
        if isinstance(cmap, Unreadable):
            raise ValueError(f"unit {self.index + 1}: {cmap.message}")
        if cmap is None:
            if enabled:
                if reads_picture(model):
                    raise ValueError(f"unit {self.index + 1} ({model}) is enabled but has no reference picture: "
                                     "drop the picture whose look you want on its map, or disable it")
                raise ValueError(f"unit {self.index + 1} is enabled but has no control map: send it a map from "
                                 "a tab, drop one on it, or disable it")
            return None
        name = None if annotator in (None, "", catalog.NO_ANNOTATOR) else annotator
        if catalog.is_ip_adapter(model):
            name = None          # the adapter's image encoder reads the picture itself: no annotator
        try:
            return ControlUnit(model=model or "", image=cmap, weight=weight, start=start, end=end, mode=mode,
                               # a mask left from another model is hidden and not read (model_look)
                               mask=None if reads_picture(model) else _mask_or_none(mask),
                               resize_mode=resize_mode, enabled=bool(enabled),
                               annotator=name, annotator_params=self.params.read(name, params) if name else {},
                               pose=pose or None,
                               style_fidelity=DEFAULT_STYLE_FIDELITY if fidelity is None else fidelity,
                               union_control_type=None if union in (None, "", UNION_AUTO) else union,
                               hr_option=hr or "both")
        except ValueError as e:
            raise ValueError(f"unit {self.index + 1}: {e}") from None

    def from_unit(self, unit: ControlUnit | None) -> list:
        """gr.update()s of `restorable` showing `unit` (None: an empty, disabled unit)."""
        if unit is None:
            return [gr.update(value=False), gr.update(), None, None, 1.0, 0.0, 1.0, "balanced", "crop",
                    catalog.NO_ANNOTATOR, None, gr.update(value=DEFAULT_STYLE_FIDELITY, visible=False),
                    gr.update(value=UNION_AUTO, visible=False), "both",
                    *self.params.updates(None), AS_IS, ""]
        annotator = unit.annotator if unit.annotator in catalog.annotator_names() else catalog.NO_ANNOTATOR
        mask = None if unit.mask is None else np.asarray(unit.mask)
        return [unit.enabled, gr.update(value=unit.model), np.asarray(unit.image), mask, unit.weight, unit.start,
                unit.end, unit.mode, unit.resize_mode, annotator, None if unit.pose is None else json.dumps(unit.pose),
                gr.update(value=unit.style_fidelity, visible=is_reference(unit.model)),
                gr.update(value=unit.union_control_type or UNION_AUTO, visible=is_union_name(unit.model)), unit.hr_option,
                *self.params.updates(None if annotator == catalog.NO_ANNOTATOR else annotator, unit.annotator_params),
                AS_IS, ""]


def is_reference(model) -> bool:
    return model in REFERENCE_MODELS


def reads_picture(model) -> bool:
    """A reference or IP-Adapter unit: its map is a picture whose look it carries over."""
    return is_reference(model) or catalog.is_ip_adapter(model)


def is_union_name(model) -> bool:
    # as AUTOMATIC1111's extension tells a Union model on its page: by its name
    return isinstance(model, str) and "union" in model.lower()


def model_look(model):
    """Updates of (style fidelity, map, union type, mask, control mode, resize mode) for a unit of
    `model`. A reference unit (no weights: the picture itself is what it reads) shows its style-
    fidelity slider and calls its map a reference picture, as an IP-Adapter unit does; neither
    takes a mask (its picture acts on the whole image). An IP-Adapter unit has no control mode or
    resize mode either: its image encoder crops the picture its own way. A Union model's unit
    shows its control type."""
    ip = catalog.is_ip_adapter(model)
    return (gr.update(visible=is_reference(model)),
            gr.update(label="Reference picture" if reads_picture(model) else "Control map"),
            gr.update(visible=is_union_name(model)),
            gr.update(visible=not reads_picture(model)), gr.update(visible=not ip), gr.update(visible=not ip))


def _mask_or_none(mask):
    if mask is None:
        return None
    m = np.asarray(mask)
    return None if m.size == 0 else m


def source_picture(source: str, sketch, pose_map, photo, last_output):
    """The picture a unit reading `source` re-annotates."""
    from .sketch_tab import drawing
    picture = {"sketch": lambda: drawing(sketch), "pose": lambda: pose_map, "upload": lambda: photo,
               "last output": lambda: last_output}[source]()
    if picture is None:
        where = {"last output": "nothing has been generated yet"}.get(source, f"the {source} tab is empty")
        raise ValueError(f"this unit reads the {source}, but {where}")
    return picture


class UnitStack:
    """All units (limits.MAX_UNITS of them, SHOWN_AT_START visible), the add button and the mask painter."""

    def __init__(self, controlnets: list[str]):
        self.controlnets = controlnets
        self.count = gr.State(SHOWN_AT_START)
        self.followers: list[list] = [[] for _ in range(limits.MAX_UNITS)]
        self.units = [Unit(i, controlnets, visible=i < SHOWN_AT_START) for i in range(limits.MAX_UNITS)]
        with gr.Row():
            self.add = gr.Button("+ Add a unit", size="sm", elem_id="add-unit")
        with gr.Accordion("Paint a mask on a unit's map", open=False):
            with gr.Row():
                self.mask_unit = gr.Dropdown([f"Unit {u.index + 1}" for u in self.units], value="Unit 1",
                                             type="index", label="Unit", min_width=100)
                self.mask_load = gr.Button("Load its map", size="sm")
                self.mask_apply = gr.Button("Use the painted area as its mask", size="sm")
            self.painter = gr.ImageEditor(
                label="Paint where the unit should act", type="numpy", image_mode="RGBA", sources=(), layers=False,
                brush=gr.Brush(colors=["#ffffff"], default_color="#ffffff", default_size=24, color_mode="fixed"),
                eraser=gr.Eraser(default_size=24), transforms=(), format="png", height=360, elem_id="mask-painter")

    def wire(self, pictures: list) -> None:
        """Hook up each unit's own events. `pictures`: the sketch canvas, pose map, upload photo and
        last-output components that units read."""
        for unit in self.units:
            self._wire_unit(unit, pictures)
        maps = [u.map for u in self.units]
        masks = [u.mask for u in self.units]

        def more(count):
            count = min(count + 1, len(self.units))
            return [count, *self.visibility(count)]

        self.add.click(more, [self.count], [self.count, *self.visibility_outputs], queue=False)

        def load(index, *maps_):
            if maps_[index] is None or isinstance(maps_[index], Unreadable):
                raise ValueError(f"unit {index + 1} has no map yet; send one to it first")
            return {"background": maps_[index], "layers": [], "composite": maps_[index]}

        def apply(index, painted):
            mask = painted_mask(painted)
            return [mask if i == index else gr.update() for i in range(len(masks))]

        self.mask_load.click(shown(load), [self.mask_unit, *maps], [self.painter])
        self.mask_apply.click(shown(apply), [self.mask_unit, self.painter], masks)

    def _wire_unit(self, unit: Unit, pictures: list) -> None:
        def remap(source, annotator, *rest):
            """The unit's map made again from its source: a failed annotator clears it and says
            why in the unit's line; a map from anything but the pose tab has no pose."""
            params, pics = rest[:len(unit.params.widgets)], rest[len(unit.params.widgets):]
            if source == AS_IS:
                return gr.update(), gr.update(), gr.update()
            name = None if annotator == catalog.NO_ANNOTATOR else annotator
            cmap, line = map_status.make(source_picture(source, *pics), name, unit.params.read(name, list(params)),
                                         source, f"unit {unit.index + 1}")
            return cmap, line, gr.update() if source == "pose" else None

        def uploaded(cmap, good):
            """A map dropped on the unit: enabled, read as it is; a file that is no picture is said at
            once and the unit keeps the map it had (and stays as enabled as it was)."""
            if isinstance(cmap, Unreadable):
                warn(f"Unit {unit.index + 1}: {cmap.message}")
                return good, gr.update(), gr.update(), gr.update()
            return gr.update(), AS_IS, True, None

        def keep(cmap):
            return gr.update() if isinstance(cmap, Unreadable) else cmap

        def picked(annotator, model):
            kind = catalog.annotator_kind(annotator)
            model = catalog.controlnet_for(kind, self.controlnets, model)
            return [*unit.params.updates(annotator), gr.update(value=model)]

        inputs = [unit.source, unit.annotator, *unit.params.widgets, *pictures]
        remap = shown(remap)
        outs = [unit.map, unit.fidelity, unit.pose]
        unit.annotator.input(picked, [unit.annotator, unit.model], [*unit.params.widgets, unit.model],
                             queue=False).then(remap, inputs, outs)
        unit.source.input(remap, inputs, outs)
        for widget in unit.params.widgets:
            event = widget.release if isinstance(widget, gr.Slider) else widget.input
            event(remap, inputs, outs, trigger_mode="always_last")
        # queued: a warning from an unqueued event never reaches the page
        unit.map.upload(shown(uploaded), [unit.map, unit.good_map], [unit.map, unit.source, unit.enabled, unit.pose])
        unit.map.change(keep, [unit.map], [unit.good_map], queue=False, show_progress="hidden")
        unit.model.change(model_look, [unit.model], [unit.style_fidelity, unit.map, unit.union_type, unit.mask,
                                                     unit.mode, unit.resize_mode], queue=False, show_progress="hidden")

    def follow(self, index: int, component) -> None:
        """Show `component` (e.g. a "send to unit" button) exactly while unit `index` is shown."""
        self.followers[index].append(component)

    @property
    def visibility_outputs(self) -> list:
        return [*[u.box for u in self.units], *[c for group in self.followers for c in group]]

    def visibility(self, count: int) -> list:
        """Updates of `visibility_outputs` showing the first `count` units."""
        boxes = [gr.update(visible=i < count) for i in range(len(self.units))]
        return boxes + [gr.update(visible=i < count) for i, group in enumerate(self.followers) for _ in group]

    def send_outputs(self, index: int) -> list:
        u = self.units[index]
        return [u.enabled, u.source, u.annotator, *u.params.widgets, u.model, u.map, u.pose]

    def sent(self, index: int, source: str, cmap, annotator: str | None, params: dict, model: str | None,
             pose: str | None = None) -> list:
        """Updates of `send_outputs(index)` for a map sent from a tab."""
        if cmap is None:
            raise ValueError(f"the {source} tab has no map yet; draw, pose or upload something first")
        u = self.units[index]
        annotator = annotator or catalog.NO_ANNOTATOR
        kind = catalog.annotator_kind(annotator) or ("openpose" if source == "pose" else None)
        chosen = catalog.controlnet_for(kind, self.controlnets, model)
        fits = kind is None or catalog.condition_kind(chosen) == kind
        if not fits:
            warn(f"No installed control model reads {kind} maps: unit {index + 1} holds the map but stays "
                       "off until you pick a model for it (or add one to models/controlnets/)")
        return [fits, source, annotator,
                *u.params.updates(None if annotator == catalog.NO_ANNOTATOR else annotator, params),
                gr.update(value=chosen), cmap, pose]


def painted_mask(painted: dict | None) -> np.ndarray:
    """The mask painted in the mask painter: 255 where any stroke is."""
    layers = [np.asarray(layer) for layer in (painted or {}).get("layers") or [] if layer is not None]
    if not layers or layers[0].ndim != 3 or layers[0].shape[2] != 4:
        raise ValueError("load a unit's map and paint over where it should act, then use it as the mask")
    alpha = np.max([layer[..., 3] for layer in layers if layer.shape == layers[0].shape], axis=0)
    if not alpha.any():
        raise ValueError("nothing is painted yet: paint over where the unit should act")
    return np.where(alpha > 0, 255, 0).astype(np.uint8)
