"""The Sketch tab: a drawing canvas (brush with size and colour, eraser, undo, clear, a background
picture to trace over, canvas size) whose strokes an annotator (scribble by default) turns into
a control map, shown beside the canvas as you draw or on one click."""
from __future__ import annotations

import gradio as gr
import numpy as np

from . import api, catalog, map_status
from .errors import shown
from .params import ParamPanel
from .pictures import Canvas
from .sizes import SIZES, parse_size

DEFAULT_ANNOTATOR = "scribble"
BRUSH = gr.Brush(colors=["#000000", "#ffffff", "#d03030", "#3070d0", "#30a050"], default_color="#000000",
                 default_size=4, color_mode="defaults")


def annotator_choices() -> list:
    return [("none (use the drawing as it is)", catalog.NO_ANNOTATOR)] + catalog.annotator_choices()


def drawing(value: dict | None, with_background: bool = False) -> np.ndarray | None:
    """What the artist drew, as HxWx3 uint8: the strokes on white paper (the background picture is
    for tracing and stays out), or everything including the background when asked."""
    if not value:
        return None
    if with_background and value.get("composite") is not None:
        return _on_white(np.asarray(value["composite"]))
    layers = [np.asarray(layer) for layer in value.get("layers") or [] if layer is not None]
    base = value.get("background") if value.get("background") is not None else value.get("composite")
    if base is None and not layers:
        return None
    h, w = (np.asarray(base) if base is not None else layers[0]).shape[:2]
    paper = np.full((h, w, 3), 255.0, np.float32)
    for layer in layers:
        if layer.ndim != 3 or layer.shape[:2] != (h, w):
            continue
        rgb = layer[..., :3].astype(np.float32)
        alpha = layer[..., 3:4].astype(np.float32) / 255.0 if layer.shape[2] == 4 else 1.0
        paper = rgb * alpha + paper * (1.0 - alpha)
    return paper.round().astype(np.uint8)


def _on_white(rgba: np.ndarray) -> np.ndarray:
    if rgba.ndim == 3 and rgba.shape[2] == 4:
        alpha = rgba[..., 3:4].astype(np.float32) / 255.0
        return (rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    return rgba[..., :3] if rgba.ndim == 3 else np.repeat(rgba[..., None], 3, 2)


def resized_canvas(value: dict | None, size: str) -> dict:
    """The editor's value on a canvas of `size` ("WxH"): what is there stays at the centre, the
    new border is blank paper, and a smaller canvas crops (as a painting program's canvas size)."""
    w, h = parse_size(size)
    value = value or {}

    def place(picture, fill):
        out = np.full((h, w, 4), fill, np.uint8)
        if picture is None:
            return out
        a = np.asarray(picture)
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, 2)
        if a.shape[2] == 3:
            a = np.concatenate([a, np.full(a.shape[:2] + (1,), 255, np.uint8)], axis=2)
        ph, pw = a.shape[:2]
        y, x = (h - ph) // 2, (w - pw) // 2
        sy, sx = max(0, -y), max(0, -x)
        dy, dx = max(0, y), max(0, x)
        ch, cw = min(ph - sy, h - dy), min(pw - sx, w - dx)
        out[dy:dy + ch, dx:dx + cw] = a[sy:sy + ch, sx:sx + cw]
        return out

    layers = [place(layer, 0) for layer in value.get("layers") or [] if layer is not None]
    return {"background": place(value.get("background"), 255), "layers": layers, "composite": None}


def annotated(picture: np.ndarray | None, annotator: str | None, params: dict) -> np.ndarray | None:
    """The map of `picture`: the annotator's, or the picture itself for "none"."""
    if picture is None:
        return None
    if not annotator or annotator == catalog.NO_ANNOTATOR:
        return picture
    return api.annotate(annotator, picture, params)


class SketchTab:
    """Widgets of the Sketch tab; `map` is what it sends to a unit."""

    def __init__(self):
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=280):
                self.canvas = Canvas(
                    label="Sketch: pick the brush and draw", type="numpy",
                    image_mode="RGBA", sources=("upload", "clipboard"), canvas_size=(512, 512), layers=False,
                    brush=BRUSH, eraser=gr.Eraser(default_size=16), transforms=(), format="png",
                    elem_id="sketch", height=420)
            with gr.Column(scale=1, min_width=280):
                self.map = gr.Image(label="Control map", type="numpy", format="png", interactive=False,
                                    elem_id="sketch-map", height=360)
                # what the last "Make map" did: the map's size and time, or why there is none
                self.status = gr.HTML("", elem_id="sketch-map-status", elem_classes=["map-status"])
        with gr.Row():
            self.annotator = gr.Dropdown(annotator_choices(), value=DEFAULT_ANNOTATOR, label="Annotator",
                                         min_width=160, elem_id="sketch-annotator")
            self.size = gr.Dropdown(SIZES, value="512x512", label="Canvas size", allow_custom_value=True,
                                    min_width=120)
            self.live = gr.Checkbox(True, label="Update the map as I draw", min_width=120)
            self.with_background = gr.Checkbox(False, label="Map the background picture too", min_width=120)
            self.make = gr.Button("Make map", size="sm", min_width=80)
        self.params = ParamPanel(DEFAULT_ANNOTATOR)
        self.picture = self.canvas

    def map_inputs(self) -> list:
        return [self.canvas, self.with_background, self.annotator, *self.params.widgets]

    def make_map(self, value, with_background, annotator, *params) -> tuple:
        """(map, status line); a failed annotator gives no map and says why in the line."""
        return map_status.make(drawing(value, with_background), annotator,
                               self.params.read(annotator, list(params)), "drawing", "SketchTab.make_map")

    def wire(self) -> None:
        make = shown(self.make_map)
        outs = [self.map, self.status]

        def live(on, value, with_background, annotator, *params):
            return make(value, with_background, annotator, *params) if on and value else (gr.update(), gr.update())

        self.canvas.change(live, [self.live, *self.map_inputs()], outs, trigger_mode="always_last",
                           show_progress="hidden")
        self.make.click(make, self.map_inputs(), outs)
        self.with_background.input(make, self.map_inputs(), outs)
        self.annotator.input(lambda name: self.params.updates(name), [self.annotator], self.params.widgets,
                             queue=False).then(make, self.map_inputs(), outs)
        for widget in self.params.widgets:
            event = widget.release if isinstance(widget, gr.Slider) else widget.input
            event(make, self.map_inputs(), outs, trigger_mode="always_last")
        self.size.input(shown(resized_canvas), [self.canvas, self.size], [self.canvas])
