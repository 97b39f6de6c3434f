import gradio as gr
import numpy as np
import pytest

import annotators
from ui.units import source_picture
from ui.upload_tab import UploadTab


@pytest.fixture(scope="module")
def tab():
    with gr.Blocks():
        return UploadTab()


def _photo():
    photo = np.full((128, 128, 3), 255, np.uint8)
    photo[40:90, 30:100] = (200, 30, 30)
    return photo


def test_the_map_is_the_chosen_annotators_with_the_sliders_values(tab):
    widgets = [u.get("value") for u in tab.params.updates("canny", {"low_threshold": 40, "detect_resolution": 128})]
    got = tab.make_map(_photo(), "canny", *widgets)
    assert np.array_equal(got, annotators.run("canny", _photo(), low_threshold=40, detect_resolution=128))
    assert got[40:90, 28:32].max() == 255


def test_none_uses_a_map_made_elsewhere_as_it_is(tab):
    assert np.array_equal(tab.make_map(_photo(), "none", *[None] * len(tab.params.widgets)), _photo())
    assert tab.make_map(None, "canny", *[u.get("value") for u in tab.params.updates("canny")]) is None


def test_a_unit_reading_an_empty_source_says_what_is_missing():
    with pytest.raises(ValueError, match="nothing has been generated yet"):
        source_picture("last output", None, None, None, None)
    with pytest.raises(ValueError, match="the upload tab is empty"):
        source_picture("upload", None, None, None, None)
    assert source_picture("upload", None, None, _photo(), None) is not None
