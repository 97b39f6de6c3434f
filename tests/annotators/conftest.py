"""Drawn inputs with known right answers, shared by the annotator tests."""
import cv2
import numpy as np
import pytest


@pytest.fixture
def square() -> np.ndarray:
    """A white 128x128 square at rows/cols 192..319 on a black 512x512 image."""
    img = np.zeros((512, 512, 3), np.uint8)
    img[192:320, 192:320] = 255
    return img


@pytest.fixture
def photo() -> np.ndarray:
    """A 320x480 textured 'photo': smooth colour noise with shapes on it, deterministic."""
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 256, (12, 18, 3), dtype=np.uint8), (480, 320), interpolation=cv2.INTER_CUBIC)
    cv2.circle(img, (150, 160), 70, (250, 30, 40), -1)
    cv2.rectangle(img, (280, 60), (440, 250), (20, 40, 200), -1)
    cv2.line(img, (20, 300), (460, 280), (255, 255, 255), 5)
    return img


@pytest.fixture
def sketch() -> np.ndarray:
    """Dark pencil strokes (3 px) on off-white paper, 256x256: a circle and a line."""
    img = np.full((256, 256, 3), 235, np.uint8)
    cv2.circle(img, (100, 100), 50, (40, 40, 40), 3)
    cv2.line(img, (30, 220), (220, 200), (40, 40, 40), 3)
    return img


@pytest.fixture
def empty_weights(tmp_path, monkeypatch):
    """An empty annotator folder and an empty Hugging Face cache: every learned annotator is missing."""
    import huggingface_hub.constants

    import annotators

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    annotators.set_weights_dir(tmp_path / "annotators")
    yield tmp_path / "annotators"
    annotators.set_weights_dir(None)


@pytest.fixture(autouse=True, scope="session")
def annotators_on_cpu():
    """The reference detectors run on the CPU, so ours must too for bit-exact comparisons."""
    import os

    old = os.environ.get("CNSTUDIO_ANNOTATORS_DEVICE")
    os.environ["CNSTUDIO_ANNOTATORS_DEVICE"] = "cpu"
    yield
    if old is None:
        os.environ.pop("CNSTUDIO_ANNOTATORS_DEVICE")
    else:
        os.environ["CNSTUDIO_ANNOTATORS_DEVICE"] = old
