"""webuiapi (PyPI 0.9.17, a client written for AUTOMATIC1111, unchanged) drives the studio."""
import base64
import threading
import time

import numpy as np
import pytest
from PIL import Image

import annotators
from engine import read_recipe

webuiapi = pytest.importorskip("webuiapi")


@pytest.fixture(scope="module")
def api(a1111):
    host, port = a1111["url"].rsplit("//", 1)[1].split(":")
    return webuiapi.WebUIApi(host=host, port=int(port), username=a1111["auth"][0], password=a1111["auth"][1],
                             sampler="Euler a", steps=4)


def sketch() -> Image.Image:
    m = np.zeros((64, 64, 3), np.uint8)
    m[10:54, 30:35] = 255
    return Image.fromarray(m)


def photo() -> Image.Image:
    p = np.full((64, 64, 3), 230, np.uint8)
    p[16:48, 16:48] = (200, 30, 30)
    return Image.fromarray(p)


def units() -> list:
    return [webuiapi.ControlNetUnit(image=sketch(), module="none", model="demo:scribble", weight=0.9,
                                    guidance_end=0.8, resize_mode="Just Resize"),
            webuiapi.ControlNetUnit(image=photo(), module="canny", model="demo:canny", weight=0.4,
                                    guidance_start=0.1, processor_res=64, control_mode=2)]


def test_lists_models_and_modules(api):
    assert "demo" in [m.split(" [")[0] for m in api.util_get_model_names()]
    assert any(m.startswith("demo:canny [") for m in api.controlnet_model_list())
    assert "canny" in api.controlnet_module_list()
    assert api.controlnet_version() == 2


def test_txt2img_and_img2img_with_two_units(api):
    result = api.txt2img(prompt="a red circle", seed=11, width=64, height=64, cfg_scale=3, controlnet_units=units())
    assert len(result.images) == 3 and result.info["all_seeds"] == [11]
    request = read_recipe(_png(result, 0))
    assert [(u.model, u.weight, u.start, u.end, u.mode) for u in request.units] == [
        ("demo:scribble", 0.9, 0.0, 0.8, "balanced"), ("demo:canny", 0.4, 0.1, 1.0, "control")]
    out = api.img2img(images=[photo()], prompt="a red circle", seed=12, width=64, height=64, cfg_scale=3,
                      denoising_strength=0.6, controlnet_units=units())
    assert len(out.images) == 3 and out.info["all_seeds"] == [12]
    assert read_recipe(_png(out, 0)).strength == 0.6


def test_detect(api):
    answer = api.controlnet_detect([photo()], module="canny", processor_res=64, threshold_a=50, threshold_b=150)
    expected = annotators.run("canny", np.asarray(photo()), low_threshold=50, high_threshold=150, detect_resolution=64)
    assert np.array_equal(np.asarray(answer.images[0].convert("RGB")), expected)


def test_progress_and_interrupt(api):
    box = {}
    # a fresh alwayson_scripts: webuiapi writes the units into its mutable default, so an earlier
    # call's units would ride along
    job = threading.Thread(target=lambda: box.setdefault("r", api.txt2img(
        prompt="a star", steps=150, width=128, height=128, seed=3, alwayson_scripts={})))
    job.start()
    deadline = time.monotonic() + 120
    while api.get_progress()["state"]["sampling_step"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert api.get_progress()["state"]["sampling_steps"] == 150
    api.interrupt()
    job.join(120)
    assert box["r"].info["interrupted"] is True and len(box["r"].images) == 1
    assert api.get_progress()["progress"] == 0


def _png(result, i: int) -> bytes:
    """The PNG file webuiapi decoded picture i from (its answer's JSON)."""
    return base64.b64decode(result.json["images"][i])
