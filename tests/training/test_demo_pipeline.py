"""`train-demo --tiny`: every stage of the demo's recipe, end to end, at test size."""
import hashlib
import json

import pytest
from diffusers import ControlNetModel

from engine.training import cli


@pytest.mark.slow
def test_tiny_train_demo_builds_loadable_folders_and_resumes_by_stage(tmp_path):
    out, work = tmp_path / "demo", tmp_path / "work"
    args = ["train-demo", "--tiny", "--out", str(out), "--work", str(work)]
    assert cli.main([*args, "--stage", "vae"]) == 0
    assert (work / "vae" / "DONE.json").is_file() and not (out / "backbone").exists()
    assert cli.main(args) == 0
    stages = json.loads((work / "stages.json").read_text())
    assert stages["vae"]["calls"] and len(stages["vae"]["calls"]) == 2   # the second call found it done
    from engine.sources import load_backbone_components
    parts = load_backbone_components(str(out / "backbone"))
    net = ControlNetModel.from_pretrained(str(out / "controlnet-scribble"))
    from safetensors import safe_open
    with safe_open(str(out / "controlnet-scribble" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert {str(f.get_slice(k).get_dtype()) for k in f.keys()} == {"F16"}   # shipped in fp16
    assert net.config.block_out_channels == parts["unet"].config.block_out_channels
    manifest = json.loads((out / "manifest.json").read_text())
    for rel, entry in manifest["files"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == entry["sha256"]
    assert set(manifest["stages"]) == {"vae", "backbone", "controlnet-scribble", "controlnet-canny"}
    assert cli.main([*args, "--stage", "nonsense"]) == 2
