"""The model manager keeps models resident: a second request that changes only the ControlNet
loads only that ControlNet; concurrent callers share one load; misfits are refused by name."""
import threading

import numpy as np
import pytest
import torch

from engine import ControlUnit, GenerationRequest, generate
from engine.manager import ModelManager
from tests.tiny_models import save_backbone_folder, tiny_controlnet, tiny_unet


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tiny_parts, tiny_nets):
    root = tmp_path_factory.mktemp("models")
    save_backbone_folder(tiny_parts, root / "backbone")
    for i, net in enumerate(tiny_nets[:2]):
        net.save_pretrained(root / f"control_tiny_scribble_{i}")
    tiny_controlnet(tiny_unet(cross_attention_dim=48), seed=4).save_pretrained(root / "control_other_canny")
    return root


def test_switching_controlnet_loads_only_that_controlnet(folders, control_maps):
    m = ModelManager(device="cpu", dtype=torch.float32)
    backbone = str(folders / "backbone")
    cn = [str(folders / f"control_tiny_scribble_{i}") for i in range(2)]
    for source in (cn[0], cn[1], cn[0]):
        generate(GenerationRequest(backbone=backbone, units=[ControlUnit(source, control_maps[0])], width=64, height=64,
                                   steps=1, seed=1), manager=m, save=False)
    assert m.loads == {("backbone", backbone): 1, ("controlnet", cn[0]): 1, ("controlnet", cn[1]): 1}
    assert m.controlnet(cn[0]).kind == "scribble"


def test_two_threads_asking_at_once_share_one_load(folders):
    m = ModelManager(device="cpu", dtype=torch.float32)
    backbone = str(folders / "backbone")
    got, barrier = [], threading.Barrier(2)

    def ask():
        barrier.wait()
        got.append(m.backbone(backbone))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got[0] is got[1] and m.loads[("backbone", backbone)] == 1


def test_generations_from_two_threads_equal_serial_ones(folders, control_maps):
    m = ModelManager(device="cpu", dtype=torch.float32)
    reqs = [GenerationRequest(backbone=str(folders / "backbone"), width=64, height=64, steps=2, seed=s,
                              units=[ControlUnit(str(folders / f"control_tiny_scribble_{s % 2}"), control_maps[s])])
            for s in (0, 1)]
    serial = [np.asarray(generate(r, manager=m, save=False).images[0]) for r in reqs]
    results = [None, None]
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, generate(reqs[i], manager=m, save=False)))
               for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(np.asarray(r.images[0]), s) for r, s in zip(results, serial))


def test_controlnet_of_another_architecture_is_refused_naming_both(folders, control_maps):
    m = ModelManager(device="cpu", dtype=torch.float32)
    other = str(folders / "control_other_canny")
    req = GenerationRequest(backbone=str(folders / "backbone"), units=[ControlUnit(other, control_maps[0])],
                            width=64, height=64, steps=1)
    with pytest.raises(ValueError) as e:
        generate(req, manager=m, save=False)
    msg = str(e.value)
    assert "control_other_canny" in msg and "backbone" in msg and "cross-attention width: ControlNet 48 vs backbone 32" in msg


def test_native_size_is_the_default(folders):
    m = ModelManager(device="cpu", dtype=torch.float32)
    r = generate(GenerationRequest(backbone=str(folders / "backbone"), steps=1, seed=0), manager=m, save=False)
    assert r.images[0].size == (64, 64)          # UNet sample 32 x VAE scale 2
