import gradio as gr
import numpy as np
import pytest

from engine import ControlUnit
from ui.units import Unit, painted_mask


@pytest.fixture(scope="module")
def unit():
    with gr.Blocks():
        return Unit(2, ["demo:scribble", "demo:canny"], visible=True)


def _values(updates):
    return [u.get("value") if isinstance(u, dict) else u for u in updates]


def test_an_enabled_unit_without_a_map_says_which_unit_and_what_to_do(unit):
    values = _values(unit.from_unit(None))[:len(unit.fields)]
    values[0] = True
    with pytest.raises(ValueError, match="unit 3 is enabled but has no control map"):
        unit.to_unit(values)
    values[0] = False
    assert unit.to_unit(values) is None


def test_a_unit_shown_and_read_back_is_the_same_unit(unit, control_maps):
    mask = np.zeros((64, 64), np.uint8)
    mask[:, :32] = 255
    original = ControlUnit("demo:canny", control_maps[1], weight=0.7, start=0.1, end=0.8, mode="control",
                           mask=mask, resize_mode="fill", annotator="canny", hr_option="low",
                           annotator_params={"low_threshold": 50, "high_threshold": 150, "detect_resolution": 512})
    values = _values(unit.from_unit(original))[:len(unit.fields)]
    assert unit.to_unit(values) == original


def test_a_units_pose_travels_in_the_recipe_and_comes_back(unit, control_maps):
    """Issue 20: the pose a map was drawn from is the unit's own field, kept through a recipe."""
    import json

    from engine import GenerationRequest
    from ui.pose_tab import DEFAULT_POSE
    posed = ControlUnit("demo:scribble", control_maps[0], pose=json.dumps(DEFAULT_POSE))
    values = _values(unit.from_unit(posed))[:len(unit.fields)]
    assert json.loads(values[10]) == DEFAULT_POSE
    read = unit.to_unit(values)
    assert read == posed and read.pose == DEFAULT_POSE
    again = GenerationRequest.from_json(GenerationRequest(units=(read,)).to_json())
    assert again.units[0].pose == DEFAULT_POSE
    # a unit without a pose writes the recipe it always wrote (old recipes restore unchanged)
    assert "pose" not in ControlUnit("demo:scribble", control_maps[0]).to_dict()


def test_an_unreadable_map_is_said_not_sent(unit):
    from ui.pictures import Unreadable
    values = _values(unit.from_unit(None))[:len(unit.fields)]
    values[0], values[2] = True, Unreadable("'fake.png' could not be read as a picture")
    with pytest.raises(ValueError, match="unit 3: 'fake.png' could not be read"):
        unit.to_unit(values)


def test_the_recipe_panel_is_indented_and_reads_back(control_maps):
    from engine import GenerationRequest
    from ui.layout import pretty
    request = GenerationRequest(prompt="a red star", units=(ControlUnit("demo:scribble", control_maps[0]),))
    text = pretty(request.to_json())
    assert text.startswith('{\n  "format": "controlnet-studio"') and len(text.splitlines()) > 10
    assert GenerationRequest.from_json(text) == request


def test_errors_from_the_engine_name_the_unit(unit, control_maps):
    values = _values(unit.from_unit(ControlUnit("demo:canny", control_maps[0])))[:len(unit.fields)]
    values[5], values[6] = 0.9, 0.2  # start after end
    with pytest.raises(ValueError, match=r"^unit 3: start \(0.9\) must be before end"):
        unit.to_unit(values)


def test_the_painted_area_is_the_mask():
    layer = np.zeros((32, 48, 4), np.uint8)
    layer[4:10, 5:20, 3] = 200
    mask = painted_mask({"background": None, "layers": [layer], "composite": None})
    assert mask.shape == (32, 48) and mask.dtype == np.uint8
    assert (mask == 255).sum() == 6 * 15 and set(np.unique(mask)) == {0, 255}
    with pytest.raises(ValueError, match="nothing is painted"):
        painted_mask({"layers": [np.zeros((8, 8, 4), np.uint8)]})
