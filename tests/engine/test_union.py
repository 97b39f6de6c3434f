"""ControlNet-Union units on the tiny SDXL backbone: one unit equals diffusers'
StableDiffusionXLControlNetUnionPipeline for its control type (max pixel difference <= 2/255); two
Union units of one model in one request add, at every step, what two single-type diffusers calls
give (checked with a hook on the UNet); the annotator's kind picks the type; a type the model
lacks, or a Union model on SD 1.x, is a clear error naming what fits."""
import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLControlNetUnionPipeline
from PIL import Image

from engine import ControlUnit, GenerationRequest
from engine.generate import render
from engine.manager import ModelManager
from engine.models import Backbone, ControlModel
from engine.outputs import infotext
from engine.samplers import make_scheduler
from tests.engine.test_adapters import _UNetCalls, _map_tensor
from tests.tiny_models import tiny_sdxl_parts, tiny_union

PROMPT, NEG, STEPS, CFG, SEED = "a red star on blue", "blurry", 4, 7.5, 1234


@pytest.fixture(scope="module")
def xl_parts():
    return tiny_sdxl_parts(seed=0)


@pytest.fixture(scope="module")
def union(xl_parts):
    return tiny_union(xl_parts["unet"], seed=5)


@pytest.fixture()
def manager(xl_parts, union, tiny_parts):
    m = ModelManager(device="cpu", dtype=torch.float32, max_backbones=2)
    p = xl_parts
    m.add(Backbone("xl", p["unet"], p["vae"], p["text_encoder"], p["tokenizer"], p["scheduler_config"],
                   text_encoder_2=p["text_encoder_2"], tokenizer_2=p["tokenizer_2"]))
    p = tiny_parts
    m.add(Backbone("tiny", p["unet"], p["vae"], p["text_encoder"], p["tokenizer"], p["scheduler_config"]))
    m.add(ControlModel("union", union))
    return m


def _ours(manager, units, steps=STEPS, backbone="xl"):
    req = GenerationRequest(backbone=backbone, prompt=PROMPT, negative_prompt=NEG, units=tuple(units), width=64,
                            height=64, steps=steps, cfg_scale=CFG, seed=SEED, sampler="unipc")
    return render(req, manager).images


def test_one_union_unit_equals_the_union_pipeline(manager, xl_parts, union, control_maps):
    p = xl_parts
    pipe = StableDiffusionXLControlNetUnionPipeline(
        vae=p["vae"], text_encoder=p["text_encoder"], text_encoder_2=p["text_encoder_2"], tokenizer=p["tokenizer"],
        tokenizer_2=p["tokenizer_2"], unet=p["unet"], controlnet=union,
        scheduler=make_scheduler("unipc", p["scheduler_config"]), add_watermarker=False).to("cpu")
    ref = pipe(PROMPT, control_image=[Image.fromarray(control_maps[0])], control_mode=[3], negative_prompt=NEG,
               num_inference_steps=STEPS, guidance_scale=CFG, generator=torch.Generator("cpu").manual_seed(SEED),
               height=64, width=64, output_type="np", controlnet_conditioning_scale=0.7,
               control_guidance_end=0.75).images
    ours = _ours(manager, [ControlUnit("union", control_maps[0], weight=0.7, end=0.75,
                                       union_control_type="Hard Edge")])
    diff = np.abs(ours.astype(np.float64) - ref).max()
    assert diff <= 2 / 255, f"max abs difference {diff}"
    other = _ours(manager, [ControlUnit("union", control_maps[0], weight=0.7, end=0.75, union_control_type="Depth")])
    assert np.abs(ours - other).max() > 1e-3, "the control type changed nothing"


def _one_hot(n, i):
    return torch.zeros(n).scatter_(0, torch.tensor([i]), 1)[None]


def test_two_union_units_add_two_single_type_calls(manager, union, control_maps):
    units = [ControlUnit("union", control_maps[0], weight=0.6, union_control_type="OpenPose"),
             ControlUnit("union", control_maps[1], weight=1.3, mode="prompt", annotator="depth")]
    with _UNetCalls(manager.backbone("xl").unet) as seen:
        _ours(manager, units, steps=2)
    assert len(seen.calls) == 2
    soft = torch.logspace(-1, 0, len(union.controlnet_down_blocks) + 1)
    with torch.no_grad():
        for call in seen.calls:
            added = call["added"]
            total = None
            for image, index, scales in ((control_maps[0], 0, torch.full_like(soft, 0.6)),
                                         (control_maps[1], 1, soft * 1.3)):
                downs, mid = union(call["x"], call["t"], encoder_hidden_states=call["text"],
                                   controlnet_cond=[_map_tensor(image).expand(2, -1, -1, -1)],
                                   control_type=_one_hot(6, index).expand(2, -1), control_type_idx=[index],
                                   conditioning_scale=1.0, added_cond_kwargs=added, return_dict=False)
                res = [r * s for r, s in zip(list(downs) + [mid], scales)]
                total = res if total is None else [a + b for a, b in zip(total, res)]
            for got, want in zip(call["downs"] + [call["mid"]], total):
                assert torch.allclose(got, want, atol=1e-4)


def test_the_annotators_kind_picks_the_type(manager, control_maps):
    named = _ours(manager, [ControlUnit("union", control_maps[0], union_control_type="Hard Edge")], steps=1)
    picked = _ours(manager, [ControlUnit("union", control_maps[0], annotator="canny")], steps=1)
    assert np.array_equal(named, picked)


def test_unknown_or_missing_types_are_clear_errors(manager, control_maps):
    with pytest.raises(ValueError, match="has 6 control types.*'Tile' is not among them: it needs a ProMax"):
        _ours(manager, [ControlUnit("union", control_maps[0], union_control_type="Tile")], steps=1)
    with pytest.raises(ValueError, match="no control type and it names no annotator: set union_control_type"):
        _ours(manager, [ControlUnit("union", control_maps[0])], steps=1)
    with pytest.raises(ValueError, match="union_control_type 'Canny' is not one of: OpenPose"):
        ControlUnit("union", control_maps[0], union_control_type="Canny")
    with pytest.raises(ValueError, match="ControlNet-Union model, which exists only for SDXL"):
        _ours(manager, [ControlUnit("union", control_maps[0], union_control_type="Depth")], steps=1,
              backbone="tiny")


def test_the_recipe_keeps_the_union_type(control_maps):
    unit = ControlUnit("union", control_maps[0], union_control_type="Segmentation")
    req = GenerationRequest(prompt="x", units=(unit, ControlUnit("cn", control_maps[1])))
    again = GenerationRequest.from_json(req.to_json())
    assert again.units[0].union_control_type == "Segmentation" and again.units[1].union_control_type is None
    assert "union_control_type" not in again.units[1].to_dict()      # older recipes read and write as before
    # A1111's parameters text names the type as the extension writes it; a plain ControlNet unit has none
    units = infotext(req.replace(cfg_scale=5.0), 1, 64, 64).split('ControlNet ')[1:]
    assert "Union Control Type: Segmentation" in units[0] and "Union Control Type" not in units[1]
