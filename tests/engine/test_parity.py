"""The engine's loop equals diffusers' pipelines on the same tiny weights, prompt, seed and
scheduler (CPU fp32, max abs difference <= 1e-4): the proof that composing units ourselves
changes nothing but the cost."""
import numpy as np
import pytest
import torch
from diffusers import (
    MultiControlNetModel,
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionControlNetPipeline,
    StableDiffusionPipeline,
)
from PIL import Image

from engine import ControlUnit, GenerationRequest
from engine.generate import render
from engine.samplers import make_scheduler

PROMPT, NEG, STEPS, CFG, SEED = "a red star on blue", "blurry", 4, 7.5, 1234


def _pipe(cls, parts, sampler="unipc", controlnet=None):
    kw = dict(vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"], unet=parts["unet"],
              scheduler=make_scheduler(sampler, parts["scheduler_config"]), safety_checker=None,
              feature_extractor=None, requires_safety_checker=False)
    if controlnet is not None:
        kw["controlnet"] = controlnet
    return cls(**kw).to("cpu")


def _ours(manager, units=(), sampler="unipc", batch_size=1, **kw):
    req = GenerationRequest(backbone="tiny", prompt=PROMPT, negative_prompt=NEG, units=tuple(units), width=64,
                            height=64, steps=STEPS, cfg_scale=CFG, seed=SEED, sampler=sampler,
                            batch_size=batch_size, **kw)
    return render(req, manager).images


def _gens(n=1):
    return [torch.Generator("cpu").manual_seed(SEED + i) for i in range(n)]


def _close(a, b):
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max()
    assert diff <= 1e-4, f"max abs difference {diff}"
    return diff


@pytest.mark.parametrize("sampler", ["unipc", "euler_a", "dpmpp_2m_karras", "ddim"])
def test_no_unit_equals_stable_diffusion_pipeline(tiny_manager, tiny_parts, sampler):
    pipe = _pipe(StableDiffusionPipeline, tiny_parts, sampler)
    ref = pipe(PROMPT, negative_prompt=NEG, num_inference_steps=STEPS, guidance_scale=CFG, generator=_gens(2),
               num_images_per_prompt=2, height=64, width=64, output_type="np").images
    ours = _ours(tiny_manager, sampler=sampler, batch_size=2)
    assert ours.shape == ref.shape == (2, 64, 64, 3)
    _close(ours, ref)
    assert np.abs(ours[0] - ours[1]).max() > 1e-3, "two seeds gave the same image"


def test_one_unit_equals_controlnet_pipeline(tiny_manager, tiny_parts, tiny_nets, control_maps):
    pipe = _pipe(StableDiffusionControlNetPipeline, tiny_parts, controlnet=tiny_nets[0])
    ref = pipe(PROMPT, Image.fromarray(control_maps[0]), negative_prompt=NEG, num_inference_steps=STEPS,
               guidance_scale=CFG, generator=_gens(), height=64, width=64, output_type="np",
               controlnet_conditioning_scale=0.8).images
    ours = _ours(tiny_manager, [ControlUnit("cn0", control_maps[0], weight=0.8)])
    _close(ours, ref)
    plain = _ours(tiny_manager)
    assert np.abs(ours - plain).max() > 1e-2, "the unit changed nothing; the test would not catch a dropped unit"


def test_two_units_with_weights_and_windows_equal_multicontrolnet(tiny_manager, tiny_parts, tiny_nets, control_maps):
    multi = MultiControlNetModel([tiny_nets[0], tiny_nets[1]])
    pipe = _pipe(StableDiffusionControlNetPipeline, tiny_parts, controlnet=multi)
    images = [Image.fromarray(m) for m in control_maps[:2]]
    ref = pipe(PROMPT, images, negative_prompt=NEG, num_inference_steps=STEPS, guidance_scale=CFG,
               generator=_gens(), height=64, width=64, output_type="np",
               controlnet_conditioning_scale=[1.3, 0.6], control_guidance_start=[0.0, 0.25],
               control_guidance_end=[0.5, 1.0]).images
    units = [ControlUnit("cn0", control_maps[0], weight=1.3, start=0.0, end=0.5),
             ControlUnit("cn1", control_maps[1], weight=0.6, start=0.25, end=1.0)]
    _close(_ours(tiny_manager, units), ref)


