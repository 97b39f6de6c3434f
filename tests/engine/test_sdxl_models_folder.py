"""SDXL dropped into a models folder: the pickers tell each model's family without loading it,
offer only the control models of the chosen backbone's family, and a generation with two SDXL
units runs from disk at the backbone's own size."""
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import engine
from engine.manager import ModelManager
from tests.tiny_models import (save_backbone_folder, save_sdxl_folder, tiny_backbone_parts, tiny_controlnet,
                               tiny_sdxl_parts)
from ui import catalog


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    xl, sd = tiny_sdxl_parts(seed=5), tiny_backbone_parts(seed=5)
    save_sdxl_folder(xl, root / "backbones" / "tiny-xl")
    save_backbone_folder(sd, root / "backbones" / "tiny-sd15")
    tiny_controlnet(xl["unet"], seed=1).save_pretrained(root / "controlnets" / "xl-canny")
    net = tiny_controlnet(xl["unet"], seed=2)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()},
              str(root / "controlnets" / "xl-depth.safetensors"))
    net.save_config(root / "controlnets" / "xl-depth.config")
    tiny_controlnet(sd["unet"], seed=3).save_pretrained(root / "controlnets" / "sd15-canny")
    return root


@pytest.fixture()
def models_env(models, monkeypatch):
    monkeypatch.setenv("CNSTUDIO_MODELS", str(models))
    return models


def test_families_are_told_without_loading(models_env):
    assert engine.model_family("tiny-xl", "backbone") == "sdxl"
    assert engine.model_family("tiny-sd15", "backbone") == "sd1"
    assert engine.model_family("xl-depth.safetensors", "controlnet") == "sdxl"
    assert engine.model_family("xl-canny", "controlnet") == "sdxl"
    labels = dict((v, k) for k, v in catalog.backbone_choices(["tiny-xl", "tiny-sd15"]))
    assert labels == {"tiny-xl": "tiny-xl (SDXL)", "tiny-sd15": "tiny-sd15 (SD 1.x)"}


def test_control_list_offers_only_the_backbones_family(models_env):
    nets = engine.installed_models()["controlnets"]
    assert catalog.controlnets_for("tiny-xl", nets) == ["xl-canny", "xl-depth.safetensors"]
    assert catalog.controlnets_for("tiny-sd15", nets) == ["sd15-canny"]


def test_two_sdxl_units_generate_from_disk_at_native_size(models_env, control_maps):
    manager = ModelManager(device="cpu", dtype=torch.float32)
    units = [engine.ControlUnit("xl-canny", control_maps[0], weight=0.7),
             engine.ControlUnit("xl-depth.safetensors", control_maps[1], end=0.5)]
    req = engine.GenerationRequest(backbone="tiny-xl", prompt="a red star", units=units, steps=2, seed=1)
    result = engine.generate(req, save=False, manager=manager)
    assert result.images[0].size == (64, 64)       # the tiny UNet's sample size x the VAE's scale
    plain = engine.generate(req.replace(units=()), save=False, manager=manager)
    assert np.abs(np.asarray(result.images[0], float) - np.asarray(plain.images[0], float)).max() > 2


def test_an_sd15_net_on_the_sdxl_backbone_is_refused_naming_both(models_env, control_maps):
    manager = ModelManager(device="cpu", dtype=torch.float32)
    req = engine.GenerationRequest(backbone="tiny-xl", prompt="x", steps=1,
                                   units=[engine.ControlUnit("sd15-canny", control_maps[0])])
    with pytest.raises(ValueError, match="'sd15-canny' is an SD 1.x ControlNet and backbone 'tiny-xl' is SDXL"):
        engine.generate(req, save=False, manager=manager)
    assert engine.generate(req.replace(units=()), save=False, manager=manager).images   # still serving


def test_cli_generates_with_sdxl_and_refuses_a_truncated_file(models_env, control_maps, tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    from PIL import Image
    root = Path(__file__).resolve().parents[2]
    Image.fromarray(control_maps[0]).save(tmp_path / "map.png")
    env = {"CNSTUDIO_OUTPUTS": str(tmp_path / "out"), "CNSTUDIO_MODELS": str(models_env), "HF_HUB_OFFLINE": "1",
           "PATH": "/usr/bin:/bin"}

    def run(*args):
        return subprocess.run([sys.executable, str(root / "launch.py"), "--no-install", "generate", *args],
                              capture_output=True, text=True, env=env, timeout=300)
    ok = run("--backbone", "tiny-xl", "--prompt", "a red star", "--steps", "2",
             "--control", f"model=xl-canny,map={tmp_path / 'map.png'},weight=0.7")
    assert ok.returncode == 0, ok.stderr
    assert Image.open(ok.stdout.strip().splitlines()[-1]).size == (64, 64)
    whole = (models_env / "controlnets" / "xl-depth.safetensors").read_bytes()
    cut = models_env / "backbones" / "cut-xl.safetensors"
    cut.write_bytes(whole[: len(whole) // 2])
    try:
        bad = run("--backbone", "cut-xl", "--prompt", "x", "--steps", "1")
    finally:
        cut.unlink()
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "cut-xl.safetensors is not a readable .safetensors file (corrupt or truncated" in bad.stderr
