"""The Upload tab: a reference photo, an annotator with its parameters (sliders built from its
declaration) and a preview of its map; "none" uses a map made elsewhere as it is."""
from __future__ import annotations

import gradio as gr

from . import catalog, map_status
from .errors import shown
from .params import ParamPanel
from .pictures import Picture
from .sketch_tab import annotated, annotator_choices

DEFAULT_ANNOTATOR = "canny"


class UploadTab:
    """Widgets of the Upload tab; `map` is what it sends to a unit."""

    def __init__(self):
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=280):
                self.photo = Picture(label="Reference photo (or a finished control map)", type="numpy",
                                      sources=["upload", "clipboard"], elem_id="upload-photo", height=360)
            with gr.Column(scale=1, min_width=280):
                self.map = gr.Image(label="Control map", type="numpy", format="png", interactive=False,
                                    elem_id="upload-map", height=360)
                self.status = gr.HTML("", elem_id="upload-map-status", elem_classes=["map-status"])
        with gr.Row():
            choices = [("none (use as is: a map made elsewhere)", catalog.NO_ANNOTATOR), *annotator_choices()[1:]]
            self.annotator = gr.Dropdown(choices, value=DEFAULT_ANNOTATOR, label="Annotator", min_width=160,
                                         elem_id="upload-annotator")
            self.make = gr.Button("Make map", size="sm", min_width=80)
        self.params = ParamPanel(DEFAULT_ANNOTATOR)
        self.picture = self.photo

    def map_inputs(self) -> list:
        return [self.photo, self.annotator, *self.params.widgets]

    def make_map(self, photo, annotator, *params) -> tuple:
        """(map, status line); a failed annotator gives no map and says why in the line."""
        return map_status.make(photo, annotator, self.params.read(annotator, list(params)), "photo",
                               "UploadTab.make_map")

    def wire(self) -> None:
        make = shown(self.make_map)
        outs = [self.map, self.status]
        self.photo.upload(make, self.map_inputs(), outs)
        self.make.click(make, self.map_inputs(), outs)
        self.annotator.input(lambda name: self.params.updates(name), [self.annotator], self.params.widgets,
                             queue=False).then(make, self.map_inputs(), outs)
        for widget in self.params.widgets:
            event = widget.release if isinstance(widget, gr.Slider) else widget.input
            event(make, self.map_inputs(), outs, trigger_mode="always_last")
