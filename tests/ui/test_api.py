import json

import numpy as np
import pytest

import annotators
from engine import ControlUnit, GenerationRequest, read_recipe
from ui import api


@pytest.fixture()
def picture():
    img = np.full((64, 64, 3), 255, np.uint8)
    img[20:44, 20:44] = 0
    return img


def test_annotate_takes_the_declared_parameters_as_json(picture):
    got = api.annotate("canny", picture, '{"low_threshold": 10, "high_threshold": 30}')
    assert np.array_equal(got, annotators.run("canny", picture, low_threshold=10, high_threshold=30))
    assert got.max() > 0 and got[:10].max() == 0


@pytest.mark.parametrize("params, words", [
    ("{nope", "not valid JSON"), ("[1, 2]", "JSON object"), ('{"bogus": 1}', "has no parameter"),
])
def test_annotate_says_what_is_wrong_with_the_parameters(picture, params, words):
    with pytest.raises(ValueError, match=words):
        api.annotate("canny", picture, params)


def test_annotate_without_a_picture_says_so():
    with pytest.raises(ValueError, match="needs a picture"):
        api.annotate("scribble", None, "{}")


def test_models_and_annotators_are_plain_json(tmp_path, monkeypatch):
    from tests.engine.lora_files import make_lora, save_kohya
    from tests.tiny_models import tiny_backbone_parts
    monkeypatch.setenv("CNSTUDIO_MODELS", str(tmp_path))
    (tmp_path / "loras").mkdir()
    save_kohya(make_lora(tiny_backbone_parts(), seed=1), tmp_path / "loras" / "ink.safetensors")
    from tests.engine.ip_adapter_files import VIT_H, make_ip_adapter, save_safetensors
    (tmp_path / "ipadapters" / "image_encoder").mkdir(parents=True)
    save_safetensors(make_ip_adapter(tiny_backbone_parts()["unet"], VIT_H), tmp_path / "ipadapters" / "look.safetensors")
    models = json.loads(json.dumps(api.models()))
    assert set(models) == {"backbones", "controlnets", "loras", "ipadapters"}
    assert models["loras"] == [{"name": "ink", "family": None}]   # the tiny model's width is no family
    assert models["ipadapters"] == [{"name": "look", "family": None}]   # nor is the encoder folder an adapter
    specs = json.loads(json.dumps(api.annotators()))
    assert {"scribble", "canny"} <= {s["name"] for s in specs}
    assert all("params" in s for s in specs)


def test_generate_returns_saved_pngs_that_carry_the_recipe(tiny_default, control_maps):
    request = GenerationRequest(backbone="tiny", prompt="a star", units=(ControlUnit("cn0", control_maps[0]),),
                                steps=2, seed=11, batch_size=2)
    images, recipe = api.generate(request.to_json())
    assert len(images) == 2 and all(str(p).endswith(".png") for p in images)
    assert GenerationRequest.from_json(recipe) == request.replace(cfg_scale=7.5)   # the scale that ran
    assert read_recipe(images[1], this_image=True).seed == 12


def test_generate_refuses_what_is_not_a_recipe():
    with pytest.raises(ValueError, match="not a ControlNet Studio recipe"):
        api.generate('{"prompt": "a cat"}')


def test_interrupt_ends_the_running_generation_after_its_step(tiny_default):
    steps_seen = []

    def on_step(step, total, preview):
        steps_seen.append(step)
        if step == 2:
            assert api.interrupt() == "interrupting"

    result = api.run(GenerationRequest(backbone="tiny", steps=30, seed=1), on_step)
    assert result.interrupted and steps_seen == [1, 2]
    assert len(result.paths) == 1
    assert api.interrupt() == "nothing is running"
