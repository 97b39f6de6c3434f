"""The generate panel's hires-fix fields as the page reads and restores them (ui/hires_panel.py)."""
import gradio as gr
import pytest

from engine import ControlUnit, GenerationRequest
from ui.generate_panel import GeneratePanel


@pytest.fixture(scope="module")
def panel():
    with gr.Blocks():
        return GeneratePanel(["demo"])


def _values(updates, defaults):
    return [d if isinstance(u, dict) and "value" not in u else (u.get("value") if isinstance(u, dict) else u)
            for u, d in zip(updates, defaults)]


def _defaults(panel):
    return [w.value for w in panel.settings]


def test_a_hires_request_shown_on_the_panel_reads_back_the_same(panel, control_maps):
    unit = ControlUnit("demo:scribble", control_maps[0], hr_option="high")
    request = GenerationRequest(prompt="a red star", units=(unit,), steps=3, seed=4, width=64, height=96,
                                enable_hr=True, hr_scale=1.5, hr_resize_x=128, hr_second_pass_steps=2,
                                hr_upscaler="Lanczos", strength=0.55)
    values = _values(GeneratePanel.from_request(request), _defaults(panel))
    assert GeneratePanel.to_request(values, [unit]) == request


def test_with_the_fix_off_the_recipe_is_as_before_it_existed(panel, control_maps):
    """Off: none of its fields (strength, a unit's hires passes) reach the recipe, whatever they show."""
    values = _defaults(panel)
    hires = len(panel.settings) - len(panel.hires.fields)
    values[hires + 1:hires + 7] = ["Lanczos", 3.0, 256, 0, 9, 0.3]     # set but the box is off
    unit = ControlUnit("demo:scribble", control_maps[0], hr_option="low")
    request = GeneratePanel.to_request(values, [unit])
    plain = GenerationRequest(backbone=values[0], units=(ControlUnit("demo:scribble", control_maps[0]),),
                              steps=values[3], cfg_scale=values[4], seed=-1)
    assert request == plain and "hr_option" not in request.to_json() and "hr_scale" not in request.to_json()
    values[hires] = True
    on = GeneratePanel.to_request(values, [unit])
    assert (on.enable_hr, on.hr_upscaler, on.hr_scale, on.hr_resize_x, on.hr_second_pass_steps, on.strength,
            on.units[0].hr_option) == (True, "Lanczos", 3.0, 256, 9, 0.3, "low")
