"""A backbone's recommended.json: the CFG scale a request without one runs at, recorded in its recipe."""
import json

import numpy as np
import pytest
import torch

from engine import GenerationRequest, generate
from engine import loading
from engine.manager import ModelManager
from tests.tiny_models import save_backbone_folder, tiny_backbone_parts


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec") / "backbone"
    save_backbone_folder(tiny_backbone_parts(seed=3), root)
    return root


def _run(manager, source, **kw):
    r = generate(GenerationRequest(backbone=source, prompt="a red star", width=64, height=64, steps=3, seed=5, **kw),
                 manager=manager, save=False)
    return np.asarray(r.images[0]), GenerationRequest.from_json(r.recipe).cfg_scale


def test_a_request_without_a_scale_takes_the_backbones_and_records_it(folder, tmp_path):
    m = ModelManager(device="cpu", dtype=torch.float32)
    plain, plain_cfg = _run(m, str(folder))
    assert plain_cfg == 7.5 and np.array_equal(plain, _run(m, str(folder), cfg_scale=7.5)[0])

    advised = tmp_path / "advised"
    save_backbone_folder(tiny_backbone_parts(seed=3), advised)
    (advised / "recommended.json").write_text(json.dumps({"cfg_scale": 2.0, "_why": "a note, ignored"}))
    image, cfg = _run(m, str(advised))
    assert cfg == 2.0 and m.backbone(str(advised)).recommended == {"cfg_scale": 2.0}
    assert np.array_equal(image, _run(m, str(advised), cfg_scale=2.0)[0])
    assert not np.array_equal(image, plain)                  # same weights, another scale
    assert _run(m, str(advised), cfg_scale=6.0)[1] == 6.0    # the user's own scale wins


@pytest.mark.parametrize("text, words", [
    ("{not json", "not JSON"),
    ('[3.0]', "does not hold a JSON object"),
    ('{"cfg_scale": 3, "steps": 50}', "cannot recommend: steps"),
    ('{"cfg_scale": 99}', "cfg_scale must be between 0.0 and 30.0"),
    ('{"cfg_scale": "high"}', "cfg_scale must be a number"),
])
def test_a_bad_file_is_named_with_what_is_wrong(folder, tmp_path, text, words):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "recommended.json").write_text(text)
    with pytest.raises(ValueError, match=words) as err:
        loading.read_recommended(bad)
    assert str(bad / "recommended.json") in str(err.value)


def test_a_single_file_reads_the_json_beside_it(tmp_path):
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"")
    assert loading.read_recommended(model) == {}
    (tmp_path / "model.recommended.json").write_text('{"cfg_scale": 4.5}')
    assert loading.read_recommended(model) == {"cfg_scale": 4.5}


def test_the_shipped_demo_recommends_what_its_training_writes():
    from demo import architecture
    demo = loading.REPO_ROOT / "models" / "demo" / "backbone"
    if not demo.is_dir():
        pytest.skip("the demo model is not built")
    want = {k: v for k, v in architecture.RECOMMENDED_SETTINGS.items() if not k.startswith("_")}
    assert loading.read_recommended(demo) == want == {"cfg_scale": 3.0}
