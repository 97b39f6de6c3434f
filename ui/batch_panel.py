"""The generate panel's "Batch over a folder" accordion (the ControlNet extension's batch mode):
the page's request run once per picture in a folder on the server, each picture the map of one
unit (through its annotator), the other units as they are (engine.batch). Which folders may be
read is ui.folders' call."""
from __future__ import annotations

import contextlib
import html
import time

import gradio as gr
import numpy as np

from engine import batch_folder, limits

from . import api, folders, generation
from .errors import shown

PLACEHOLDER = np.zeros((64, 64, 3), np.uint8)   # the batch unit's map until the folder gives it one


class BatchPanel:
    def __init__(self):
        with gr.Accordion("Batch over a folder", open=False, elem_id="batch") as self.accordion:
            self.folder = gr.Textbox(label="Folder of pictures on the server", elem_id="batch-dir",
                                     placeholder=f"e.g. {folders.inputs_dir() / 'sketches'} (a bare name: a folder "
                                                 f"in {folders.inputs_dir()})")
            with gr.Row(equal_height=False):
                self.unit = gr.Dropdown([f"Unit {i + 1}" for i in range(limits.MAX_UNITS)], value="Unit 1",
                                        type="index", label="Unit that takes each picture as its map",
                                        min_width=160, elem_id="batch-unit",
                                        info="enable it and pick its model; its annotator reads each picture")
                self.run = gr.Button("Run over the folder", elem_id="batch-run", min_width=140, scale=0)
            self.out = gr.Markdown("", elem_id="batch-out")
            self.report = gr.Textbox(label="Batch report", lines=4, max_lines=12, interactive=False,
                                     elem_id="batch-report")


def batch_request(unit_index: int, enabled: bool, unit_values: list) -> list:
    """The batch unit's widget values with a placeholder map where it has none (each picture replaces
    it); a unit left off is a clear error, as a batch unit with no model would be."""
    if unit_index is None:
        raise ValueError("pick the unit that takes the folder's pictures")
    if not enabled:
        raise ValueError(f"unit {unit_index + 1} takes the folder's pictures: tick its enable box and pick its "
                         "control model (and its annotator, or none to use the pictures as maps)")
    values = list(unit_values)
    if values[2] is None:
        values[2] = PLACEHOLDER
    return values


def summary(result, seconds: float) -> str:
    made, skipped = result.count("made"), result.count("skipped")
    others = len(result.items) - made - skipped
    head = "Batch interrupted (run it again to make the rest)" if result.interrupted else "Batch done"
    text = (f"{head}: {made} made, {skipped} already made (same recipe), {others} not made, "
            f"in {seconds:.1f} s · seeds from {result.seed}")
    return f'<span class="gen-done">{html.escape(text)}</span>'


def wire(batch: BatchPanel, panel, stack, read_request) -> None:
    """`read_request(values, batch_unit)` -> (request, slots) reads the page as Generate does."""
    outputs = [panel.gallery, panel.status, panel.preview, panel.interrupt, batch.out, batch.report]
    running, idle = gr.update(interactive=True), gr.update(interactive=False)

    def on_batch(folder_text, unit_index, *values):
        folder = folders.batch_folder(folder_text)
        request, slots = read_request(list(values), unit_index)
        index = [i for i, _ in slots].index(unit_index)
        started, lines = time.monotonic(), []
        yield {panel.status: generation.progress_html(0, 0, " · reading the folder"), batch.report: "",
               panel.preview: gr.update(visible=True, value=None), panel.interrupt: running,
               batch.out: f"Outputs go to `{_folder_of(request, index, folder)}`"}
        result = None
        try:
            call = lambda on_step, stop, emit: api.run_batch(request, folder, index, on_step, emit, stop)  # noqa: E731
            with contextlib.closing(generation.stream_call(call)) as items:
                for item in items:
                    if item[0] == "done":
                        result = item[1]
                    elif item[0] == "item":
                        lines.append(item[1].line())
                        yield {batch.report: "\n".join(lines)}
                    else:
                        _, step, total, image = item
                        yield panel.step_update(step, total, " over the whole batch", image)
        except Exception:
            yield panel.failed_update()
            raise
        made = [str(p) for item in result.items if item.status == "made" for p in item.outputs]
        yield {panel.gallery: made or gr.update(), panel.status: summary(result, time.monotonic() - started),
               panel.preview: gr.update(visible=False), panel.interrupt: idle,
               batch.out: f"Outputs in `{result.folder}`", batch.report: "\n".join(lines)}

    inputs = [batch.folder, batch.unit, *panel.settings, *[f for u in stack.units for f in u.fields]]
    batch.run.click(shown(on_batch), inputs, outputs, concurrency_id=api.GENERATION, concurrency_limit=1,
                    show_progress="hidden")


def _folder_of(request, index: int, folder) -> str:
    return str(batch_folder(request, index, folder))
