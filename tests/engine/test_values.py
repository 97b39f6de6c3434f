import dataclasses
import json

import numpy as np
import pytest

from engine import ControlUnit, GenerationRequest

MAP = np.zeros((16, 16, 3), np.uint8)


@pytest.mark.parametrize("kwargs, words", [
    (dict(weight=float("nan")), "weight"),
    (dict(weight=5.0), "between 0.0 and 2.0"),
    (dict(start=0.7, end=0.3), "start (0.7) must be before end"),
    (dict(mode="strong"), "balanced, prompt, control"),
    (dict(resize_mode="zoom"), "just_resize, crop, fill"),
    (dict(model=""), "control model"),
    (dict(image=None), "no control map"),
    (dict(image=np.zeros((0, 5, 3), np.uint8)), "empty"),
    (dict(annotator_params={"x": object()}), "JSON"),
])
def test_bad_unit_says_what_is_wrong(kwargs, words):
    args = dict(model="demo:scribble", image=MAP) | kwargs
    with pytest.raises(ValueError, match=None) as e:
        ControlUnit(**args)
    assert words in str(e.value)


@pytest.mark.parametrize("kwargs, words", [
    (dict(width=100), "try 96"),
    (dict(height=32), "between 64 and 2048"),
    (dict(steps=0), "steps"),
    (dict(steps=10000), "between 1 and 150"),
    (dict(sampler="plms2"), "unipc"),
    (dict(seed=-5), "seed"),
    (dict(batch_size=0), "batch_size"),
    (dict(cfg_scale=float("inf")), "finite"),
    (dict(inpaint_mask=np.ones((8, 8), np.uint8)), "needs an init_image"),
    (dict(prompt="x" * 20001), "characters"),
    (dict(units=["not a unit"]), "ControlUnit"),
])
def test_bad_request_says_what_is_wrong(kwargs, words):
    with pytest.raises(ValueError) as e:
        GenerationRequest(**kwargs)
    assert words in str(e.value)


def test_inputs_are_normalised_not_refused():
    gray = np.full((10, 12), 200, np.uint8)
    rgba = np.zeros((10, 12, 4), np.uint8)          # fully transparent: composited on white
    wide = (np.full((10, 12, 3), 65535, np.uint16))
    for image in (gray, rgba, wide):
        u = ControlUnit("m", image)
        assert u.image.shape == (10, 12, 3) and u.image.dtype == np.uint8
    assert ControlUnit("m", rgba).image.min() == 255
    assert ControlUnit("m", gray).image[0, 0].tolist() == [200, 200, 200]


def test_values_are_frozen_and_independent_of_caller_arrays():
    image = np.zeros((8, 8, 3), np.uint8)
    u = ControlUnit("m", image)
    image[:] = 255                    # the caller's later edits must not change the unit
    assert u.image.max() == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        u.weight = 2.0
    with pytest.raises(ValueError):
        u.image[0, 0, 0] = 1


def test_recipe_json_round_trip_keeps_every_field():
    rng = np.random.default_rng(0)
    units = (ControlUnit("demo:scribble", (rng.random((20, 30, 3)) * 255).astype(np.uint8), weight=0.7, start=0.1,
                         end=0.9, mode="prompt", mask=(rng.random((20, 30)) > 0.5), resize_mode="fill",
                         annotator="scribble", annotator_params={"threshold": 0.4}),
             ControlUnit("demo:canny", MAP, enabled=False))
    req = GenerationRequest(prompt="a red star", negative_prompt="blur", units=units, width=128, height=64, steps=7,
                            cfg_scale=4.0, seed=42, sampler="euler_a", batch_size=2,
                            init_image=(rng.random((16, 16, 3)) * 255).astype(np.uint8), strength=0.5,
                            inpaint_mask=np.eye(16, dtype=np.uint8) * 255)
    text = req.to_json()
    recipe = json.loads(text)
    assert recipe["format"] == "controlnet-studio" and recipe["version"] == 1 and recipe["seed"] == 42
    back = GenerationRequest.from_json(text)
    assert back == req and back.to_json() == text
    assert np.array_equal(back.units[0].image, units[0].image)
    assert np.array_equal(back.units[0].mask, units[0].mask)
    assert back.units[1].enabled is False and back.active_units == (back.units[0],)
    assert back != req.replace(seed=43)


@pytest.mark.parametrize("text, words", [
    ("{", "not valid JSON"),
    ('{"format": "other"}', "not a ControlNet Studio recipe"),
    ('{"format": "controlnet-studio", "version": 9, "request": {}}', "version 9"),
    ('{"format": "controlnet-studio", "version": 1, "request": {"stepz": 3}}', "unknown request field"),
    ('{"format": "controlnet-studio", "version": 1, "request": {"units": [{"model": "m", "image": "!!"}]}}',
     "not a readable base64 PNG"),
    ('{"format": "controlnet-studio", "version": 1, "request": {"steps": "20"}}', "steps must be a number"),
])
def test_bad_recipes_are_refused_clearly(text, words):
    with pytest.raises(ValueError) as e:
        GenerationRequest.from_json(text)
    assert words in str(e.value)
