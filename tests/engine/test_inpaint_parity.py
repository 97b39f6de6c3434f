"""Inpainting with a ControlNet equals diffusers' ControlNet inpaint pipelines (SD 1.5 and SDXL)
on the same tiny weights, for a 4-channel UNet: the same latent blend at every step. The studio
then keeps the init picture outside the mask pixel for pixel (diffusers returns the decoded
latent there), so diffusers' picture is compared after that same paste."""
import numpy as np
import pytest
import torch
from diffusers import StableDiffusionControlNetInpaintPipeline, StableDiffusionXLControlNetInpaintPipeline
from PIL import Image

from engine import ControlUnit, GenerationRequest
from engine.generate import render
from engine.samplers import make_scheduler
from tests.engine.test_sdxl import xl_manager, xl_nets, xl_parts  # noqa: F401  (fixtures)

PROMPT, NEG, STEPS, CFG, SEED, STRENGTH = "a red star on blue", "blurry", 4, 7.5, 1234, 0.75
TOLERANCE = 2 / 255


@pytest.fixture(scope="module")
def picture_and_mask():
    init = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[8:40, 16:56] = 255
    return init, mask


def _pasted(ref, init, mask):
    m = (mask[None, :, :, None] / 255.0)
    return init[None] / 255.0 * (1 - m) + ref * m


def _ours(manager, backbone, model, control_map, init, mask):
    req = GenerationRequest(backbone=backbone, prompt=PROMPT, negative_prompt=NEG, width=64, height=64, steps=STEPS,
                            cfg_scale=CFG, seed=SEED, sampler="unipc", init_image=init, inpaint_mask=mask,
                            strength=STRENGTH, units=(ControlUnit(model, control_map, weight=0.7),))
    return render(req, manager).images


def _check(ours, ref, init, mask):
    diff = np.abs(ours - _pasted(ref, init, mask)).max()
    assert diff <= TOLERANCE, f"max abs difference {diff}"
    inside = mask > 127
    assert np.abs(ours[0][inside] - init[inside] / 255.0).max() > 0.05, "the masked area was not repainted"


def _call(pipe, control_map, init, mask):
    return pipe(PROMPT, image=Image.fromarray(init), mask_image=Image.fromarray(mask),
                control_image=Image.fromarray(control_map), negative_prompt=NEG, num_inference_steps=STEPS,
                guidance_scale=CFG, generator=[torch.Generator("cpu").manual_seed(SEED)], height=64, width=64,
                strength=STRENGTH, controlnet_conditioning_scale=0.7, output_type="np").images


def test_sd15_inpaint_equals_controlnet_inpaint_pipeline(tiny_manager, tiny_parts, tiny_nets, control_maps,
                                                         picture_and_mask):
    p = tiny_parts
    pipe = StableDiffusionControlNetInpaintPipeline(
        vae=p["vae"], text_encoder=p["text_encoder"], tokenizer=p["tokenizer"], unet=p["unet"],
        controlnet=tiny_nets[0], scheduler=make_scheduler("unipc", p["scheduler_config"]), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    init, mask = picture_and_mask
    ref = _call(pipe, control_maps[0], init, mask)
    _check(_ours(tiny_manager, "tiny", "cn0", control_maps[0], init, mask), ref, init, mask)


def test_sdxl_inpaint_equals_sdxl_controlnet_inpaint_pipeline(xl_manager, xl_parts, xl_nets, control_maps,  # noqa: F811
                                                              picture_and_mask):
    p = xl_parts
    pipe = StableDiffusionXLControlNetInpaintPipeline(
        vae=p["vae"], text_encoder=p["text_encoder"], text_encoder_2=p["text_encoder_2"], tokenizer=p["tokenizer"],
        tokenizer_2=p["tokenizer_2"], unet=p["unet"], controlnet=xl_nets[0],
        scheduler=make_scheduler("unipc", p["scheduler_config"]), add_watermarker=False)
    init, mask = picture_and_mask
    ref = _call(pipe, control_maps[0], init, mask)
    _check(_ours(xl_manager, "xl", "xlcn0", control_maps[0], init, mask), ref, init, mask)
