import json

import numpy as np
import pytest

import annotators


def test_every_spec_is_plain_json_with_its_declared_params():
    listed = annotators.list()
    assert [s["name"] for s in listed] == annotators.names()
    for entry in listed:
        again = json.loads(json.dumps(entry))
        assert again == entry == annotators.spec(entry["name"])
        assert entry["kind"] and entry["description"]
        for p in entry["params"]:
            assert set(p) >= {"name", "type", "default", "min", "max", "step", "choices"}
            if p["type"] in ("int", "float"):
                assert p["min"] <= p["default"] <= p["max"], p
            if p["type"] == "choice":
                assert p["default"] in p["choices"]


def test_canny_spec_declares_thresholds():
    params = {p["name"]: p for p in annotators.spec("canny")["params"]}
    assert params["low_threshold"]["default"] == 100 and params["high_threshold"]["default"] == 200
    assert params["detect_resolution"] == {**params["detect_resolution"], "default": 512, "min": 64, "step": 64}
    assert annotators.spec("canny")["weights_present"] is True


def test_unknown_annotator_names_the_known_ones(square):
    with pytest.raises(ValueError, match="unknown annotator 'cany'.*canny"):
        annotators.run("cany", square)
    with pytest.raises(ValueError, match="known annotators"):
        annotators.spec("nope")


def test_out_of_range_and_unknown_params_say_what_is_allowed(square):
    with pytest.raises(ValueError, match=r"low_threshold.*300.*from 1 to 255"):
        annotators.run("canny", square, low_threshold=300)
    with pytest.raises(ValueError, match=r"detect_resolution.*an integer"):
        annotators.run("canny", square, detect_resolution=100.5)
    with pytest.raises(ValueError, match=r"no parameter 'sigma'.*low_threshold"):
        annotators.run("canny", square, sigma=2)
    with pytest.raises(ValueError, match=r"polarity.*'auto'"):
        annotators.run("scribble", square, polarity="sideways")
    with pytest.raises(ValueError, match="allowed"):
        annotators.run("canny", square, low_threshold="100")


def test_empty_image_is_refused():
    with pytest.raises(ValueError, match="empty"):
        annotators.run("canny", np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="must be HxW"):
        annotators.run("canny", np.zeros((4, 4, 5), np.uint8))


def test_map_comes_back_at_the_asked_size(square):
    assert annotators.run("canny", square).shape == (512, 512, 3)
    out = annotators.run("canny", square, size=(300, 200))
    assert out.shape == (200, 300, 3) and out.dtype == np.uint8
    with pytest.raises(ValueError, match="width and height"):
        annotators.run("canny", square, size=(0, 10))


def test_importing_annotators_loads_no_gradio_engine_or_torch():
    import subprocess
    import sys

    code = ("import sys, annotators; bad = [m for m in ('gradio', 'engine', 'torch', 'transformers') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_learned_annotators_declare_their_weights():
    for name in ("hed", "pidinet", "mlsd", "lineart", "lineart_coarse", "lineart_anime", "depth", "normal",
                 "openpose", "segmentation"):
        entry = annotators.spec(name)
        assert entry["learned"] is True and entry["weights"], name
    assert annotators.spec("canny")["learned"] is False and annotators.spec("canny")["weights"] == []
