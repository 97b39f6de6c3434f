"""SDXL in the one loop equals diffusers' SDXL ControlNet pipelines on the same tiny SDXL-shaped
weights, prompt, seed and scheduler (CPU fp32): both text encoders, the pooled embedding, the
time ids and the text_time ControlNets (tests/tiny_models.py builds them)."""
import numpy as np
import pytest
import torch
from diffusers import (MultiControlNetModel, StableDiffusionXLControlNetImg2ImgPipeline,
                       StableDiffusionXLControlNetPipeline)
from PIL import Image

from engine import ControlUnit, GenerationRequest
from engine.generate import render
from engine.manager import ModelManager
from engine.models import Backbone, ControlModel
from engine.samplers import make_scheduler
from tests.tiny_models import tiny_controlnet, tiny_sdxl_parts

PROMPT, NEG, STEPS, CFG, SEED = "a red star on blue", "blurry", 4, 7.5, 1234
TOLERANCE = 2 / 255      # the bar; CPU fp32 lands far below it


@pytest.fixture(scope="module")
def xl_parts():
    return tiny_sdxl_parts(seed=0)


@pytest.fixture(scope="module")
def xl_nets(xl_parts):
    return [tiny_controlnet(xl_parts["unet"], seed=s) for s in (1, 2)]


@pytest.fixture()
def xl_manager(xl_parts, xl_nets):
    m = ModelManager(device="cpu", dtype=torch.float32)
    p = xl_parts
    m.add(Backbone("xl", p["unet"], p["vae"], p["text_encoder"], p["tokenizer"], p["scheduler_config"],
                   text_encoder_2=p["text_encoder_2"], tokenizer_2=p["tokenizer_2"]))
    for i, net in enumerate(xl_nets):
        m.add(ControlModel(f"xlcn{i}", net))
    return m


def _pipe(cls, parts, controlnet):
    return cls(vae=parts["vae"], text_encoder=parts["text_encoder"], text_encoder_2=parts["text_encoder_2"],
               tokenizer=parts["tokenizer"], tokenizer_2=parts["tokenizer_2"], unet=parts["unet"],
               controlnet=controlnet, scheduler=make_scheduler("unipc", parts["scheduler_config"]),
               add_watermarker=False).to("cpu")


def _ours(manager, units, width=64, height=64, **kw):
    req = GenerationRequest(backbone="xl", prompt=PROMPT, negative_prompt=NEG, units=tuple(units), width=width,
                            height=height, steps=STEPS, cfg_scale=CFG, seed=SEED, sampler="unipc", **kw)
    return render(req, manager).images


def _gens(n=1):
    return [torch.Generator("cpu").manual_seed(SEED + i) for i in range(n)]


def _close(a, b):
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max()
    assert diff <= TOLERANCE, f"max abs difference {diff}"
    return diff


def test_one_sdxl_unit_equals_sdxl_controlnet_pipeline(xl_manager, xl_parts, xl_nets, control_maps):
    pipe = _pipe(StableDiffusionXLControlNetPipeline, xl_parts, xl_nets[0])
    ref = pipe(PROMPT, image=Image.fromarray(control_maps[0]), negative_prompt=NEG, num_inference_steps=STEPS,
               guidance_scale=CFG, generator=_gens(), height=64, width=64, output_type="np",
               controlnet_conditioning_scale=0.8).images
    ours = _ours(xl_manager, [ControlUnit("xlcn0", control_maps[0], weight=0.8)])
    _close(ours, ref)
    assert np.abs(ours - _ours(xl_manager, [])).max() > 1e-2, "the SDXL unit changed nothing"


def test_two_sdxl_units_uneven_windows_batch_two_non_square(xl_manager, xl_parts, xl_nets, control_maps):
    pipe = _pipe(StableDiffusionXLControlNetPipeline, xl_parts, MultiControlNetModel(xl_nets))
    maps = [np.array(Image.fromarray(m).resize((96, 64))) for m in control_maps[:2]]
    ref = pipe(PROMPT, image=[Image.fromarray(m) for m in maps], negative_prompt=NEG, num_inference_steps=STEPS,
               guidance_scale=CFG, generator=_gens(2), num_images_per_prompt=2, height=64, width=96,
               output_type="np", controlnet_conditioning_scale=[1.3, 0.6], control_guidance_start=[0.0, 0.25],
               control_guidance_end=[0.5, 1.0]).images
    units = [ControlUnit("xlcn0", maps[0], weight=1.3, start=0.0, end=0.5),
             ControlUnit("xlcn1", maps[1], weight=0.6, start=0.25, end=1.0)]
    ours = _ours(xl_manager, units, width=96, height=64, batch_size=2)
    assert ours.shape == (2, 64, 96, 3)
    _close(ours, ref)


