"""A generation encodes each picture of its recipe once, however many images it saves."""
import json

import numpy as np

from engine import ControlUnit, GenerationRequest, generate, images, read_recipe
from engine.outputs import read_recipe_text


def test_a_batch_of_8_with_three_large_maps_encodes_each_map_once(tiny_manager, monkeypatch):
    rng = np.random.default_rng(0)
    maps = [rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8) for _ in range(3)]
    units = [ControlUnit(f"cn{i}", m, end=0.5) for i, m in enumerate(maps)]
    encoded = []
    real = images.png_bytes
    monkeypatch.setattr(images, "png_bytes", lambda a: encoded.append(a) or real(a))
    request = GenerationRequest(backbone="tiny", units=units, width=64, height=64, steps=1, seed=40, batch_size=8)
    result = generate(request, manager=tiny_manager, save=True)
    assert len(encoded) == 3 and {id(a) for a in encoded} == {id(u.image) for u in units}
    assert len(result.paths) == 8 and result.save_seconds > 0
    for path, seed in zip(result.paths, result.seeds):
        assert json.loads(read_recipe_text(path))["seed"] == seed
        again = read_recipe(path, this_image=True)
        assert again.seed == seed and all((a.image == u.image).all() for a, u in zip(again.units, units))
    assert json.loads(result.recipe)["request"] == json.loads(request.replace(seed=40, cfg_scale=result_cfg(result))
                                                              .to_json())["request"]


def result_cfg(result):
    return json.loads(result.recipe)["request"]["cfg_scale"]


def test_the_recipe_text_is_the_plain_json_of_the_request():
    unit = ControlUnit("cn0", np.zeros((8, 8, 3), np.uint8), mask=np.full((8, 8), 255, np.uint8))
    r = GenerationRequest(backbone="tiny", units=[unit], seed=5, init_image=np.ones((8, 8, 3), np.uint8))
    plain = json.dumps({"format": "controlnet-studio", "version": 1, "request": r.to_dict(), "seed": 9}, sort_keys=True)
    assert r.to_json(seed=9) == plain
    assert GenerationRequest.from_json(r.to_json()) == r
