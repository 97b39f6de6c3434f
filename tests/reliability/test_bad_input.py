"""Bad input through the Python API and the HTTP API (gradio_client against the studio as
launch.py starts it): each case is refused with a message that says what was wrong and what is
allowed, or corrected sanely; the server keeps serving after every one."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from gradio_client.exceptions import AppError

from engine import ControlUnit, GenerationError, GenerationRequest, generate
from tests.reliability.cases import CASES, Corrected, Refused, check_corrected, recipe_text

GENERIC = "Something went wrong"   # ui.errors' text for an error that was not meant for the user: a crash


@pytest.fixture(scope="module")
def manager(hostile_models):
    import torch

    from engine.manager import ModelManager
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNSTUDIO_MODELS", str(hostile_models))
        yield ModelManager(device="cpu", dtype=torch.float32)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_python_api(case, manager):
    text, expect = recipe_text(case), case[2]
    if isinstance(expect, Refused):
        with pytest.raises((ValueError, GenerationError)) as e:
            generate(GenerationRequest.from_json(text), manager=manager, save=False)
        for words in expect.words:
            assert words in str(e.value)
    else:
        result = generate(GenerationRequest.from_json(text), manager=manager, save=False)
        check_corrected(expect, result.recipe, [im.size for im in result.images])


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_http_api(case, client, studio):
    text, expect = recipe_text(case), case[2]
    if isinstance(expect, Refused):
        with pytest.raises(AppError) as e:
            client.predict(text, api_name="/generate")
        message = str(e.value)
        assert GENERIC not in message and "Traceback" not in message
        for words in expect.words:
            assert words in message
    else:
        gallery, recipe = client.predict(text, api_name="/generate")
        check_corrected(expect, recipe, [Image.open(item["image"]).size for item in gallery])
    assert studio["process"].poll() is None
    assert "demo" in client.predict(api_name="/models")["backbones"]   # still serving


# Objects only Python callers can hand over (the HTTP API takes recipe text).
PY_OBJECTS = [
    ("pil-cmyk", Image.new("CMYK", (9, 9), (0, 255, 255, 0)), (255, 0, 0)),
    ("pil-16bit", Image.fromarray(np.full((9, 9), 65535, np.uint16)), (255, 255, 255)),
    ("pil-palette", Image.new("P", (9, 9), 0), (0, 0, 0)),
    ("numpy-uint16-rgb", np.full((9, 9, 3), 65535, np.uint16), (255, 255, 255)),
    ("numpy-float", np.ones((9, 9, 3), np.float32), (255, 255, 255)),
    ("numpy-bool", np.ones((9, 9), bool), (255, 255, 255)),
    ("numpy-grey-alpha", np.zeros((9, 9, 2), np.uint8), (255, 255, 255)),   # transparent: on white
]


@pytest.mark.parametrize("name, image, colour", PY_OBJECTS, ids=[p[0] for p in PY_OBJECTS])
def test_python_pictures_are_converted(name, image, colour):
    unit = ControlUnit("demo:scribble", image)
    assert unit.image.shape == (9, 9, 3) and tuple(unit.image[4, 4]) == colour


@pytest.mark.parametrize("image, words", [
    (np.full((9, 9, 3), np.nan, np.float32), "NaN or infinite"),
    (np.zeros((2, 9, 9, 3), np.uint8), "HxWx3 or HxWx4"),
    (np.zeros((9, 9, 5), np.uint8), "HxWx3 or HxWx4"),
    ([[0, 1], [1, 0]], "must be a picture"),
    ("map.png", "must be a picture"),
    (np.zeros((9000, 4, 3), np.uint8), "largest side allowed is 8192"),
], ids=["nan", "4d", "5-channel", "list", "path-text", "too-tall"])
def test_python_pictures_refused(image, words):
    with pytest.raises(ValueError, match=None) as e:
        ControlUnit("demo:scribble", image)
    assert words in str(e.value)


ANNOTATE = [
    ("unknown-annotator", "nope", "{}", ("nope",)),
    ("params-not-json", "canny", "{low", ("params_json is not valid JSON",)),
    ("params-a-list", "canny", "[1]", ("params_json must be a JSON object",)),
    ("params-unknown", "canny", '{"sigma": 2}', ("has no parameter 'sigma'",)),
]


@pytest.mark.parametrize("case", ANNOTATE, ids=[a[0] for a in ANNOTATE])
def test_http_annotate_refusals(case, client, tmp_path):
    from gradio_client import handle_file
    _, name, params, words = case
    Image.new("RGB", (1, 1), "white").save(tmp_path / "one.png")
    with pytest.raises(AppError) as e:
        client.predict(name, handle_file(str(tmp_path / "one.png")), params, api_name="/annotate")
    assert GENERIC not in str(e.value)
    for w in words:
        assert w in str(e.value)
    assert client.predict(api_name="/interrupt") == "nothing is running"


def test_http_annotate_of_a_1x1_picture_is_a_map_or_a_clear_refusal(client, tmp_path):
    from gradio_client import handle_file
    Image.new("RGB", (1, 1), "white").save(tmp_path / "one.png")
    try:
        path = client.predict("canny", handle_file(str(tmp_path / "one.png")), "{}", api_name="/annotate")
    except Exception as e:  # noqa: BLE001
        assert GENERIC not in str(e)
    else:
        assert np.asarray(Image.open(path)).ndim in (2, 3)


def test_case_table_is_large_enough():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)
    assert sum(isinstance(c[2], Corrected) for c in CASES) >= 10


def test_server_still_generates_after_every_bad_input(client, studio):
    from pathlib import Path

    from tests.reliability.cases import base_recipe
    gallery, recipe = client.predict(json.dumps(base_recipe()), api_name="/generate")
    assert len(gallery) == 1 and json.loads(recipe)["seed"] == 3
    # No bad input reached a handler as an unexpected error (a crash): the log file keeps a
    # traceback for every message shown (a WARNING), but no ERROR line; the terminal shows none.
    logged = (studio["logs"] / "studio.log").read_text()
    assert "shown to the user (generate)" in logged
    assert not [line for line in logged.splitlines() if " ERROR " in line]
    assert "Traceback" not in Path(studio["log"]).read_text()
