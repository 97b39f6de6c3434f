import copy
import shutil

import pytest
import torch
from diffusers import ControlNetModel
from safetensors.torch import save_file

from engine import loading
from tests.engine.ldm_writer import backbone_to_ldm, controlnet_to_ldm, write_config_folder
from tests.tiny_models import save_backbone_folder, tiny_backbone_parts, tiny_controlnet


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny backbone and ControlNet, saved once as diffusers folders."""
    parts = tiny_backbone_parts(seed=7)
    net = tiny_controlnet(parts["unet"], seed=8)
    root = tmp_path_factory.mktemp("tiny")
    save_backbone_folder(parts, root / "backbone")
    net.save_pretrained(root / "controlnet")
    return parts, net, root


@pytest.fixture
def models(tmp_path, monkeypatch):
    root = tmp_path / "models"
    (root / "backbones").mkdir(parents=True)
    (root / "controlnets").mkdir()
    monkeypatch.setenv("CNSTUDIO_MODELS", str(root))
    return root


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _check_backbone(got: dict, parts: dict, source: str) -> None:
    assert got["source"] == source
    for name in ("unet", "vae", "text_encoder"):
        assert _same(got[name], parts[name]), name
    assert got["tokenizer"]("a b").input_ids == parts["tokenizer"]("a b").input_ids
    assert got["scheduler_config"]["beta_end"] == 0.012


def test_models_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.delenv("CNSTUDIO_MODELS", raising=False)
    assert loading.models_dir() == loading.REPO_ROOT / "models"
    monkeypatch.setenv("CNSTUDIO_MODELS", str(tmp_path))
    assert loading.models_dir() == tmp_path


def test_missing_demo_says_how_to_rebuild(models):
    with pytest.raises(ValueError) as err:
        loading.load_backbone_components("demo")
    assert str(err.value) == (f"The embedded demo model is not installed at {models / 'demo' / 'backbone'}; rebuild "
                              "it with `python3 launch.py train-demo` or pick another backbone")
    assert loading.list_installed() == {"backbones": [], "controlnets": []}


def test_demo_backbone_and_controlnets(models, tiny):
    parts, net, root = tiny
    shutil.copytree(root / "backbone", models / "demo" / "backbone")
    shutil.copytree(root / "controlnet", models / "demo" / "controlnet-scribble")
    _check_backbone(loading.load_backbone_components("demo"), parts, "demo")
    assert _same(loading.load_controlnet_model("demo:scribble"), net)
    with pytest.raises(ValueError, match=r"demo ControlNet for 'depth' is not installed.*demo:scribble"):
        loading.load_controlnet_model("demo:depth")
    with pytest.raises(ValueError, match="demo:<kind>"):
        loading.load_controlnet_model("demo")
    assert loading.list_installed() == {"backbones": ["demo"], "controlnets": ["demo:scribble"]}


def test_diffusers_folders_by_path_and_by_name(models, tiny):
    parts, net, root = tiny
    _check_backbone(loading.load_backbone_components(str(root / "backbone")), parts, str(root / "backbone"))
    assert _same(loading.load_controlnet_model(str(root / "controlnet")), net)
    shutil.copytree(root / "backbone", models / "backbones" / "my-model")
    shutil.copytree(root / "controlnet", models / "controlnets" / "control_v11p_sd15_canny")
    _check_backbone(loading.load_backbone_components("my-model"), parts, "my-model")
    assert _same(loading.load_controlnet_model("control_v11p_sd15_canny"), net)
    # one kind where the other is expected
    with pytest.raises(ValueError, match="is a ControlNet, not a backbone"):
        loading.load_backbone_components(str(root / "controlnet"))
    with pytest.raises(ValueError, match="is a backbone"):
        loading.load_controlnet_model(str(root / "backbone"))


def test_fp16_only_folder_and_dtype(tmp_path, tiny):
    parts, net, _ = tiny
    folder = tmp_path / "half"
    copy.deepcopy(net).to(torch.float16).save_pretrained(folder, variant="fp16")
    assert not (folder / "diffusion_pytorch_model.safetensors").exists()
    got = loading.load_controlnet_model(str(folder), dtype=torch.float16)
    assert got.dtype == torch.float16
    assert torch.equal(got.controlnet_mid_block.weight, net.controlnet_mid_block.weight.half())


def test_single_files_under_models_with_sibling_configs(models, tiny):
    parts, _, _ = tiny
    save_file(backbone_to_ldm(parts["unet"], parts["vae"], parts["text_encoder"]),
              str(models / "backbones" / "tiny.safetensors"))
    with pytest.raises(ValueError, match=r"tiny.safetensors: unknown architecture.*tiny\.config"):
        loading.load_backbone_components("tiny")  # a tiny model fits none of the shipped SD configs
    write_config_folder(parts, models / "backbones" / "tiny.config")
    _check_backbone(loading.load_backbone_components("tiny"), parts, "tiny")
    _check_backbone(loading.load_backbone_components("tiny.safetensors"), parts, "tiny.safetensors")

    net = ControlNetModel.from_unet(parts["unet"], conditioning_embedding_out_channels=(8, 8, 8, 16))
    torch.save(controlnet_to_ldm(net), models / "controlnets" / "control_tiny_canny.pth")
    net.save_config(models / "controlnets" / "control_tiny_canny.config")
    assert _same(loading.load_controlnet_model("control_tiny_canny"), net)
    (models / "backbones" / "README.md").write_text("put models here")
    assert loading.list_installed() == {"backbones": ["tiny.safetensors"], "controlnets": ["control_tiny_canny.pth"]}


def _hub_cache(tmp_path, monkeypatch, repos: dict) -> None:
    """A Hugging Face hub cache as huggingface_hub lays it out, with downloads impossible."""
    cache = tmp_path / "hf" / "hub"
    for repo_id, src in repos.items():
        repo = cache / ("models--" + repo_id.replace("/", "--"))
        commit = "0123456789abcdef0123456789abcdef01234567"
        shutil.copytree(src, repo / "snapshots" / commit)
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(commit)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("CNSTUDIO_ALLOW_DOWNLOAD", raising=False)


def test_hub_ids_load_from_the_local_cache(models, tiny, tmp_path, monkeypatch):
    parts, net, root = tiny
    single = tmp_path / "single"
    single.mkdir()
    torch.save(controlnet_to_ldm(ControlNetModel.from_unet(parts["unet"], conditioning_embedding_out_channels=(8,) * 4)),
               single / "control_x.pth")
    _hub_cache(tmp_path, monkeypatch, {"someone/tiny-sd": root / "backbone", "someone/tiny-controlnet": root / "controlnet",
                                       "someone/files": single})
    assert loading.hf_cache_dir() == tmp_path / "hf" / "hub"
    _check_backbone(loading.load_backbone_components("someone/tiny-sd"), parts, "someone/tiny-sd")
    assert _same(loading.load_controlnet_model("someone/tiny-controlnet"), net)
    # a single file inside a cached repo resolves to that file (then fails detection: it is tiny)
    with pytest.raises(ValueError, match="control_x.pth: unknown ControlNet architecture"):
        loading.load_controlnet_model("someone/files/control_x.pth")

    with pytest.raises(ValueError) as err:
        loading.load_backbone_components("someone/not-there")
    msg = str(err.value)
    assert str(tmp_path / "hf" / "hub" / "models--someone--not-there") in msg and "CNSTUDIO_ALLOW_DOWNLOAD=1" in msg


def test_unmatched_source_lists_what_was_tried_and_installed(models, tiny):
    _, _, root = tiny
    shutil.copytree(root / "backbone", models / "backbones" / "mine")
    with pytest.raises(ValueError) as err:
        loading.load_backbone_components("no such model!")
    msg = str(err.value)
    assert "matches nothing" in msg and "a path" in msg and str(models / "backbones") in msg
    assert "hub id" in msg and "Installed: mine" in msg
    odd = models / "backbones" / "notes.txt"
    odd.write_text("x")
    with pytest.raises(ValueError, match="not a model file"):
        loading.load_backbone_components(str(odd))


@pytest.mark.parametrize("name,kind", [
    ("control_v11p_sd15_canny", "canny"), ("control_v11p_sd15_canny.pth", "canny"), ("demo:scribble", "scribble"),
    ("demo:pose", "openpose"), ("control_v11p_sd15_openpose", "openpose"), ("lllyasviel/sd-controlnet-hed", "softedge"),
    ("control_v11p_sd15_softedge", "softedge"), ("controlnet-pidi", "softedge"),
    ("control_v11p_sd15s2_lineart_anime", "lineart_anime"), ("control_v11p_sd15_lineart", "lineart"),
    ("control_v11f1p_sd15_depth", "depth"), ("control_v11p_sd15_seg", "seg"), ("control_v11p_sd15_mlsd", "mlsd"),
    ("control_v11p_sd15_normalbae", "normal"), ("control_v11e_sd15_shuffle", "shuffle"),
    ("control_v11f1e_sd15_tile", "tile"), ("control_v11p_sd15_inpaint", "inpaint"),
    ("thibaud/controlnet-sd21-openposev2-diffusers", "openpose"), ("models/controlnets/my_scribble.safetensors", "scribble"),
    ("control_v11e_sd15_ip2p", None), ("my-controlnet", None), ("", None), ("untitled", None),
])
def test_condition_kind(name, kind):
    assert loading.condition_kind(name) == kind
