import json

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, ControlNetModel, StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

from engine import loading
from engine.loading import detect
from engine.loading import single_file as sf
from engine.loading import tokenizers as tk
from tests.engine.ldm_writer import backbone_to_ldm, controlnet_to_ldm, write_config_folder
from tests.tiny_models import tiny_backbone_parts

CONFIGS = loading.CONFIGS_DIR


@pytest.fixture(scope="module")
def tok_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture
def models_env(tok_cache, monkeypatch):
    monkeypatch.setenv("CNSTUDIO_MODELS", str(tok_cache))
    return tok_cache


# ---------------------------------------------------------------- tokenizer

# ids from OpenAI CLIP's own tokenizer (the ids SD 1.x/2.x were trained with)
CLIP_IDS = {
    "a photo of a cat": [49406, 320, 1125, 539, 320, 2368, 49407],
    "a photograph of an astronaut riding a horse": [49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407],
    "Hello   World": [49406, 3306, 1002, 49407],
    "a dog, running!!": [49406, 320, 1929, 267, 2761, 748, 49407],
}


@pytest.mark.parametrize("text", list(CLIP_IDS))
def test_clip_tokenizer_gives_clip_ids(models_env, text):
    tok = tk.clip_tokenizer("sd1")
    assert len(tok) == 49408 and tok.model_max_length == 77
    assert tok(text).input_ids == CLIP_IDS[text]


def test_sd2_variant_differs_only_in_padding(models_env):
    sd1, sd2 = tk.clip_tokenizer("sd1"), tk.clip_tokenizer("sd2")
    a = sd1("a cat", padding="max_length", max_length=77).input_ids
    b = sd2("a cat", padding="max_length", max_length=77).input_ids
    assert a[:4] == b[:4] == [49406, 320, 2368, 49407]
    assert set(a[4:]) == {49407} and set(b[4:]) == {0} and sd2.pad_token == "!"
    with pytest.raises(ValueError, match="variant"):
        tk.clip_tokenizer("sdxl")


def test_the_tokenizer_ships_and_loading_writes_nothing_under_models(models_env):
    """CLIP's files ship in engine/configs; building the tokenizer (and loading a backbone
    folder without one) leaves the models folder as it was."""
    before = sorted(p.relative_to(models_env) for p in models_env.rglob("*"))
    assert len(tk.clip_tokenizer("sd2")) == 49408
    assert sorted(p.relative_to(models_env) for p in models_env.rglob("*")) == before
    assert (loading.CONFIGS_DIR / "clip-tokenizer" / "vocab.json").is_file()


# ---------------------------------------------------------------- shipped configs

