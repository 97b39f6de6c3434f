"""The studio's one page: inputs on the left (sketch, pose and upload tabs, then the control
units), the result on the right (settings, Generate, progress, gallery, recipe). This module
places the parts and connects them; each part's own events live with it."""
from __future__ import annotations

import contextlib
import json
import time

import gradio as gr
import numpy as np

import engine

from . import api, batch_panel, catalog, generation
from .errors import shown, warn
from .generate_panel import GeneratePanel, words_hint
from .pose_tab import PoseTab
from .sketch_tab import SketchTab
from .units import SHOWN_AT_START, UnitStack
from .upload_tab import UploadTab

TITLE = "ControlNet Studio"


def build_app(manager=None) -> gr.Blocks:
    """The Blocks of the studio, with the HTTP API endpoints registered. Every generation and
    backbone look-up of the page and the API goes through `manager` (an engine.ModelManager;
    default: the engine's own)."""
    if manager is not None:
        catalog.use_manager(manager)
    installed = catalog.models()
    with gr.Blocks(title=TITLE, analytics_enabled=False, fill_width=True) as demo:
        with gr.Row(equal_height=False):
            with gr.Column(scale=6, min_width=520):
                gr.Markdown(f"### {TITLE}", elem_id="title")
                with gr.Tabs():
                    with gr.Tab("Sketch", id="sketch", elem_id="tab-sketch"):
                        sketch = SketchTab()
                        sketch_send = _send_row("sketch")
                    with gr.Tab("Pose", id="pose", elem_id="tab-pose"):
                        pose = PoseTab()
                        pose_send = _send_row("pose")
                    with gr.Tab("Upload", id="upload", elem_id="tab-upload"):
                        upload = UploadTab()
                        upload_send = _send_row("upload")
                gr.Markdown("#### Control units", elem_id="units-title")
                stack = UnitStack(installed["controlnets"])
            with gr.Column(scale=5, min_width=420):
                panel = GeneratePanel(installed["backbones"])
        api.register_endpoints()

        for buttons in (sketch_send, pose_send, upload_send):
            for i, button in enumerate(buttons):
                stack.follow(i, button)
        for tab in (sketch, pose, upload):
            tab.wire()
        stack.wire([sketch.canvas, pose.map, upload.photo, panel.last_output])
        panel.wire()
        _wire_sends(stack, sketch, sketch_send, "sketch")
        _wire_sends(stack, upload, upload_send, "upload")
        _wire_sends(stack, pose, pose_send, "pose")
        _wire_generation(panel, stack)
        _wire_family(panel, stack, installed["controlnets"])
        _wire_recipe(panel, stack, pose)
        _wire_hires(panel, stack)
        demo.load(words_hint, [panel.backbone], [panel.words], show_progress="hidden")
        demo.load(panel.show_current, None, [panel.backbone, panel.cfg_scale], show_progress="hidden", queue=False)
    api.hide_gui_events(demo)
    return demo


def _wire_family(panel: GeneratePanel, stack: UnitStack, controlnets: list[str]) -> None:
    """Picking a backbone offers each unit only the control models of its family (an SDXL
    ControlNet for an SDXL backbone); a unit's model that does not fit is cleared."""
    models = [u.model for u in stack.units]

    def offer(backbone, *current):
        fitting = catalog.with_references(catalog.controlnets_for(backbone, controlnets), backbone)
        return [gr.update(choices=fitting, value=c if c in fitting else (fitting[0] if fitting else None))
                for c in current]
    panel.backbone.input(offer, [panel.backbone, *models], models, show_progress="hidden", queue=False)


def _wire_hires(panel: GeneratePanel, stack: UnitStack) -> None:
    """Each unit's "Hires passes" shows while the hires fix is on (a dropped recipe sets the box too)."""
    options = [u.hr_option for u in stack.units]
    panel.hires.enable.change(lambda on: [gr.update(visible=bool(on))] * len(options), [panel.hires.enable],
                              options, queue=False, show_progress="hidden")


def _send_row(source: str) -> list:
    with gr.Row(elem_classes=["send-row"]):
        gr.Markdown("Send this map to:", elem_classes=["send-label"])
        return [gr.Button(f"→ Unit {i + 1}", size="sm", min_width=70, visible=i < SHOWN_AT_START,
                          elem_id=f"{source}-to-unit{i + 1}") for i in range(engine.limits.MAX_UNITS)]


def _wire_sends(stack: UnitStack, tab, buttons: list, source: str) -> None:
    for i, button in enumerate(buttons):
        unit = stack.units[i]
        if source == "pose":
            def send(cmap, pose, model, i=i):
                return stack.sent(i, source, cmap, None, {}, model, pose)
            inputs = [tab.map, tab.editor, unit.model]
        else:
            def send(cmap, annotator, *rest, i=i, tab=tab):
                *params, model = rest
                return stack.sent(i, source, cmap, annotator, tab.params.read(annotator, params), model)
            inputs = [tab.map, tab.annotator, *tab.params.widgets, unit.model]
        button.click(shown(send), inputs, stack.send_outputs(i))


