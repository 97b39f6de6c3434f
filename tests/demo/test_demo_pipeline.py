"""`train-demo --tiny`: every stage of the demo's recipe, end to end, at test size."""
import hashlib
import json

import numpy as np
import pytest
from diffusers import ControlNetModel

from demo import build as demo
from demo import cli


@pytest.mark.slow
def test_tiny_train_demo_builds_loadable_folders_and_resumes_by_stage(tmp_path):
    out, work = tmp_path / "demo", tmp_path / "work"
    args = ["train-demo", "--tiny", "--out", str(out), "--work", str(work)]
    assert cli.main([*args, "--stage", "vae"]) == 0
    assert (work / "vae" / "DONE.json").is_file() and not (out / "backbone").exists()
    assert cli.main(args) == 0
    stages = json.loads((work / "stages.json").read_text())
    assert stages["vae"]["calls"] and len(stages["vae"]["calls"]) == 2   # the second call found it done
    from engine.loading import load_backbone_components
    parts = load_backbone_components(str(out / "backbone"))
    assert parts["recommended"] == {"cfg_scale": 3.0}       # the demo's own scale ships with it
    net = ControlNetModel.from_pretrained(str(out / "controlnet-scribble"))
    from safetensors import safe_open
    with safe_open(str(out / "controlnet-scribble" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert {str(f.get_slice(k).get_dtype()) for k in f.keys()} == {"F16"}   # shipped in fp16
    assert net.config.block_out_channels == parts["unet"].config.block_out_channels
    manifest = json.loads((out / "manifest.json").read_text())
    for rel, entry in manifest["files"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == entry["sha256"]
    assert set(manifest["stages"]) == {"vae", "backbone", "decoder", "judges",
                                       *(f"controlnet-{k}" for k in demo.KINDS)}
    for kind in demo.KINDS:
        assert (out / f"controlnet-{kind}" / "config.json").is_file()
    from demo import depth_judge
    judge = depth_judge.load(out / "judges" / depth_judge.FILE_NAME)     # the shipped judge loads and judges
    assert judge.predict(np.zeros((128, 128, 3), np.uint8)).shape == (depth_judge.JUDGE_SIZE,) * 2
    assert cli.main([*args, "--stage", "nonsense"]) == 2


@pytest.mark.slow
def test_extend_goes_on_from_an_earlier_build(tmp_path, monkeypatch):
    import dataclasses

    import torch
    from diffusers import UNet2DConditionModel

    first, work = tmp_path / "first", tmp_path / "work1"
    assert demo.train_demo(first, work, stages=["vae", "backbone"], tiny=True)
    before = UNet2DConditionModel.from_pretrained(str(first / "backbone" / "unet"))

    plan = demo.plan
    longer = lambda work_dir, **kw: dataclasses.replace(   # noqa: E731  (the same plan, 3 more UNet steps)
        plan(work_dir, **kw), backbone=dataclasses.replace(plan(work_dir, **kw).backbone, unet_steps=9))
    monkeypatch.setattr(demo, "plan", longer)
    second, work2 = tmp_path / "second", tmp_path / "work2"
    assert demo.train_demo(second, work2, stages=["vae", "backbone"], tiny=True, extend=first)
    seeded = work2 / "unet" / "start"
    start = UNet2DConditionModel.from_pretrained(str(seeded / "unet"))
    for a, b in zip(before.parameters(), start.parameters()):   # it began where the first build ended
        assert torch.equal(a.float(), b)
    stages = json.loads((work2 / "stages.json").read_text())
    assert stages["backbone"]["result"]["steps"] == 9           # 6 from the first build, 3 more here
    assert stages["vae"]["result"]["from"].endswith("backbone")
    after = UNet2DConditionModel.from_pretrained(str(second / "backbone" / "unet"))
    assert any(not torch.equal(a, b) for a, b in zip(before.parameters(), after.parameters()))

    monkeypatch.setattr(demo, "plan", plan)                    # a plan no longer than the build: refused
    with pytest.raises(ValueError, match="nothing to extend"):
        demo.train_demo(tmp_path / "third", tmp_path / "work3", stages=["backbone"], tiny=True, extend=first)
    with pytest.raises(ValueError, match="no manifest.json"):
        demo.train_demo(tmp_path / "third", tmp_path / "work3", tiny=True, extend=tmp_path)


@pytest.mark.slow
def test_decoder_stage_trains_the_decoder_and_leaves_the_latent_space_alone(tmp_path):
    """An earlier build extended by the decoder stage alone: the shipped VAE's encoder is the
    same tensor for tensor (so the UNet and ControlNets stay valid), its decoder has moved, and
    the manifest keeps the stages this work folder did not run."""
    import torch
    from diffusers import AutoencoderKL

    out, work = tmp_path / "demo", tmp_path / "work1"
    assert demo.train_demo(out, work, stages=["vae", "backbone"], tiny=True)
    before = AutoencoderKL.from_pretrained(str(out / "backbone" / "vae"))
    assert demo.train_demo(out, tmp_path / "work2", stages=["decoder"], tiny=True, extend=out)
    after = AutoencoderKL.from_pretrained(str(out / "backbone" / "vae"))
    locked = ("encoder.", "quant_conv.")
    moved = []
    for (name, a), (_, b) in zip(before.named_parameters(), after.named_parameters()):
        if name.startswith(locked):
            assert torch.equal(a, b), name
        elif name.startswith("decoder."):
            moved.append(not torch.equal(a, b))
    assert any(moved)
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"vae", "backbone", "decoder"} <= set(manifest["stages"])
    result = manifest["stages"]["decoder"]["result"]
    assert result["steps"] == 4 and result["held_out_l1_before"] > 0 and result["held_out_l1_after"] > 0
    entry = manifest["files"]["backbone/vae/diffusion_pytorch_model.safetensors"]
    assert hashlib.sha256((out / "backbone" / "vae" / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest() \
        == entry["sha256"]
