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
    got, line = tab.make_map(_photo(), "canny", *widgets)
    import re
    assert re.fullmatch(r'<span class="map-made">canny map made, 128x128 in \d+\.\d s \(at \d\d:\d\d:\d\d\)</span>', line)
    assert np.array_equal(got, annotators.run("canny", _photo(), low_threshold=40, detect_resolution=128))
    assert got[40:90, 28:32].max() == 255


def test_none_uses_a_map_made_elsewhere_as_it_is(tab):
    assert np.array_equal(tab.make_map(_photo(), "none", *[None] * len(tab.params.widgets))[0], _photo())
    cmap, line = tab.make_map(None, "canny", *[u.get("value") for u in tab.params.updates("canny")])
    assert cmap is None and "there is no photo yet" in line


def test_a_failed_annotator_gives_no_map_and_says_what_is_missing_once(tab, tmp_path, monkeypatch, caplog):
    """Issue 20: the previous map must not stay on screen, and the error is said (and logged) once
    even when the same request reaches the server twice."""
    import threading

    annotators.set_weights_dir(tmp_path)          # an empty folder: hed's weights are missing
    try:
        widgets = [u.get("value") for u in tab.params.updates("hed")]
        answers = []
        with caplog.at_level("WARNING", logger="ui"):
            calls = [threading.Thread(target=lambda: answers.append(tab.make_map(_photo(), "hed", *widgets)))
                     for _ in range(2)]
            for t in calls:
                t.start()
            for t in calls:
                t.join()
        assert [a[0] for a in answers] == [None, None]
        assert all('class="map-failed"' in a[1] and "ControlNetHED.pth" in a[1] for a in answers)
        assert len([r for r in caplog.records if "ControlNetHED.pth" in r.getMessage()]) == 1
    finally:
        annotators.set_weights_dir(None)


def test_a_unit_reading_an_empty_source_says_what_is_missing():
    with pytest.raises(ValueError, match="nothing has been generated yet"):
        source_picture("last output", None, None, None, None)
    with pytest.raises(ValueError, match="the upload tab is empty"):
        source_picture("upload", None, None, None, None)
    assert source_picture("upload", None, None, _photo(), None) is not None