def _wire_generation(panel: GeneratePanel, stack: UnitStack) -> None:
    per_unit = len(stack.units[0].fields)
    fidelity = [u.fidelity for u in stack.units]
    outputs = [panel.gallery, panel.status, panel.recipe, panel.preview, panel.last_seed, panel.last_output,
               panel.interrupt, *fidelity]
    # Interrupt is on only while this page's generation runs (off again after it ends or fails)
    running, idle = gr.update(interactive=True), gr.update(interactive=False)

    def read_request(values: list, batch_unit: int | None = None):
        """(the request of the page's widget values, [(unit index, ControlUnit)] of the units in it);
        the batch's unit may have no map yet (the folder's pictures are its maps)."""
        settings, rest = list(values[:len(panel.settings)]), values[len(panel.settings):]
        slots = []
        for i, unit in enumerate(stack.units):
            own = list(rest[i * per_unit:(i + 1) * per_unit])
            if i == batch_unit:
                own = batch_panel.batch_request(i, own[0], own)
            made = unit.to_unit(own)
            if made is not None:
                slots.append((i, made))
        return GeneratePanel.to_request(settings, [u for _, u in slots]), slots

    def on_generate(*values):
        request, slots = read_request(list(values))
        started = time.monotonic()
        notes = "".join(f" · {n}" for n in generation.run_notes(request))
        yield {panel.status: generation.progress_html(0, generation.planned_steps(request),
                                                      " · loading the models" + notes),
               panel.preview: gr.update(visible=True, value=None), panel.interrupt: running,
               **{f: "" for f in fidelity}}
        result, timer = None, generation.StepTimer()
        try:
            # closing() so that a closed page (Gradio closes this handler) closes the stream, which stops the run
            with contextlib.closing(generation.stream(request)) as items:
                for item in items:
                    if item[0] == "done":
                        result = item[1]
                        continue
                    _, step, total, image = item
                    timer.step(step)
                    yield panel.step_update(step, total, generation.pass_note(request, step, total) + notes, image)
        except Exception:
            yield panel.failed_update()
            raise
        timer.record(request, result)
        for warning in result.warnings:
            warn(warning)
        first = np.asarray(result.images[0])
        scores = {f: "" for f in fidelity}
        for i, unit in slots:
            scores[fidelity[i]] = generation.fidelity_text(unit, first)
        yield {panel.gallery: [str(p) for p in result.paths] or list(result.images),
               panel.status: generation.summary(result, time.monotonic() - started),
               panel.recipe: pretty(result.recipe), panel.interrupt: idle, panel.preview: gr.update(visible=False), panel.last_seed: result.seeds[0], panel.last_output: first,
               **scores}

    inputs = [*panel.settings, *[f for u in stack.units for f in u.fields]]
    panel.generate.click(shown(on_generate), inputs, outputs, concurrency_id=api.GENERATION,
                         concurrency_limit=1, show_progress="hidden")

    def on_interrupt():
        gr.Info("Interrupting after the current step" if api.interrupt() == "interrupting" else "Nothing is running")

    panel.interrupt.click(on_interrupt, None, None, concurrency_limit=None)
    batch_panel.wire(panel.batch, panel, stack, read_request)


def pretty(recipe: str) -> str:
    """The recipe as the panel shows it: indented JSON (the PNG keeps the compact text; both read back)."""
    return json.dumps(json.loads(recipe), indent=2)


def _wire_recipe(panel: GeneratePanel, stack: UnitStack, pose: PoseTab) -> None:
    unit_outputs = [c for u in stack.units for c in u.restorable]
    outputs = [*panel.settings, *unit_outputs, stack.count, *stack.visibility_outputs, panel.status, panel.recipe,
               pose.editor, pose.map, pose.exporter, panel.loras.accordion, panel.hires.accordion]

    def on_recipe(path):
        if not path:
            return [gr.update()] * len(outputs)
        request = engine.read_recipe(path, this_image=True)
        if len(request.units) > len(stack.units):
            raise ValueError(f"this recipe has {len(request.units)} units; the studio shows {len(stack.units)}")
        units = [u.from_unit(request.units[i] if i < len(request.units) else None) for i, u in enumerate(stack.units)]
        count = max(SHOWN_AT_START, len(request.units))
        note = (f'<span class="gen-done">Restored: {len(request.units)} unit{"s" * (len(request.units) != 1)}, '
                f'{len(request.loras)} LoRA{"s" * (len(request.loras) != 1)}, '
                f'{"hires fix on, " if request.enable_hr else ""}seed {request.seed}</span>')
        # the first unit's pose that travelled in the recipe goes back into the editor, editable
        posed = next((u.pose for u in request.units if u.pose is not None), None)
        editor = [gr.update()] * 3 if posed is None else list(pose.replace(json.dumps(posed)))
        return [*GeneratePanel.from_request(request), *[x for u in units for x in u], count,
                *stack.visibility(count), note, pretty(request.to_json()), *editor,
                gr.update(open=True) if request.loras else gr.update(),
                gr.update(open=True) if request.enable_hr else gr.update()]

    panel.recipe_drop.upload(shown(on_recipe), [panel.recipe_drop], outputs)
