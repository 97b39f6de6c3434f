"""The generate panel's "Hires fix" accordion (AUTOMATIC1111's enable_hr and its fields): a second,
img2img pass at a larger size (engine.hires). The fields go into the request only while the fix is
on, so a run without it writes the same recipe as before the accordion existed."""
from __future__ import annotations

import gradio as gr

from engine import UPSCALERS, GenerationRequest, limits

DEFAULTS = GenerationRequest()
DEFAULT_STRENGTH = 0.7      # A1111's hires-fix denoising strength on its page


class HiresFields:
    """`fields` are the widgets the hires fields of a request are read from, in `to_request`'s order."""

    def __init__(self):
        with gr.Accordion("Hires fix", open=False, elem_id="hires") as self.accordion:
            self.enable = gr.Checkbox(False, label="Hires fix: a second pass at a larger size", elem_id="hr-enable",
                                      info="each unit's \"Hires passes\" picks the passes it acts in")
            with gr.Row():
                self.upscaler = gr.Dropdown(list(UPSCALERS), value=DEFAULTS.hr_upscaler, label="Upscaler",
                                            min_width=160, elem_id="hr-upscaler")
                self.scale = gr.Slider(1, limits.MAX_HR_SCALE, value=DEFAULTS.hr_scale, step=0.05,
                                       label="Upscale by", elem_id="hr-scale")
            with gr.Row():
                self.resize_x = gr.Slider(0, limits.MAX_SIZE, value=0, step=limits.SIZE_MULTIPLE,
                                          label="Resize width to (0: by the scale)", elem_id="hr-resize-x")
                self.resize_y = gr.Slider(0, limits.MAX_SIZE, value=0, step=limits.SIZE_MULTIPLE,
                                          label="Resize height to (0: by the scale)", elem_id="hr-resize-y")
            with gr.Row():
                self.steps = gr.Slider(0, limits.MAX_STEPS, value=0, step=1, elem_id="hr-steps",
                                       label="Hires steps (0: as many as Steps)")
                self.strength = gr.Slider(0.01, 1, value=DEFAULT_STRENGTH, step=0.01, elem_id="hr-strength",
                                          label="Denoising strength")

    @property
    def fields(self) -> list:
        return [self.enable, self.upscaler, self.scale, self.resize_x, self.resize_y, self.steps, self.strength]

    @staticmethod
    def to_request(values: list) -> dict:
        """GenerationRequest keywords of these widget values; none but enable_hr=False while off."""
        enable, upscaler, scale, rx, ry, steps, strength = values
        if not enable:
            return {}
        return dict(enable_hr=True, hr_upscaler=upscaler or DEFAULTS.hr_upscaler,
                    hr_scale=DEFAULTS.hr_scale if scale is None else scale, hr_resize_x=_int(rx),
                    hr_resize_y=_int(ry), hr_second_pass_steps=_int(steps),
                    strength=DEFAULT_STRENGTH if strength is None else strength)

    @staticmethod
    def from_request(request: GenerationRequest) -> list:
        """Values of `fields` showing `request`; a recipe without the fix turns it off and leaves the rest."""
        if not request.enable_hr:
            return [False, *[gr.update()] * 6]
        return [True, request.hr_upscaler, request.hr_scale, request.hr_resize_x, request.hr_resize_y,
                request.hr_second_pass_steps, request.strength]


def _int(value) -> int:
    """A slider's number as the int the request checks (a fraction is left for its clear error)."""
    if value is None:
        return 0
    return int(value) if float(value).is_integer() else value
