"""The meter is fair to real models: a non-demo model is judged by annotators only (the picture
annotated again and compared with its map), never by the demo world's judges."""
import cv2
import numpy as np
import pytest

from engine import fidelity
from ui import catalog   # imports demo, so the world's judges are registered as in the studio


def _strokes(shape: str, size: int = 128) -> np.ndarray:
    m = np.zeros((size, size, 3), np.uint8)
    if shape == "circle":
        cv2.circle(m, (64, 64), 36, (255, 255, 255), 3)
    else:
        cv2.rectangle(m, (20, 90), (110, 110), (255, 255, 255), 3)
        cv2.line(m, (20, 20), (110, 60), (255, 255, 255), 3)
    return m


def _drawn(shape: str) -> np.ndarray:
    """A picture that follows a scribble: dark strokes on light paper, a little noise."""
    rng = np.random.default_rng(0)
    picture = 230 - _strokes(shape).astype(np.int32) * 200 // 255
    return np.clip(picture + rng.integers(-6, 7, picture.shape), 0, 255).astype(np.uint8)


@pytest.fixture()
def no_world_judge(monkeypatch):
    import demo.depth_judge

    def world_judge(*_):
        raise AssertionError("a judge of the demo's world scored a real model")
    for kind in list(fidelity._JUDGES):
        monkeypatch.setitem(fidelity._JUDGES, kind, world_judge)
    monkeypatch.setattr(demo.depth_judge, "default", world_judge)


def test_the_meter_on_a_non_demo_scribble_model_never_loads_a_world_judge(no_world_judge):
    model = "control_tiny_scribble"
    assert catalog.condition_kind(model) == "scribble"
    wanted = _strokes("circle")
    follows = catalog.fidelity(model, _drawn("circle"), wanted, "scribble")
    ignores = catalog.fidelity(model, _drawn("other"), wanted, "scribble")
    print(f"follows {follows:.3f}, ignores {ignores:.3f}")
    assert follows > 0.8 and ignores < 0.4
    # the unit's annotator when it makes maps of the kind; a weight-free one of the kind otherwise
    assert fidelity.judge_annotator("scribble", "scribble_xdog") == "scribble_xdog"
    assert fidelity.judge_annotator("scribble", "canny") == "scribble"
    assert fidelity.judge_annotator("softedge", "hed") is None or annotator_has_weights("hed")


def annotator_has_weights(name: str) -> bool:
    import annotators
    return annotators.spec(name)["weights_present"]


def test_where_no_judge_applies_the_meter_says_so(no_world_judge):
    depth = np.tile(np.linspace(0, 255, 128, dtype=np.uint8)[:, None, None], (1, 128, 3))
    if not annotator_has_weights("depth"):   # no weight-free depth annotator exists
        assert catalog.fidelity("control_v11f1p_sd15_depth", _drawn("circle"), depth) is None
    assert catalog.fidelity("control_v11e_sd15_shuffle", _drawn("circle"), depth) is None


def test_demo_models_keep_the_worlds_judges(monkeypatch):
    monkeypatch.setitem(fidelity._JUDGES, "scribble", lambda image, cmap: 0.5)
    assert catalog.fidelity("demo:scribble", _drawn("circle"), _strokes("circle")) == 0.5
    assert catalog.fidelity("control_tiny_scribble", _drawn("circle"), _strokes("circle"), "scribble") != 0.5
