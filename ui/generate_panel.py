"""The right-hand side: backbone, prompt, sampling settings, Generate / Interrupt, the step
preview, the gallery of saved PNGs, and the recipe of the last image."""
from __future__ import annotations

import dataclasses

import gradio as gr

import engine
from engine import SAMPLERS, GenerationRequest, limits

from . import catalog, generation, lora_panel
from .batch_panel import BatchPanel
from .hires_panel import HiresFields
from .lora_panel import LoraRows

SEED_RANDOM = -1
LORA_FIELDS = 2 * lora_panel.ROWS


class GeneratePanel:
    """Generation settings and results. `settings` are the widgets a request is read from."""

    def __init__(self, backbones: list[str]):
        self.missing = gr.Markdown(missing_models_note(backbones), elem_id="no-models", elem_classes=["notice"],
                                   visible=not backbones)
        self.backbone = gr.Dropdown(catalog.backbone_choices(backbones), value=catalog.default_backbone(backbones),
                                    label="Backbone",
                                    allow_custom_value=True, elem_id="backbone")
        self.words = gr.Markdown("", elem_id="known-words", elem_classes=["hint"])
        self.prompt = gr.Textbox(label="Prompt", lines=2, placeholder="what to make, e.g. a red circle on a blue sky",
                                 elem_id="prompt")
        self.negative_prompt = gr.Textbox(label="Negative prompt", lines=1, elem_id="negative-prompt")
        with gr.Row():
            self.steps = gr.Slider(1, limits.MAX_STEPS, value=20, step=1, label="Steps", elem_id="steps")
            self.cfg_scale = gr.Slider(0, limits.MAX_CFG_SCALE, step=0.5, label="CFG scale", elem_id="cfg-scale",
                                       value=catalog.recommended_cfg(self.backbone.value),
                                       info="picking a backbone sets its own")
            self.sampler = gr.Dropdown(list(SAMPLERS), value="unipc", label="Sampler", min_width=120)
        with gr.Row():
            self.width = gr.Slider(0, limits.MAX_SIZE, value=0, step=limits.SIZE_MULTIPLE, elem_id="width",
                                   label="Width (0: the model's own size)")
            self.height = gr.Slider(0, limits.MAX_SIZE, value=0, step=limits.SIZE_MULTIPLE, elem_id="height",
                                    label="Height (0: the model's own size)")
            self.batch_size = gr.Slider(1, limits.MAX_BATCH_SIZE, value=1, step=1, label="Batch")
        self.loras = LoraRows(self.backbone.value)
        self.hires = HiresFields()
        with gr.Row(equal_height=False):
            self.seed = gr.Number(SEED_RANDOM, precision=0, label="Seed (-1: random)", minimum=-1,
                                  maximum=limits.MAX_SEED, min_width=140, elem_id="seed")
            self.random_seed = gr.Button("Random seed", size="sm", min_width=60)
            self.reuse_seed = gr.Button("Reuse last seed", size="sm", min_width=60, elem_id="reuse-seed")
        self.limit_note = gr.HTML("", elem_id="limit-note")   # filled by page_limits.js when a value is clamped
        with gr.Row():
            self.generate = gr.Button("Generate", variant="primary", elem_id="generate")
            # off until a generation of this page runs (ui.layout turns it on and off again)
            self.interrupt = gr.Button("Interrupt", variant="stop", elem_id="interrupt", interactive=False)
        self.batch = BatchPanel()
        self.status = gr.Markdown("", elem_id="status")
        self.preview = gr.Image(label="Step preview", type="numpy", interactive=False, height=200, visible=False,
                                elem_id="step-preview")
        self.gallery = gr.Gallery(label="Results (saved PNGs with their recipe; download keeps it)", format="png",
                                  columns=2, height=420, buttons=["download", "fullscreen"], interactive=False,
                                  object_fit="contain", elem_id="gallery")
        self.recipe_drop = gr.File(label="Drop a PNG made here (on this box or anywhere on the page) to bring "
                                         "back every field and unit", file_types=[".png"], type="filepath",
                                   height=90, elem_id="recipe-drop")
        with gr.Accordion("Recipe", open=False):
            self.recipe = gr.Code(label="Recipe of the last image (JSON)", language="json", interactive=False,
                                  elem_id="recipe-json")
        self.last_seed = gr.State(None)
        self.last_output = gr.State(None)

    @property
    def settings(self) -> list:
        """The widgets `to_request` reads, in its argument order."""
        return [self.backbone, self.prompt, self.negative_prompt, self.steps, self.cfg_scale, self.sampler,
                self.width, self.height, self.batch_size, self.seed, *self.loras.fields, *self.hires.fields]

    @staticmethod
    def to_request(values: list, units: list) -> GenerationRequest:
        backbone, prompt, negative, steps, cfg, sampler, width, height, batch, seed = values[:10]
        if seed is None:
            seed = SEED_RANDOM
        loras, hires = values[10:10 + LORA_FIELDS], HiresFields.to_request(values[10 + LORA_FIELDS:])
        if not hires:
            # a unit's hires passes mean nothing without the fix; its recipe stays as before the fix existed
            units = [dataclasses.replace(u, hr_option="both") if u.hr_option != "both" else u for u in units]
        return GenerationRequest(
            backbone=backbone or "", prompt=prompt or "", negative_prompt=negative or "", units=tuple(units),
            width=_size_or_native(width), height=_size_or_native(height),
            steps=steps, cfg_scale=cfg, sampler=sampler, batch_size=batch, seed=int(seed),
            loras=LoraRows.to_loras(loras), **hires)

    @staticmethod
    def from_request(request: GenerationRequest) -> list:
        """Values of `settings` showing `request`."""
        return [gr.update(value=request.backbone), request.prompt, request.negative_prompt, request.steps,
                request.cfg_scale, request.sampler, request.width or 0, request.height or 0, request.batch_size,
                request.seed, *LoraRows.from_loras(request.loras, request.backbone),
                *HiresFields.from_request(request)]

    def wire(self) -> None:
        self.random_seed.click(lambda: SEED_RANDOM, None, [self.seed], queue=False)
        self.reuse_seed.click(lambda last: SEED_RANDOM if last is None else last, [self.last_seed], [self.seed],
                              queue=False)
        self.loras.wire(self.backbone)
        self.backbone.change(words_hint, [self.backbone], [self.words], show_progress="hidden")
        # .input, not .change: a dropped recipe sets the backbone too, and must keep its own scale
        self.backbone.input(catalog.recommended_cfg, [self.backbone], [self.cfg_scale], show_progress="hidden")
        # A1111's sd_model_checkpoint: picking one here is what the REST API's /options reports
        self.backbone.input(_pick_backbone, [self.backbone], None, show_progress="hidden", queue=False)

    def step_update(self, step: int, total: int, note: str, image) -> dict:
        """A running generation's (or batch's) step: the progress bar and, when one came, the preview."""
        update = {self.status: generation.progress_html(step, total, note)}
        if image is not None:
            update[self.preview] = image
        return update

    def failed_update(self) -> dict:
        """A run that raised: the status says so (the error itself is the toast), the preview goes."""
        return {self.status: '<span class="gen-failed">Failed: see the message</span>',
                self.preview: gr.update(visible=False), self.interrupt: gr.update(interactive=False)}

    def show_current(self):
        """On page load: the current backbone (which the REST API's /options may have switched), its scale."""
        current, shown = catalog.current_backbone(), self.backbone.value
        if current == shown:
            return gr.update(), gr.update()
        return gr.update(value=current), catalog.recommended_cfg(current)


def _pick_backbone(backbone: str) -> None:
    if backbone:
        catalog.set_current_backbone(backbone)


def missing_models_note(backbones: list[str]) -> str:
    """What to do when no backbone is installed (a fresh checkout before the demo is built)."""
    if backbones:
        return ""
    return ("**No model is installed yet**, so Generate cannot run; the annotators and previews work. "
            "Build the embedded demo model with `python3 launch.py train-demo` (on a GPU, about "
            f"15 minutes), or put a Stable Diffusion model (a diffusers folder or a `.safetensors` file) "
            f"in `{engine.models_dir() / 'backbones'}`, then restart the studio.")


def words_hint(backbone: str) -> str:
    words = catalog.known_words(backbone) if backbone else None
    if not words:
        return ""
    return f"**{backbone}** knows these words; others are ignored: " + ", ".join(words)


def _size_or_native(value) -> int | None:
    """0 (or nothing) means the backbone's own size; other values go to the request to be checked."""
    if value is None or value == 0:
        return None
    return int(value) if float(value).is_integer() else value
