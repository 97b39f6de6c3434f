"""Which annotators run on this machine, known before one is picked (issue 20): one function,
`annotators.availability()`, that learned annotators and bundled models answer."""
from pathlib import Path

import annotators
from annotators import bundled


def test_each_annotator_is_ready_or_names_the_weights_it_needs(tmp_path):
    annotators.set_weights_dir(tmp_path)         # an empty folder
    try:
        found = annotators.availability()
        assert set(found) == set(annotators.names())
        assert found["canny"]["ready"] and found["canny"]["label"] == "canny — ready"
        hed = found["hed"]
        if not Path(str(annotators.spec("hed")["weights"][0]["found_at"])).is_file():   # none in the HF cache
            assert not hed["ready"] and hed["missing"] == ["ControlNetHED.pth"]
            assert hed["label"] == "hed — needs weights: ControlNetHED.pth"
        # mlsd's own weights are absent, OpenCV's bundled LSD stands in: ready
        assert found["mlsd"]["uses"] == "bundled" and found["mlsd"]["ready"]
        assert found["mlsd"]["missing"] == ["mlsd_large_512_fp32.pth"]
        for name, state in found.items():    # the same answer as spec's "uses"
            assert annotators.spec(name)["uses"] == state["uses"], name
        # a weight file put in the folder makes it ready at once
        (tmp_path / "ControlNetHED.pth").write_bytes(b"x")
        assert annotators.availability()["hed"]["ready"]
        assert annotators.availability()["hed"]["label"] == "hed — ready"
    finally:
        annotators.set_weights_dir(None)


def test_a_bundled_model_that_cannot_run_says_why(monkeypatch, tmp_path):
    annotators.set_weights_dir(tmp_path)
    monkeypatch.setattr(bundled, "_mediapipe_problem", lambda: "mediapipe is not installed")
    try:
        mask = annotators.availability()["person_mask"]
        assert not mask["ready"] and mask["label"] == "person_mask — cannot run here: mediapipe is not installed"
        pose = annotators.availability()["openpose"]
        assert not pose["ready"] and pose["label"].startswith("openpose — needs weights: ")
    finally:
        annotators.set_weights_dir(None)
