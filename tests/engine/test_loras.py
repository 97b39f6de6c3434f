"""LoRAs (issue 27): files in models/loras/ in the kohya and diffusers layouts, UNet and text
encoder parts, several at once, equal diffusers' pipeline after `load_lora_weights` with the
same scales; the backbone is bit-identical afterwards; the `<lora:name:w>` prompt syntax; bad
files refused naming the file, the next generation unharmed."""
import copy

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

from engine import GenerationRequest, generate
from engine.generate import render
from engine.loras import installed_loras, split_prompt
from engine.manager import ModelManager
from engine.models import Backbone
from engine.samplers import make_scheduler
from engine.values import LoraChoice
from tests.engine.lora_files import make_lora, save_diffusers, save_kohya
from tests.tiny_models import tiny_sdxl_parts

PROMPT, NEG, STEPS, CFG, SEED = "a red star", "blurry", 2, 6.0, 7
TOLERANCE = 2 / 255


@pytest.fixture()
def loras_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CNSTUDIO_MODELS", str(tmp_path / "models"))
    folder = tmp_path / "models" / "loras"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture(scope="module")
def sd_loras(tiny_parts):
    return make_lora(tiny_parts, seed=11, rank=4, alpha=2.0), make_lora(tiny_parts, seed=12, rank=2, alpha=2.0)


@pytest.fixture(scope="module")
def plain(tiny_parts):
    """The tiny backbone's picture without LoRAs, made before any test here applied one."""
    p = tiny_parts
    manager = ModelManager(device="cpu", dtype=torch.float32)
    manager.add(Backbone("tiny", p["unet"], p["vae"], p["text_encoder"], p["tokenizer"], p["scheduler_config"]))
    return render(_request(), manager).images


def _request(backbone="tiny", **kw):
    base = dict(backbone=backbone, prompt=PROMPT, negative_prompt=NEG, steps=STEPS, cfg_scale=CFG, seed=SEED,
                width=64, height=64, sampler="unipc")
    return GenerationRequest(**{**base, **kw})


def _state(*modules):
    return [{k: v.clone() for k, v in m.state_dict().items()} for m in modules]


def _same_state(before, modules):
    for old, m in zip(before, modules):
        new = m.state_dict()
        assert list(old) == list(new), "the module's layers changed names (PEFT wrappers left behind)"
        assert all(torch.equal(old[k], new[k]) for k in old), "a backbone weight changed"


def _sd_pipe(parts):
    return StableDiffusionPipeline(
        vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"], unet=parts["unet"],
        scheduler=make_scheduler("unipc", parts["scheduler_config"]), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)


def _reference(pipe, files_and_weights, **call):
    """diffusers' own answer: each file through load_lora_weights, set_adapters with the weights."""
    names = []
    for i, (path, _) in enumerate(files_and_weights):
        pipe.load_lora_weights(str(path), adapter_name=f"ref{i}")
        names.append(f"ref{i}")
    pipe.set_adapters(names, [w for _, w in files_and_weights])
    return pipe(PROMPT, negative_prompt=NEG, num_inference_steps=STEPS, guidance_scale=CFG,
                generator=torch.Generator("cpu").manual_seed(SEED), height=64, width=64, output_type="np", **call).images


def test_two_sd15_loras_kohya_and_diffusers_layouts_equal_diffusers_pipeline(tiny_manager, tiny_parts, sd_loras,
                                                                               loras_dir, plain):
    save_kohya(sd_loras[0], loras_dir / "ink_style.safetensors")
    save_diffusers(sd_loras[1], loras_dir / "red_hero.safetensors")
    parts = tiny_parts
    before = _state(parts["unet"], parts["text_encoder"])
    ours = render(_request(loras=[("ink_style", 0.8), ("red_hero", -0.6)]), tiny_manager).images
    _same_state(before, [parts["unet"], parts["text_encoder"]])

    ref = _reference(_sd_pipe(copy.deepcopy(parts)),
                     [(loras_dir / "ink_style.safetensors", 0.8), (loras_dir / "red_hero.safetensors", -0.6)])
    diff = np.abs(ours - ref).max()
    assert diff <= TOLERANCE, f"LoRAs vs diffusers: max abs difference {diff}"
    assert np.abs(ours - plain).max() > 0.02, "the LoRAs changed nothing"
    # after it, the backbone makes the picture it made before, bit for bit; weight 0 is no LoRA
    assert np.array_equal(render(_request(), tiny_manager).images, plain)
    assert np.array_equal(render(_request(loras=[("ink_style", 0.0)]), tiny_manager).images, plain)


def test_text_encoder_part_alone_changes_the_picture_as_diffusers_does(tiny_manager, tiny_parts, loras_dir, plain):
    te_only = {k: v for k, v in make_lora(tiny_parts, seed=21, strength=1.0).items() if k[0] == "text_encoder"}
    save_kohya(te_only, loras_dir / "words.safetensors")
    ours = render(_request(loras=[("words", 1.0)]), tiny_manager).images
    ref = _reference(_sd_pipe(copy.deepcopy(tiny_parts)), [(loras_dir / "words.safetensors", 1.0)])
    assert np.abs(ours - ref).max() <= TOLERANCE
    assert np.abs(ours - plain).max() > 0.01, "the text-encoder LoRA did nothing"