def test_sdxl_control_mode_equals_guess_mode(xl_manager, xl_parts, xl_nets, control_maps):
    pipe = _pipe(StableDiffusionXLControlNetPipeline, xl_parts, xl_nets[0])
    ref = pipe(PROMPT, image=Image.fromarray(control_maps[1]), negative_prompt=NEG, num_inference_steps=STEPS,
               guidance_scale=CFG, generator=_gens(), height=64, width=64, output_type="np",
               guess_mode=True).images
    _close(_ours(xl_manager, [ControlUnit("xlcn0", control_maps[1], mode="control")]), ref)


def test_sdxl_img2img_equals_sdxl_controlnet_img2img_pipeline(xl_manager, xl_parts, xl_nets, control_maps):
    init = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    pipe = _pipe(StableDiffusionXLControlNetImg2ImgPipeline, xl_parts, xl_nets[0])
    ref = pipe(PROMPT, image=Image.fromarray(init), control_image=Image.fromarray(control_maps[0]),
               negative_prompt=NEG, num_inference_steps=STEPS, guidance_scale=CFG, generator=_gens(), height=64,
               width=64, strength=0.75, output_type="np", controlnet_conditioning_scale=0.6).images
    # (this pipeline's default scale is 0.8, not 1.0: named here so both sides agree)
    ours = _ours(xl_manager, [ControlUnit("xlcn0", control_maps[0], weight=0.6)], init_image=init, strength=0.75)
    _close(ours, ref)


def test_sdxl_soft_injection_spans_its_ten_residuals():
    """SDXL 1.0's ControlNet gives 9 down residuals and the middle one: the `prompt`/`control`
    modes' curve runs over those 10 (diffusers' guess_mode rule), from 0.1 x weight to the weight."""
    import json
    from diffusers import ControlNetModel
    from engine.control import residual_scales
    from engine.loading.paths import CONFIGS_DIR
    cfg = json.loads((CONFIGS_DIR / "controlnet-sdxl-full" / "config.json").read_text())
    with torch.device("meta"):
        net = ControlNetModel.from_config(cfg)
    n = len(net.controlnet_down_blocks) + 1
    assert n == 10
    scales = residual_scales(n, 0.9, "prompt")
    assert scales[-1] == pytest.approx(0.9) and scales[0] == pytest.approx(0.09)
    assert torch.all(scales[1:] > scales[:-1])


def test_sdxl_recipe_restores_the_same_picture(xl_manager, control_maps, tmp_path):
    from engine import generate, read_recipe
    req = GenerationRequest(backbone="xl", prompt=PROMPT, negative_prompt=NEG, steps=2, seed=11, width=64, height=64,
                            units=(ControlUnit("xlcn0", control_maps[0], weight=0.6, end=0.5, mode="prompt"),))
    first = generate(req, manager=xl_manager)
    again = generate(read_recipe(first.paths[0]), manager=xl_manager, save=False)
    assert np.array_equal(np.asarray(first.images[0]), np.asarray(again.images[0]))


def test_long_sdxl_prompts_go_in_windows_for_both_encoders(xl_parts):
    from engine.prompt import encode_prompts_sdxl
    p = xl_parts
    toks, encs = (p["tokenizer"], p["tokenizer_2"]), (p["text_encoder"], p["text_encoder_2"])
    long = "a red star " * 40          # 440 characters: several 75-token windows of the tiny vocabulary
    pos, neg, pooled, pooled_neg = encode_prompts_sdxl(toks, encs, long, "blurry", "cpu", torch.float32)
    windows = pos.shape[1] // 77
    assert windows > 1 and pos.shape == neg.shape == (1, 77 * windows, 80)
    from engine.prompt import _chunk_ids, _token_chunks
    outs = [enc(torch.tensor([_chunk_ids(tok, _token_chunks(tok, long)[0])]), output_hidden_states=True)
            for tok, enc in zip(toks, encs)]
    first = torch.cat([o.hidden_states[-2] for o in outs], dim=-1)
    first_pooled = outs[1][0]
    assert torch.allclose(pos[:, :77], first, atol=1e-5)
    assert torch.allclose(pooled, first_pooled, atol=1e-5), "the pooled embedding is not the first window's"
    assert not torch.allclose(pos[:, 77:154], first, atol=1e-3), "later windows repeat the first"
