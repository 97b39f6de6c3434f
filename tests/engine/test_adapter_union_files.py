"""T2I-Adapters and ControlNet-Union models dropped into models/controlnets/: diffusers folders and
single files (diffusers' layout and TencentARC's original .pth layout, configs beside them or
shipped), loaded to the same weights; their family told without loading, so the pickers list them
for their backbone's family; their condition kind from the name; Union's type count from its
weights, never its config or name."""
import json

import pytest
import torch
from safetensors.torch import save_file

import engine
from engine.loading import load_controlnet_model
from engine.union import known_types
from tests.tiny_models import tiny_adapter, tiny_backbone_parts, tiny_sdxl_parts, tiny_union
from ui import catalog


def _original_layout(adapter) -> dict:
    """TencentARC's keys for a diffusers full adapter (what A1111's t2iadapter_*.pth files hold)."""
    n = adapter.config.num_res_blocks
    out = {}
    for k, v in adapter.state_dict().items():
        parts = k.split(".")
        if parts[1] == "conv_in":
            out[".".join(parts[1:])] = v
        elif parts[3] == "in_conv":
            out[f"body.{int(parts[2]) * n}.in_conv.{parts[4]}"] = v
        else:   # adapter.body.<level>.resnets.<j>.<block>.<param>
            out[f"body.{int(parts[2]) * n + int(parts[4])}.{parts[5]}.{parts[6]}"] = v
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from tests.tiny_models import save_backbone_folder, save_sdxl_folder
    root = tmp_path_factory.mktemp("models")
    nets = root / "controlnets"
    xl, sd = tiny_sdxl_parts(seed=5), tiny_backbone_parts(seed=5)
    save_sdxl_folder(xl, root / "backbones" / "tiny-xl")
    save_backbone_folder(sd, root / "backbones" / "tiny-sd15")
    made = {"t2i-adapter_xl_openpose": tiny_adapter(seed=6, xl=True),
            "t2iadapter_canny_sd15v2.pth": tiny_adapter(seed=7, in_channels=1),
            "t2i-adapter_sd15_depth.safetensors": tiny_adapter(seed=8),
            "controlnet-union-sdxl-1.0": tiny_union(xl["unet"], seed=9),
            "controlnet-union-promax-sdxl.safetensors": tiny_union(xl["unet"], seed=10, num_control_type=8)}
    made["t2i-adapter_xl_openpose"].save_pretrained(nets / "t2i-adapter_xl_openpose")
    made["controlnet-union-sdxl-1.0"].save_pretrained(nets / "controlnet-union-sdxl-1.0")
    torch.save(_original_layout(made["t2iadapter_canny_sd15v2.pth"]), nets / "t2iadapter_canny_sd15v2.pth")
    for name in ("t2i-adapter_sd15_depth.safetensors", "controlnet-union-promax-sdxl.safetensors"):
        save_file({k: v.contiguous() for k, v in made[name].state_dict().items()}, str(nets / name))
    for name in ("t2iadapter_canny_sd15v2.pth", "t2i-adapter_sd15_depth.safetensors",
                 "controlnet-union-promax-sdxl.safetensors"):
        made[name].save_config(nets / (name.rsplit(".", 1)[0] + ".config"))
    # a ProMax file beside a config that says 6 types (xinsir's first config did): the weights decide
    cfg = nets / "controlnet-union-promax-sdxl.config" / "config.json"
    cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "num_control_type": 6}))
    return root, made


@pytest.fixture()
def models_env(built, monkeypatch):
    monkeypatch.setenv("CNSTUDIO_MODELS", str(built[0]))
    return built


NAMES = ["t2i-adapter_xl_openpose", "t2iadapter_canny_sd15v2.pth", "t2i-adapter_sd15_depth.safetensors",
         "controlnet-union-sdxl-1.0", "controlnet-union-promax-sdxl.safetensors"]


@pytest.mark.parametrize("name", NAMES)
def test_each_loads_to_the_same_weights(models_env, name):
    made = models_env[1][name]
    net = load_controlnet_model(name)
    assert type(net) is type(made)
    want, got = made.state_dict(), net.state_dict()
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_union_type_count_comes_from_the_weights(models_env):
    assert known_types(load_controlnet_model("controlnet-union-sdxl-1.0"))[-1] == "Segmentation"
    promax = load_controlnet_model("controlnet-union-promax-sdxl.safetensors")
    assert promax.config.num_control_type == 8 and known_types(promax)[-2:] == ("Tile", "Inpaint")


def test_sketch_adapter_reads_one_channel(models_env):
    assert load_controlnet_model("t2iadapter_canny_sd15v2.pth").config.in_channels == 1


def test_pickers_list_adapters_and_union_for_their_family(models_env):
    nets = engine.installed_models()["controlnets"]
    assert set(NAMES) <= set(nets)
    assert set(catalog.controlnets_for("tiny-xl", nets)) == {
        "t2i-adapter_xl_openpose", "controlnet-union-sdxl-1.0", "controlnet-union-promax-sdxl.safetensors"}
    # the .pth is a pickle, never opened to list it: the config beside it tells its family
    assert {"t2i-adapter_sd15_depth.safetensors", "t2iadapter_canny_sd15v2.pth"} <= set(
        catalog.controlnets_for("tiny-sd15", nets))


def test_condition_kind_from_the_name():
    assert engine.condition_kind("t2i-adapter_xl_openpose") == "openpose"
    assert engine.condition_kind("t2iadapter_canny_sd15v2.pth") == "canny"
    assert engine.condition_kind("controlnet-union-sdxl-1.0") is None   # a Union model reads many kinds


def test_adapter_file_without_its_config_says_where_to_put_it(tmp_path):
    path = tmp_path / "t2iadapter_seg_sd14v1.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_adapter(seed=1).state_dict().items()}, str(path))
    with pytest.raises(ValueError, match="unknown T2I-Adapter.*t2iadapter_seg_sd14v1.config/"):
        load_controlnet_model(str(path))
