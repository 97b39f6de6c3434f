"""SDXL from disk: a diffusers folder, an original-layout single file (converted by diffusers
against a config folder), diffusers-layout SDXL ControlNet files; refusals that name the file
and both families; the VAE's force_upcast."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engine.loading import load_backbone_components, load_controlnet_model
from engine.loading.detect import detect_backbone, detect_controlnet
from engine.manager import ModelManager
from engine.models import Backbone, ControlModel, check_fits
from tests.engine.ldm_writer import sdxl_backbone_to_ldm
from tests.tiny_models import save_sdxl_folder, tiny_controlnet, tiny_sdxl_parts

CONFIGS = ("text_encoder", "text_encoder_2", "unet", "vae")


@pytest.fixture(scope="module")
def xl(tmp_path_factory):
    parts = tiny_sdxl_parts(seed=3)
    folder = tmp_path_factory.mktemp("xl") / "tiny-xl"
    save_sdxl_folder(parts, folder)
    return parts, folder


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


def test_sdxl_folder_loads_both_encoders_and_tokenizers(xl):
    parts, folder = xl
    got = load_backbone_components(str(folder))
    assert _same(got["text_encoder_2"], parts["text_encoder_2"]) == 0
    assert got["tokenizer_2"].pad_token == "!" and got["tokenizer"].pad_token == "<|endoftext|>"


def test_original_layout_sdxl_file_loads_like_the_folder(xl, tmp_path):
    parts, folder = xl
    sd = sdxl_backbone_to_ldm(parts)
    assert detect_backbone(sd, "x.safetensors") == "sdxl"
    file = tmp_path / "tiny-xl.safetensors"
    save_file(sd, str(file))
    # tiny shapes are not SDXL 1.0's: the configs come from the folder beside the file
    config = tmp_path / "tiny-xl.config"
    for part in CONFIGS + ("scheduler", "tokenizer", "tokenizer_2"):
        (config / part).mkdir(parents=True)
        for f in (folder / part).glob("*.json"):
            (config / part / f.name).write_text(f.read_text())
        for f in (folder / part).glob("*.txt"):
            (config / part / f.name).write_text(f.read_text())
    got = load_backbone_components(str(file))
    for name in CONFIGS:
        assert _same(got[name], parts[name]) == 0, name


def test_sdxl_refiner_v_pred_and_partial_files_are_refused_by_name(xl):
    sd = sdxl_backbone_to_ldm(xl[0])
    refiner = {k.replace("conditioner.embedders.1.", "conditioner.embedders.0."): v for k, v in sd.items()
               if not k.startswith("conditioner.embedders.0.")}
    with pytest.raises(ValueError, match="refiner.xl.safetensors is an SDXL refiner"):
        detect_backbone(refiner, "refiner.xl.safetensors")
    with pytest.raises(ValueError, match="v-prediction SDXL"):
        detect_backbone({**sd, "v_pred": torch.tensor([])}, "v.safetensors")
    no_unet = {k: v for k, v in sd.items() if not k.startswith("model.diffusion_model.")}
    with pytest.raises(ValueError, match="cut.safetensors is an incomplete SDXL checkpoint: it lacks the UNet"):
        detect_backbone(no_unet, "cut.safetensors")


def test_sdxl_controlnet_file_in_diffusers_layout_and_its_size_configs(xl, tmp_path):
    net = tiny_controlnet(xl[0]["unet"], seed=4)
    file = tmp_path / "diffusers_xl_canny_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(file))
    config = tmp_path / "diffusers_xl_canny_tiny.config"
    net.save_config(config)
    got = load_controlnet_model(str(file))
    assert _same(got, net) == 0 and got.config.addition_embed_type == "text_time"
    # shipped SDXL ControlNet configs, told apart by their transformer layers
    from diffusers import ControlNetModel
    from engine.loading.paths import CONFIGS_DIR
    for size in ("full", "mid", "small"):
        cfg = json.loads((CONFIGS_DIR / f"controlnet-sdxl-{size}" / "config.json").read_text())
        with torch.device("meta"):
            model = ControlNetModel.from_config(cfg)
        keys = {k: torch.empty(0) for k in model.state_dict()}
        assert detect_controlnet(keys, "x") == f"controlnet-sdxl-{size}"


def test_control_lora_is_refused():
    with pytest.raises(ValueError, match="Control-LoRA"):
        detect_controlnet({"lora_controlnet": torch.tensor([]), "input_hint_block.0.weight": torch.zeros(1)},
                          "control-lora-canny-rank128.safetensors")


def test_family_mismatch_names_both_families(xl, tiny_parts, tiny_nets):
    parts = xl[0]
    xl_bb = Backbone("tiny-xl", parts["unet"], parts["vae"], parts["text_encoder"], parts["tokenizer"],
                     parts["scheduler_config"], text_encoder_2=parts["text_encoder_2"], tokenizer_2=parts["tokenizer_2"])
    sd_bb = Backbone("tiny-sd15", tiny_parts["unet"], tiny_parts["vae"], tiny_parts["text_encoder"],
                     tiny_parts["tokenizer"], tiny_parts["scheduler_config"])
    xl_net = ControlModel("xl_canny.safetensors", tiny_controlnet(parts["unet"]))
    with pytest.raises(ValueError, match=r"'xl_canny.safetensors' is an SDXL ControlNet and backbone 'tiny-sd15' is SD 1.x"):
        check_fits(xl_net, sd_bb)
    with pytest.raises(ValueError, match=r"'sd15_net' is an SD 1.x ControlNet and backbone 'tiny-xl' is SDXL"):
        check_fits(ControlModel("sd15_net", tiny_nets[0]), xl_bb)
    check_fits(xl_net, xl_bb)


def test_force_upcast_vae_decodes_in_fp32(xl):
    manager = ModelManager(device="cpu", dtype=torch.float16, fast=False)
    bb = manager.backbone(str(xl[1]))
    assert bb.unet.dtype == torch.float16 and bb.vae.dtype == torch.float32
    assert bb.family == "sdxl"
