import gradio as gr
import pytest

import annotators
from ui.params import ParamPanel, slot_counts


@pytest.fixture(scope="module")
def panel():
    with gr.Blocks():
        return ParamPanel("scribble")


def _values(updates):
    return [u.get("value") for u in updates]


def test_every_annotator_fits_and_shows_each_declared_parameter_once(panel):
    for name in annotators.names():
        declared = [p["name"] for p in annotators.spec(name)["params"]]
        shown = [u["label"] for u in panel.updates(name) if u.get("visible")]
        assert sorted(shown) == sorted(declared), name


def test_reading_the_shown_defaults_gives_the_declared_defaults(panel):
    for name in annotators.names():
        defaults = {p["name"]: p["default"] for p in annotators.spec(name)["params"]}
        assert panel.read(name, _values(panel.updates(name))) == defaults, name


def test_values_given_are_shown_and_read_back_with_their_types(panel):
    read = panel.read("scribble", _values(panel.updates("scribble", {"threshold": 90, "polarity": "dark_on_light"})))
    assert read["threshold"] == 90 and isinstance(read["threshold"], int)
    assert read["polarity"] == "dark_on_light"
    annotators.run("scribble", __import__("numpy").full((16, 16, 3), 255, "uint8"), **read)


def test_sliders_take_the_declared_range(panel):
    spec = {p["name"]: p for p in annotators.spec("canny")["params"]}
    for update in panel.updates("canny"):
        if update.get("visible") and update["label"] in spec:
            p = spec[update["label"]]
            assert (update["minimum"], update["maximum"]) == (p["min"], p["max"])


def test_no_annotator_hides_every_slot(panel):
    assert not any(u.get("visible") for u in panel.updates(None))
    assert panel.read(None, _values(panel.updates(None))) == {}
    assert sum(slot_counts().values()) == len(panel.widgets)
