"""A picture goes through the model kind's default annotator (CLI `image=`, annotator="auto");
a finished map (CLI `map=`, annotator=None, an old recipe) is used as it is."""
import numpy as np
import pytest
from PIL import Image

import annotators
from engine import ControlUnit, GenerationRequest
from engine.cli import parse_control


def _sketch(tmp_path):
    paper = np.full((64, 64, 3), 255, np.uint8)
    paper[20:44, 30:33] = 0                      # a dark stroke on white paper, as a person draws
    path = tmp_path / "sketch.png"
    Image.fromarray(paper).save(path)
    return paper, path


def test_cli_image_runs_the_kinds_default_annotator(tmp_path):
    paper, path = _sketch(tmp_path)
    unit = parse_control(f"model=demo:scribble,image={path}")
    assert unit.annotator == "scribble"
    assert np.array_equal(unit.image, annotators.run("scribble", paper))
    assert unit.image[30, 31].max() == 255 and unit.image[5, 5].max() == 0   # white stroke on black


def test_cli_map_is_used_as_it_is(tmp_path):
    paper, path = _sketch(tmp_path)
    unit = parse_control(f"model=demo:scribble,map={path}")
    assert unit.annotator is None and np.array_equal(unit.image, paper)


def test_cli_named_annotator_and_none(tmp_path):
    paper, path = _sketch(tmp_path)
    assert parse_control(f"model=demo:scribble,image={path},annotator=canny").annotator == "canny"
    assert np.array_equal(parse_control(f"model=demo:scribble,image={path},annotator=none").image, paper)
    with pytest.raises(ValueError, match="one of image=.* or map="):
        parse_control(f"model=demo:scribble,image={path},map={path}")


def test_python_auto_and_none():
    paper = np.full((64, 64, 3), 255, np.uint8)
    paper[10:50, 20:23] = 0
    auto = ControlUnit("demo:scribble", paper, annotator="auto")
    assert auto.annotator == "scribble" and np.array_equal(auto.image, annotators.run("scribble", paper))
    assert np.array_equal(ControlUnit("demo:scribble", paper).image, paper)
    with pytest.raises(ValueError, match="does not say which kind"):
        ControlUnit("my_net", paper, annotator="auto")


def test_an_old_recipe_restores_unchanged():
    the_map = np.zeros((64, 64, 3), np.uint8)
    the_map[30:34] = 255
    request = GenerationRequest(units=(ControlUnit("demo:canny", the_map, annotator="canny"),))
    again = GenerationRequest.from_json(request.to_json())
    assert again == request and np.array_equal(again.units[0].image, the_map)