def _ldm_yaml(context_dim, v2, controlnet=False):
    """The facts of the original inference yamls (v1-inference, v2-inference(-v), cldm_v15/v21)."""
    unet = {"in_channels": 4, "out_channels": 4, "model_channels": 320, "attention_resolutions": [4, 2, 1],
            "num_res_blocks": 2, "channel_mult": [1, 2, 4, 4], "transformer_depth": 1, "context_dim": context_dim,
            **({"num_head_channels": 64, "use_linear_in_transformer": True} if v2 else {"num_heads": 8})}
    ddconfig = {"z_channels": 4, "in_channels": 3, "out_ch": 3, "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2}
    params = {"unet_config": {"params": unet}, "first_stage_config": {"params": {"ddconfig": ddconfig}},
              "scale_factor": 0.18215}
    if controlnet:
        params["control_stage_config"] = {"params": {**unet, "hint_channels": 3}}
    return {"model": {"params": params}}


def _v2_marker():
    from diffusers.loaders.single_file_utils import CHECKPOINT_KEY_NAMES
    return {CHECKPOINT_KEY_NAMES["v2"]: torch.empty(320, 1024, device="meta")}


@pytest.mark.parametrize("folder,v2", [("sd15", False), ("sd2-base", True), ("sd2-v", True)])
def test_shipped_backbone_configs_match_diffusers_reading_of_the_original_yaml(folder, v2):
    from diffusers.loaders.single_file_utils import (
        create_unet_diffusers_config_from_ldm, create_vae_diffusers_config_from_ldm)
    yaml = _ldm_yaml(1024 if v2 else 768, v2)
    ckpt = _v2_marker() if v2 else {}
    expected_unet = create_unet_diffusers_config_from_ldm(yaml, ckpt)
    shipped = json.loads((CONFIGS / folder / "unet" / "config.json").read_text())
    if folder == "sd2-base":  # diffusers assumes 768 for every SD 2 file; the 512 base is 64 latents
        expected_unet["sample_size"] = 64
    for k, v in expected_unet.items():
        if v is not None and k != "transformer_layers_per_block":
            assert shipped[k] == (list(v) if isinstance(v, tuple) else v), (folder, k)
    vae = json.loads((CONFIGS / folder / "vae" / "config.json").read_text())
    for k, v in create_vae_diffusers_config_from_ldm(yaml, ckpt).items():
        if k != "sample_size":
            assert vae[k] == (list(v) if isinstance(v, tuple) else v), (folder, k)
    sched = json.loads((CONFIGS / folder / "scheduler" / "scheduler_config.json").read_text())
    assert sched["prediction_type"] == ("v_prediction" if folder == "sd2-v" else "epsilon")
    assert (sched["beta_start"], sched["beta_end"], sched["beta_schedule"]) == (0.00085, 0.012, "scaled_linear")


@pytest.mark.parametrize("folder,width", [("controlnet-sd15", 768), ("controlnet-sd21", 1024)])
def test_shipped_controlnet_configs_match_diffusers_reading_of_cldm_yaml(folder, width):
    # diffusers' create_controlnet_diffusers_config_from_ldm copies these fields from its UNet
    # reading of control_stage_config (calling it directly trips over a missing argument in 0.42)
    from diffusers.loaders.single_file_utils import create_unet_diffusers_config_from_ldm
    yaml = _ldm_yaml(width, width == 1024, controlnet=True)
    yaml["model"]["params"]["unet_config"] = yaml["model"]["params"]["control_stage_config"]
    expected = create_unet_diffusers_config_from_ldm(yaml, _v2_marker() if width == 1024 else {})
    shipped = json.loads((CONFIGS / folder / "config.json").read_text())
    for k in ("in_channels", "down_block_types", "block_out_channels", "layers_per_block", "cross_attention_dim",
              "attention_head_dim", "use_linear_projection"):
        v = expected[k]
        assert shipped[k] == (list(v) if isinstance(v, tuple) else v), (folder, k)
    assert shipped["conditioning_channels"] == 3


def _meta(cls, folder):
    with init_empty_weights():
        if cls is CLIPTextModel:
            return CLIPTextModel(CLIPTextConfig.from_pretrained(str(folder)))
        return cls.from_config(cls.load_config(str(folder)))


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_shipped_configs_build_the_published_parameter_counts():
    assert _count(_meta(UNet2DConditionModel, CONFIGS / "sd15/unet")) == 859_520_964
    assert _count(_meta(UNet2DConditionModel, CONFIGS / "sd2-v/unet")) == 865_910_724
    assert _count(_meta(AutoencoderKL, CONFIGS / "sd15/vae")) == 83_653_863
    assert _count(_meta(CLIPTextModel, CONFIGS / "sd15/text_encoder")) == 123_060_480
    assert _count(_meta(ControlNetModel, CONFIGS / "controlnet-sd15")) == 361_279_120


# ---------------------------------------------------------------- detection on real-shaped (meta) state dicts

@pytest.fixture(scope="module")
def meta_ldm():
    """Full-size SD 1.5 / SD 2 checkpoints' keys and shapes, on the meta device (no memory)."""
    out = {}
    for name, folder, open_clip in (("sd1", "sd15", False), ("sd2", "sd2-v", True)):
        unet = _meta(UNet2DConditionModel, CONFIGS / folder / "unet")
        out[name] = backbone_to_ldm(unet, _meta(AutoencoderKL, CONFIGS / folder / "vae"),
                                    _meta(CLIPTextModel, CONFIGS / folder / "text_encoder"), open_clip=open_clip)
    for name, folder in (("cn15", "controlnet-sd15"), ("cn21", "controlnet-sd21")):
        out[name] = controlnet_to_ldm(_meta(ControlNetModel, CONFIGS / folder))
    return out


def test_detects_sd1_and_sd2(meta_ldm):
    assert detect.detect_backbone(meta_ldm["sd1"]) == "sd1"
    assert detect.detect_backbone(meta_ldm["sd2"]) == "sd2"


def test_unknown_widths_and_unsupported_kinds_are_refused_with_shapes(meta_ldm):
    odd = dict(meta_ldm["sd1"])
    odd["model.diffusion_model." + detect.LDM_ATTN2] = torch.empty(320, 1280, device="meta")
    with pytest.raises(ValueError, match=r"unknown architecture.*\(320, 1280\).*config_dir"):
        detect.detect_backbone(odd, "odd.safetensors")
    inpaint = dict(meta_ldm["sd1"])
    inpaint["model.diffusion_model.input_blocks.0.0.weight"] = torch.empty(320, 9, 3, 3, device="meta")
    with pytest.raises(ValueError, match="inpainting model.*9 UNet input channels"):
        detect.detect_backbone(inpaint)
    xl = {**meta_ldm["sd1"], "conditioner.embedders.1.model.positional_embedding": torch.empty(77, 1280, device="meta")}
    with pytest.raises(ValueError, match="SDXL"):
        detect.detect_backbone(xl)
    mixed = {k: v for k, v in meta_ldm["sd2"].items() if not k.startswith("cond_stage_model.")}
    with pytest.raises(ValueError, match="text encoder missing"):
        detect.detect_backbone(mixed)
    with pytest.raises(ValueError, match="load it as a ControlNet"):
        detect.detect_backbone(meta_ldm["cn15"])


def test_controlnet_detection_by_width_with_and_without_prefix(meta_ldm):
    for key, expected in (("cn15", "controlnet-sd15"), ("cn21", "controlnet-sd21")):
        prefixed = meta_ldm[key]
        assert all(k.startswith("control_model.") for k in prefixed)
        assert detect.detect_controlnet(detect.controlnet_part(prefixed)) == expected
        bare = {k.removeprefix("control_model."): v for k, v in prefixed.items()}
        assert detect.detect_controlnet(detect.controlnet_part(bare)) == expected
    # a ControlNet 1.0 file: the control model beside a whole SD model
    full = {**meta_ldm["sd1"], **meta_ldm["cn15"]}
    part = detect.controlnet_part(full)
    assert not any(k.startswith("model.diffusion_model.") for k in part)
    assert detect.detect_controlnet(part) == "controlnet-sd15"
    diffusers_layout = _meta(ControlNetModel, CONFIGS / "controlnet-sd21").state_dict()
    assert detect.detect_controlnet(diffusers_layout) == "controlnet-sd21"
    with pytest.raises(ValueError, match="load it as a backbone"):
        detect.detect_controlnet(meta_ldm["sd1"])


# ---------------------------------------------------------------- loading tiny files against diffusers' loader

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    parts = tiny_backbone_parts(seed=3)
    folder = tmp_path_factory.mktemp("tiny-config")
    write_config_folder(parts, folder)
    return parts, folder


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("suffix,open_clip", [(".safetensors", False), (".ckpt", False), (".safetensors", True)])
def test_ldm_file_loads_like_diffusers_from_single_file(tiny, tmp_path, suffix, open_clip):
    parts, config = tiny
    sd = backbone_to_ldm(parts["unet"], parts["vae"], parts["text_encoder"], open_clip=open_clip)
    path = tmp_path / f"tiny{suffix}"
    if suffix == ".ckpt":
        torch.save({"state_dict": sd, "global_step": 470000, "epoch": 3}, path)
    else:
        save_file(sd, str(path))

    ours = sf.load_backbone_file(path, dtype=torch.float32, config_dir=config)
    pipe = StableDiffusionPipeline.from_single_file(str(path), config=str(config), local_files_only=True)
    for name in ("unet", "vae", "text_encoder"):
        assert _same_weights(ours[name], getattr(pipe, name)), name
        assert _same_weights(ours[name], parts[name]), name
    assert ours["tokenizer"]("ab").input_ids == parts["tokenizer"]("ab").input_ids
    assert ours["scheduler_config"]["beta_schedule"] == "scaled_linear"


def test_fp16_load_and_shipped_tokenizer_fallback(tiny, tmp_path, models_env):
    parts, config = tiny
    bare = tmp_path / "no-tokenizer"
    write_config_folder(parts, bare, with_tokenizer=False)
    path = tmp_path / "tiny2.safetensors"
    save_file(backbone_to_ldm(parts["unet"], parts["vae"], parts["text_encoder"], open_clip=True), str(path))
    ours = sf.load_backbone_file(path, dtype=torch.float16, config_dir=bare)
    assert ours["unet"].dtype == ours["vae"].dtype == ours["text_encoder"].dtype == torch.float16
    assert ours["tokenizer"].pad_token == "!"  # OpenCLIP keys: SD 2's tokenizer


@pytest.mark.parametrize("prefix,suffix", [("control_model.", ".pth"), ("", ".pth"), ("control_model.", ".safetensors")])
def test_lllyasviel_controlnet_loads_like_diffusers(tiny, tmp_path, prefix, suffix):
    parts, _ = tiny
    torch.manual_seed(5)
    # lllyasviel's hint encoder always has 8 convs (input_hint_block.0 ... .14)
    net = ControlNetModel.from_unet(parts["unet"], conditioning_embedding_out_channels=(8, 8, 8, 16))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    config = tmp_path / "cn-config"
    net.save_config(config)
    path = tmp_path / f"control_v11p_sd15_canny{suffix}"
    sd = controlnet_to_ldm(net, prefix=prefix)
    torch.save(sd, path) if suffix == ".pth" else save_file(sd, str(path))

    ours = sf.load_controlnet_file(path, config_dir=config)
    theirs = ControlNetModel.from_single_file(str(path), config=str(config), local_files_only=True)
    assert _same_weights(ours, theirs) and _same_weights(ours, net)
    assert not ours.config.global_pool_conditions

    shuffle = path.with_name("control_v11e_sd15_shuffle" + suffix)
    path.rename(shuffle)
    assert sf.load_controlnet_file(shuffle, config_dir=config).config.global_pool_conditions


def test_mismatched_or_incomplete_files_name_the_problem(tiny, tmp_path):
    parts, config = tiny
    sd = backbone_to_ldm(parts["unet"], parts["vae"], parts["text_encoder"])
    no_text = tmp_path / "no_text.safetensors"
    save_file({k: v for k, v in sd.items() if not k.startswith("cond_stage_model.")}, str(no_text))
    with pytest.raises(ValueError, match="no_text.safetensors holds no text encoder"):
        sf.load_backbone_file(no_text, config_dir=config)

    other = tmp_path / "other-config"
    write_config_folder({**parts, "unet": UNet2DConditionModel(**{**parts["unet"].config, "cross_attention_dim": 48})},
                        other)
    path = tmp_path / "tiny.safetensors"
    save_file(sd, str(path))
    with pytest.raises(ValueError, match="tiny.safetensors: its unet does not fit the config"):
        sf.load_backbone_file(path, config_dir=other)
    with pytest.raises(ValueError, match="missing"):
        sf.load_backbone_file(path, config_dir=tmp_path / "nowhere")


# ---------------------------------------------------------------- SD 2: v-prediction vs epsilon

def _constant_unet(parts, value: float):
    """A UNet whose output is `value` everywhere: the probe's answer is known in advance."""
    unet = UNet2DConditionModel.from_config(parts["unet"].config)
    with torch.no_grad():
        unet.conv_out.weight.zero_()
        unet.conv_out.bias.fill_(value)
    return unet.eval()


def test_v_prediction_probe(tiny):
    parts, _ = tiny
    assert detect.is_v_prediction(_constant_unet(parts, -2.0))      # mean(out - 0.5) = -2.5 < -1
    assert not detect.is_v_prediction(_constant_unet(parts, 0.5))   # predicts its input: epsilon


def test_reconfigure_keeps_the_weights_without_copying(tiny, tmp_path):
    """SD 2 base and 768-v share an architecture; switching configs reuses the loaded tensors."""
    parts, _ = tiny
    UNet2DConditionModel.from_config({**parts["unet"].config, "sample_size": 48}).save_config(tmp_path)
    twin = sf._reconfigure(parts["unet"], tmp_path)
    assert twin.config.sample_size == 48
    a, b = twin.state_dict(), parts["unet"].state_dict()
    assert a.keys() == b.keys() and all(a[k].data_ptr() == b[k].data_ptr() for k in a)
