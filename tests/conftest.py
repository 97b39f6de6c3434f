import os

import numpy as np
import pytest
import torch

from tests.tiny_models import save_world_backbone, tiny_backbone_parts, tiny_controlnet


REQUIRE_GPU = "CNSTUDIO_REQUIRE_GPU"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    # On the GPU machine (CNSTUDIO_REQUIRE_GPU=1) a GPU test that cannot run is a failure:
    # a broken CUDA set-up must not pass as "skipped".
    required = os.environ.get(REQUIRE_GPU) == "1"
    for item in items:
        if "gpu" not in item.keywords:
            continue
        if required:
            item.add_marker(pytest.mark.usefixtures("_no_gpu_is_a_failure"))
        else:
            item.add_marker(pytest.mark.skip(reason=f"needs a CUDA GPU ({REQUIRE_GPU}=1 makes this a failure)"))


@pytest.fixture()
def _no_gpu_is_a_failure():
    pytest.fail(f"{REQUIRE_GPU}=1 but torch sees no CUDA GPU (torch {torch.__version__}, "
                f"CUDA build {torch.version.cuda}); fix the CUDA set-up or unset {REQUIRE_GPU}")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No test writes outside its tmp folder or reaches a hub."""
    monkeypatch.setenv("CNSTUDIO_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_parts():
    return tiny_backbone_parts(seed=0)


@pytest.fixture(scope="session")
def tiny_nets(tiny_parts):
    return [tiny_controlnet(tiny_parts["unet"], seed=s) for s in (1, 2, 3)]


@pytest.fixture()
def tiny_manager(tiny_parts, tiny_nets):
    """A model manager holding the tiny backbone as "tiny" and its ControlNets as "cn0".."cn2"."""
    from engine.manager import ModelManager
    from engine.models import Backbone, ControlModel
    m = ModelManager(device="cpu", dtype=torch.float32)
    p = tiny_parts
    m.add(Backbone("tiny", p["unet"], p["vae"], p["text_encoder"], p["tokenizer"], p["scheduler_config"]))
    for i, net in enumerate(tiny_nets):
        m.add(ControlModel(f"cn{i}", net))
    return m


@pytest.fixture(scope="session")
def control_maps():
    """Three 64x64 maps with distinct structure: a square, a circle outline, stripes."""
    import cv2
    a = np.zeros((64, 64, 3), np.uint8); a[16:48, 16:48] = 255
    b = np.zeros((64, 64, 3), np.uint8); cv2.circle(b, (32, 32), 20, (255, 255, 255), 3)
    c = np.zeros((64, 64, 3), np.uint8); c[:, ::8] = 255
    return [a, b, c]


@pytest.fixture(scope="session")
def tiny_world_backbone(tmp_path_factory):
    """The demo's architecture at test size, random weights, as a diffusers pipeline folder."""
    folder = tmp_path_factory.mktemp("tiny-backbone")
    save_world_backbone(folder)
    return folder
