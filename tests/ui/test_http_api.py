"""The named endpoints, called with gradio_client against the studio started as launch.py starts it."""
import json
import time

import numpy as np
import pytest
from PIL import Image
from gradio_client.exceptions import AppError

from engine import ControlUnit, GenerationRequest, read_recipe


@pytest.fixture(scope="module")
def client(studio):
    from gradio_client import Client
    return Client(studio["url"] + "/", verbose=False)


def test_only_the_client_shaped_endpoints_are_published(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert names == {"/generate", "/annotate", "/interrupt", "/models", "/annotators"}


def test_models_and_annotators(client):
    models = client.predict(api_name="/models")
    assert "demo" in models["backbones"]
    assert {"name": "demo:scribble", "kind": "scribble"} in models["controlnets"]
    specs = client.predict(api_name="/annotators")
    scribble = next(s for s in specs if s["name"] == "scribble")
    assert "threshold" in [p["name"] for p in scribble["params"]]


def test_annotate_sends_a_picture_and_gets_the_map(client, tmp_path):
    from gradio_client import handle_file
    photo = np.full((128, 192, 3), 255, np.uint8)
    photo[30:60, 40:90] = 0
    Image.fromarray(photo).save(tmp_path / "photo.png")
    params = {"low_threshold": 50, "detect_resolution": 128}
    path = client.predict("canny", handle_file(str(tmp_path / "photo.png")), json.dumps(params), api_name="/annotate")
    cmap = np.asarray(Image.open(path))
    assert cmap.shape[:2] == (128, 192) and cmap[32:58, 38:42].max() == 255 and cmap[:20].max() == 0


def test_annotate_errors_come_back_as_messages(client, tmp_path):
    from gradio_client import handle_file
    Image.new("RGB", (32, 32), "white").save(tmp_path / "w.png")
    with pytest.raises(AppError, match="has no parameter 'sigma'"):
        client.predict("canny", handle_file(str(tmp_path / "w.png")), '{"sigma": 2}', api_name="/annotate")


def test_generate_returns_pngs_that_carry_their_recipe(client):
    cmap = np.zeros((64, 64, 3), np.uint8)
    cmap[16:48, 30:34] = 255
    request = GenerationRequest(prompt="a red circle", units=(ControlUnit("demo:scribble", cmap),),
                                steps=2, seed=5, width=64, height=64)
    gallery, recipe = client.predict(request.to_json(), api_name="/generate")
    assert len(gallery) == 1
    assert read_recipe(gallery[0]["image"]) == request.replace(cfg_scale=3.0)   # the demo's recommended scale ran
    assert json.loads(recipe)["seed"] == 5


def test_generate_errors_say_what_to_fix(client):
    bad = json.loads(GenerationRequest(steps=2).to_json())
    bad["request"]["width"] = 70
    with pytest.raises(AppError, match="width 70 is not a multiple of 8; try 72"):
        client.predict(json.dumps(bad), api_name="/generate")


def test_interrupt_ends_a_running_generation(client):
    job = client.submit(GenerationRequest(steps=150, seed=1, width=64, height=64).to_json(), api_name="/generate")
    answer, deadline = None, time.monotonic() + 60
    while answer != "interrupting" and time.monotonic() < deadline:
        answer = client.predict(api_name="/interrupt")
        time.sleep(0.2)
    assert answer == "interrupting"
    started = time.monotonic()
    gallery, _ = job.result(timeout=120)
    assert len(gallery) == 1 and time.monotonic() - started < 60