def test_control_mode_equals_guess_mode(tiny_manager, tiny_parts, tiny_nets, control_maps):
    pipe = _pipe(StableDiffusionControlNetPipeline, tiny_parts, controlnet=tiny_nets[2])
    ref = pipe(PROMPT, Image.fromarray(control_maps[2]), negative_prompt=NEG, num_inference_steps=STEPS,
               guidance_scale=CFG, generator=_gens(), height=64, width=64, output_type="np", guess_mode=True,
               controlnet_conditioning_scale=1.5).images
    ours = _ours(tiny_manager, [ControlUnit("cn2", control_maps[2], weight=1.5, mode="control")])
    _close(ours, ref)
    balanced = _ours(tiny_manager, [ControlUnit("cn2", control_maps[2], weight=1.5)])
    assert np.abs(ours - balanced).max() > 1e-3


def test_img2img_equals_controlnet_img2img_pipeline(tiny_manager, tiny_parts, tiny_nets, control_maps):
    rng = np.random.default_rng(0)
    init = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    pipe = _pipe(StableDiffusionControlNetImg2ImgPipeline, tiny_parts, controlnet=tiny_nets[0])
    ref = pipe(PROMPT, image=Image.fromarray(init), control_image=Image.fromarray(control_maps[0]),
               negative_prompt=NEG, num_inference_steps=STEPS, guidance_scale=CFG, generator=_gens(),
               height=64, width=64, output_type="np", strength=0.6,
               controlnet_conditioning_scale=1.0).images
    ours = _ours(tiny_manager, [ControlUnit("cn0", control_maps[0])], init_image=init, strength=0.6)
    _close(ours, ref)


def test_a_bgr_controlnet_reads_its_map_as_diffusers_does(tiny_parts, control_maps):
    """A net whose config says controlnet_conditioning_channel_order "bgr" gets the map's channels
    reversed (diffusers' ControlNetModel.forward); on a map whose channels differ that matters."""
    from engine.manager import ModelManager
    from engine.models import Backbone, ControlModel
    from tests.tiny_models import tiny_controlnet
    p = tiny_parts
    colour = np.zeros((64, 64, 3), np.uint8)
    colour[:, :32, 0] = 255          # red left, blue right: BGR reads them swapped
    colour[:, 32:, 2] = 255
    colour[16:48, 16:48, 1] = 160
    rgb = tiny_controlnet(p["unet"], seed=7)
    bgr = tiny_controlnet(p["unet"], seed=7)
    bgr.register_to_config(controlnet_conditioning_channel_order="bgr")
    m = ModelManager(device="cpu", dtype=torch.float32)
    m.add(Backbone("tiny", p["unet"], p["vae"], p["text_encoder"], p["tokenizer"], p["scheduler_config"]))
    m.add(ControlModel("bgr", bgr))
    m.add(ControlModel("rgb", rgb))
    pipe = _pipe(StableDiffusionControlNetPipeline, p, controlnet=bgr)
    ref = pipe(PROMPT, Image.fromarray(colour), negative_prompt=NEG, num_inference_steps=STEPS,
               guidance_scale=CFG, generator=_gens(), height=64, width=64, output_type="np").images
    ours = _ours(m, [ControlUnit("bgr", colour)])
    _close(ours, ref)
    as_rgb = _ours(m, [ControlUnit("rgb", colour)])
    assert np.abs(ours - as_rgb).max() > 1e-2, "the channel order changed nothing; the test would prove nothing"
