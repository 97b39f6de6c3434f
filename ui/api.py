"""The HTTP API, shaped for clients rather than for the GUI's widgets (DESIGN.md):

    generate(recipe_json) -> (images, recipe_json)      annotate(name, image, params_json) -> map
    interrupt() -> status                               models() -> json     annotators() -> json

These are plain functions; `register_endpoints()` publishes them under those names through
Gradio's own API (so `gradio_client` calls them), and the GUI's handlers call the same
`run`, `annotate` and `interrupt`. One generation runs at a time; `interrupt()` ends the
running one after its current model evaluation, and it returns the picture so far: the decoded
denoised estimate, as AUTOMATIC1111 does (its sampler keeps k-diffusion's `denoised`).
"""
from __future__ import annotations

import json
import threading
from typing import Any

import gradio as gr
import numpy as np

import annotators as _annotators
import engine
from engine import GenerationRequest, GenerationResult

from . import catalog, jobs
from .errors import shown
from .pictures import Picture

GENERATION = "generation"        # the concurrency group every generation joins (GUI and API)


def run(request: GenerationRequest, on_step=None, stop: threading.Event | None = None,
        source: str = "gui") -> GenerationResult:
    """Generate, saving each image with its recipe; the one path every generation takes.
    `on_step(step, total, preview)` as in engine.generate; `stop`, when given, is the caller's
    (the page sets it when its tab closes or its request is cancelled), and interrupt() sets it
    too. Waits its turn in the one queue (ui/jobs.py) that the GUI, this API and the REST routes share."""
    with jobs.slot(source, stop=stop) as job:
        return engine.generate(request, on_step=job.track(on_step), stop=job.stop, save=True,
                               manager=catalog.manager())


def run_batch(request: GenerationRequest, folder, unit_index: int, on_step=None, on_item=None,
              stop: threading.Event | None = None, source: str = "gui"):
    """engine.run_batch in the one queue: the whole batch is one job, so interrupt() ends it
    after the current step (the pictures finished stay; a re-run makes the rest)."""
    with jobs.slot(source, stop=stop) as job:
        return engine.run_batch(request, folder, unit_index, on_step=job.track(on_step), on_item=on_item, stop=job.stop,
                     manager=catalog.manager())


def interrupt() -> str:
    """End the running generation after its current step (its picture so far is kept)."""
    return "interrupting" if jobs.interrupt() else "nothing is running"


def generate(recipe_json: str) -> tuple[list, str]:
    """Make the images of a recipe (DESIGN.md's schema: {"format": "controlnet-studio", "version": 1,
    "request": {...}}). Returns the saved PNG files (each carries its own recipe) and the recipe as
    run, with its seed resolved. What went wrong without stopping the run (the images could not be
    saved, say) and prompt words the model does not know come back beside it as "warnings" and
    "ignored_words", which a recipe reader skips."""
    request = GenerationRequest.from_json(recipe_json)
    result = run(request, source="gradio-api")
    images = [str(p) for p in result.paths] or list(result.images)
    recipe = result.recipe
    if result.warnings or result.ignored_words or result.interrupted:
        extra = json.loads(recipe)
        extra.update({"warnings": list(result.warnings), "ignored_words": list(result.ignored_words),
                      "interrupted": result.interrupted})
        recipe = json.dumps(extra)
    return images, recipe


def parse_params(params: str | dict | None) -> dict:
    if params is None or params == "":
        return {}
    if isinstance(params, dict):
        return dict(params)
    try:
        value = json.loads(params)
    except ValueError as e:
        raise ValueError(f"params_json is not valid JSON ({e}); "
                         'give an object such as {"low_threshold": 100}') from None
    if not isinstance(value, dict):
        raise ValueError("params_json must be a JSON object of parameter names and values")
    return value


def annotate(name: str, image: Any, params_json: str | dict | None = None) -> np.ndarray:
    """The control map annotator `name` makes of `image`, with parameters given as a JSON object
    (or a dict) of the annotator's declared parameters."""
    if image is None:
        raise ValueError(f"annotator {name!r} needs a picture; upload or draw one first")
    return _annotators.run(name, image, **parse_params(params_json))


def models() -> dict:
    """Installed models: {"backbones": [...], "controlnets": [{"name", "kind"}, ...],
    "loras": [{"name", "family"}, ...], "ipadapters": [{"name", "family"}, ...]} (family "sd1"/"sd2"/"sdxl"
    or None when not told)."""
    found = catalog.models()
    return {"backbones": found["backbones"],
            "controlnets": [{"name": n, "kind": catalog.condition_kind(n)} for n in found["controlnets"]],
            "loras": [{"name": lora["name"], "family": lora["family"]} for lora in catalog.loras()],
            "ipadapters": [{"name": a["name"], "family": a["family"]} for a in catalog.ip_adapters()]}


def annotators() -> list:
    """Every annotator's declaration: name, kind, parameters (default/min/max/step/choices), weights."""
    return _annotators.list()


def register_endpoints() -> None:
    """Publish the API inside the current Blocks. The endpoints that carry images use hidden
    components, so clients send and receive real image files."""
    with gr.Column(visible=False):
        recipe_in = gr.Textbox(label="recipe_json")
        images_out = gr.Gallery(label="images", format="png")
        recipe_out = gr.Textbox(label="recipe_json")
        go = gr.Button("generate")
        name_in = gr.Textbox(label="name")
        image_in = Picture(label="image", type="numpy", image_mode=None)
        params_in = gr.Textbox(label="params_json", value="{}")
        map_out = gr.Image(label="map", type="numpy", format="png")
        make = gr.Button("annotate")
    go.click(shown(generate), [recipe_in], [images_out, recipe_out], api_name="generate",
             concurrency_id=GENERATION, concurrency_limit=1)
    make.click(shown(annotate), [name_in, image_in, params_in], [map_out], api_name="annotate")
    gr.api(_typed(interrupt, str), api_name="interrupt", queue=False)
    gr.api(_typed(models, dict), api_name="models", queue=False)
    gr.api(_typed(annotators, list), api_name="annotators", queue=False)


PUBLIC = ("generate", "annotate", "interrupt", "models", "annotators")


def hide_gui_events(blocks: gr.Blocks) -> None:
    """Keep the GUI's own handlers out of the API (clients see only the endpoints above), and
    keep Gradio's per-component spinner and "Error" cover off the page: it hides what the
    artist made until the next update, while errors already show as messages and generation
    has its own progress bar."""
    for fn in blocks.fns.values():
        if fn.api_name not in PUBLIC:
            fn.api_visibility = "private"
            fn.show_progress = "hidden"


def _typed(fn, returns):
    """gr.api reads the return type from annotations, which `from __future__` turned into text."""
    def endpoint():
        return shown(fn)()
    endpoint.__name__, endpoint.__doc__ = fn.__name__, fn.__doc__
    endpoint.__annotations__ = {"return": returns}
    return endpoint