def test_prompt_tags_are_taken_out_and_unknown_names_warned(tiny_manager, sd_loras, loras_dir):
    save_kohya(sd_loras[0], loras_dir / "Ink_Style.safetensors")
    tagged = generate(_request(prompt=f"{PROMPT}, <lora:ink_style:0.8> <lora:nowhere:1>"), manager=tiny_manager,
                      save=False)
    by_field = render(_request(loras=[("Ink_Style", 0.8)]), tiny_manager).images
    assert np.array_equal(np.asarray(tagged.images[0]), (by_field[0] * 255).round().astype(np.uint8))
    assert any("'nowhere'" in w and "not installed" in w for w in tagged.warnings), tagged.warnings
    assert "<lora" in tagged.recipe          # the recipe keeps the prompt as written, so it runs again
    assert not any("lora" in w for w in tagged.ignored_words)


def test_split_prompt_reads_a1111_syntax():
    clean, choices, warnings = split_prompt("a castle, <lora:moody:0.6>, at dusk <LORA:Sketchy> <lora:x:bad>")
    assert clean == "a castle, at dusk"
    assert choices == [LoraChoice("moody", 0.6), LoraChoice("Sketchy", 1.0), LoraChoice("x", 1.0)]
    assert len(warnings) == 1 and "'bad'" in warnings[0]
    _, choices, warnings = split_prompt("<lora:far:9>")
    assert choices == [] and "4" in warnings[0]


def test_request_field_bounds_and_recipe_round_trip():
    with pytest.raises(ValueError, match="weight"):
        LoraChoice("x", 5.0)
    with pytest.raises(ValueError, match="name"):
        LoraChoice("a:b")
    req = _request(loras=[{"name": "ink", "weight": 0.5}, "plain"])
    assert GenerationRequest.from_json(req.to_json()).loras == (LoraChoice("ink", 0.5), LoraChoice("plain", 1.0))
    assert '"loras"' not in _request().to_json()       # a recipe without LoRAs is written as before


def test_installed_loras_lists_files_and_diffusers_folders(loras_dir, sd_loras):
    save_kohya(sd_loras[0], loras_dir / "zeta.safetensors")
    (loras_dir / "chars").mkdir()
    save_kohya(sd_loras[0], loras_dir / "chars" / "alpha.safetensors")
    (loras_dir / "trained_here").mkdir()
    save_diffusers(sd_loras[1], loras_dir / "trained_here" / "pytorch_lora_weights.safetensors")
    (loras_dir / "notes.txt").write_text("not a LoRA")
    assert list(installed_loras()) == ["alpha", "trained_here", "zeta"]


def test_bad_loras_are_refused_naming_the_file_and_the_studio_goes_on(tiny_manager, tiny_parts, loras_dir):
    xl = tiny_sdxl_parts(seed=0)
    save_kohya(make_lora(xl, seed=3, encoders=("text_encoder", "text_encoder_2")), loras_dir / "xl_style.safetensors",
               sdxl=True)
    (loras_dir / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    loha = {"lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_a": torch.zeros(2, 2),
            "lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_b": torch.zeros(2, 2)}
    from safetensors.torch import save_file
    save_file(loha, str(loras_dir / "loha_thing.safetensors"))
    before = _state(tiny_parts["unet"], tiny_parts["text_encoder"])
    for name, words in (("xl_style", "SDXL"), ("broken", "broken.safetensors"), ("loha_thing", "LoHa")):
        with pytest.raises(ValueError, match=words) as err:
            render(_request(loras=[(name, 1.0)]), tiny_manager)
        assert name in str(err.value)
    _same_state(before, [tiny_parts["unet"], tiny_parts["text_encoder"]])
    assert render(_request(), tiny_manager).images.shape == (1, 64, 64, 3)


def test_sdxl_loras_both_text_encoders_equal_diffusers_pipeline(loras_dir):
    parts = tiny_sdxl_parts(seed=0)
    encoders = ("text_encoder", "text_encoder_2")
    save_kohya(make_lora(parts, seed=31, encoders=encoders), loras_dir / "xl_kohya.safetensors", sdxl=True)
    save_diffusers(make_lora(parts, seed=32, rank=2, encoders=encoders), loras_dir / "xl_diffusers.safetensors")
    manager = ModelManager(device="cpu", dtype=torch.float32)
    manager.add(Backbone("xl", parts["unet"], parts["vae"], parts["text_encoder"], parts["tokenizer"],
                         parts["scheduler_config"], text_encoder_2=parts["text_encoder_2"],
                         tokenizer_2=parts["tokenizer_2"]))
    modules = [parts[k] for k in ("unet", "text_encoder", "text_encoder_2")]
    before = _state(*modules)
    ours = render(_request("xl", loras=[("xl_kohya", 0.9), ("xl_diffusers", 0.5)]), manager).images
    _same_state(before, modules)
    p = copy.deepcopy(parts)
    pipe = StableDiffusionXLPipeline(vae=p["vae"], text_encoder=p["text_encoder"], text_encoder_2=p["text_encoder_2"],
                                     tokenizer=p["tokenizer"], tokenizer_2=p["tokenizer_2"], unet=p["unet"],
                                     scheduler=make_scheduler("unipc", p["scheduler_config"]), add_watermarker=False)
    ref = _reference(pipe, [(loras_dir / "xl_kohya.safetensors", 0.9), (loras_dir / "xl_diffusers.safetensors", 0.5)])
    assert np.abs(ours - ref).max() <= TOLERANCE
    assert np.abs(ours - render(_request("xl"), manager).images).max() > 0.02


def test_cli_lora_flag_reads_name_and_weight():
    from engine.cli import build_parser, request_from_args
    args = build_parser().parse_args(["--prompt", "x", "--lora", "ink_style:0.8", "--lora", "plain"])
    assert request_from_args(args).loras == (LoraChoice("ink_style", 0.8), LoraChoice("plain", 1.0))
    with pytest.raises(ValueError, match="name:weight"):
        request_from_args(build_parser().parse_args(["--lora", "ink:lots"]))
