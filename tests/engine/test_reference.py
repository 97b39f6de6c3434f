"""Reference units (reference_only / reference_adain / reference_adain+attn) as a user meets
them: through generate(), on SD-shaped tiny UNets, checked against the A1111 extension's
numbers (scripts/hook.py) and the issue's promises: window, weight 0, nothing left behind,
seeded, stacking with ControlNets, SDXL."""
import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel

from engine import REFERENCE_MODELS, ControlUnit, GenerationRequest, generate
from engine import reference
from engine.denoise import denoise
from engine.generate import render
from engine.manager import ModelManager
from engine.models import Backbone
from engine.reference import attached, effective_fidelity, layers, write
from tests.tiny_models import tiny_sdxl_parts

RED_SQUARE = np.zeros((64, 64, 3), np.uint8)
RED_SQUARE[:] = (20, 120, 230)
RED_SQUARE[16:48, 16:48] = (230, 30, 30)


def _req(units=(), **kw):
    base = dict(backbone="tiny", prompt="a star", width=64, height=64, steps=2, seed=5, cfg_scale=6.0)
    return GenerationRequest(units=tuple(units), **(base | kw))


def _structure_unet(down, up, layers_per_block=2, widths=(32, 48, 64, 64), **kw):
    """A UNet with a family's block layout at tiny width (the structure is what the rule reads)."""
    torch.manual_seed(0)
    return UNet2DConditionModel(block_out_channels=widths[:len(down)], down_block_types=down, up_block_types=up,
                                layers_per_block=layers_per_block, cross_attention_dim=32, attention_head_dim=8,
                                norm_num_groups=16, sample_size=8, **kw).eval()


def _ldm_names(unet):
    """The extension's LDM names of the modules `layers` picked for adain, with their thresholds."""
    names = {}
    i = 1
    for level, block in enumerate(unet.down_blocks):
        for j, resnet in enumerate(block.resnets):
            names[id(block.attentions[j] if getattr(block, "attentions", None) else resnet)] = f"input{i}"
            i += 1
        i += 1 if block.downsamplers else 0
    names[id(unet.mid_block)] = "middle"
    o = 0
    for block in unet.up_blocks:
        for j, resnet in enumerate(block.resnets):
            module = block.attentions[j] if getattr(block, "attentions", None) else resnet
            if j == len(block.resnets) - 1 and block.upsamplers:
                module = block.upsamplers[0]
            names[id(module)] = f"output{o}"
            o += 1
    return {names[id(m)]: t for m, t in layers(unet).adain}


def test_sd15_layout_gets_the_extensions_adain_blocks_and_thresholds():
    unet = _structure_unet(("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                           ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
    picked = _ldm_names(unet)
    assert sorted(picked) == sorted(["middle", *(f"input{i}" for i in (4, 5, 7, 8, 10, 11)),
                                     *(f"output{i}" for i in range(8))])
    # weight 1.0 renormalises the deep half: the middle, input 10-11, output 0-3 (hook.py's gn_weight)
    at_one = sorted(name for name, t in picked.items() if 1.0 > t)
    assert at_one == sorted(["middle", "input10", "input11", "output0", "output1", "output2", "output3"])
    # attention: SD1.5's 16 self-attention blocks, widest first (6 of the deepest width: 2 encoder,
    # middle, 3 decoder); weight 0.5 shares 8: those 6 and the next level's 2 encoder blocks
    attn = layers(unet).attention
    shared = [a for a, t in attn if 0.5 > t]
    assert len(attn) == 16 and [a.query_dim for a in shared] == [64] * 6 + [48] * 2
    encoder = [b.attn1 for b in unet.down_blocks[1].attentions[0].transformer_blocks + unet.down_blocks[1].attentions[1].transformer_blocks]
    assert shared[6:] == encoder


def test_sdxl_layout_gets_the_extensions_adain_blocks():
    unet = _structure_unet(("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                           ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"))
    assert sorted(_ldm_names(unet)) == sorted(["middle", "input4", "input5", "input7", "input8",
                                               *(f"output{i}" for i in range(6))])


def test_weight_zero_is_no_unit_and_the_backbone_is_untouched_afterwards(tiny_manager):
    unet = tiny_manager.backbone("tiny").unet
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    plain = render(_req(), tiny_manager).images
    for model in REFERENCE_MODELS:
        assert not np.array_equal(render(_req([ControlUnit(model, RED_SQUARE)]), tiny_manager).images, plain)
    assert np.array_equal(render(_req([ControlUnit("reference_adain+attn", RED_SQUARE, weight=0)]),
                                 tiny_manager).images, plain)
    assert np.array_equal(render(_req(), tiny_manager).images, plain)          # bit for bit
    assert all(torch.equal(v, before[k]) for k, v in unet.state_dict().items())
    assert not any(m._forward_hooks or "forward" in m.__dict__ for m in unet.modules())


def test_same_seed_same_picture_and_the_recipe_restores_the_unit(tiny_manager):
    unit = ControlUnit("reference_only", RED_SQUARE, style_fidelity=0.8, mode="balanced")
    first = generate(_req([unit]), manager=tiny_manager, save=False)
    again = generate(GenerationRequest.from_json(first.recipe), manager=tiny_manager, save=False)
    assert np.array_equal(np.asarray(first.images[0]), np.asarray(again.images[0]))
    restored = GenerationRequest.from_json(first.recipe).units[0]
    assert restored.model == "reference_only" and restored.style_fidelity == 0.8 and restored.annotator is None
    other = generate(_req([unit], seed=6), manager=tiny_manager, save=False)
    assert not np.array_equal(np.asarray(first.images[0]), np.asarray(other.images[0]))
    # a ControlNet unit's recipe does not grow the field (old recipes read and write as before)
    assert "style_fidelity" not in ControlUnit("cn0", RED_SQUARE).to_dict()


def test_the_reference_acts_only_inside_its_window(tiny_manager):
    bb = tiny_manager.backbone("tiny")
    request = _req(steps=4).replace(seed=5)
    seen = {}
    for name, window in (("plain", None), ("late", (0.5, 1.0))):
        refs = [] if window is None else [reference.prepare_reference(
            ControlUnit("reference_adain+attn", RED_SQUARE, start=window[0], end=window[1]), 0, bb, 64, 64, [5])]
        steps = []
        denoise(bb, [], request, 64, 64, [5], lambda s: steps.append(s.x.clone()), references=refs)
        seen[name] = steps
    assert torch.equal(seen["plain"][0], seen["late"][0]) and torch.equal(seen["plain"][1], seen["late"][1])
    assert not torch.allclose(seen["plain"][2], seen["late"][2])


def _main_pass(unet, fidelity, model="reference_adain+attn"):
    """One main UNet call after a reference pass, with identical latents and text in both CFG
    halves, so any difference between the halves is the style fidelity's doing."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 16, 16, generator=g).repeat(2, 1, 1, 1)
    text = torch.randn(1, 77, 32, generator=g).repeat(2, 1, 1)
    ref = reference.PreparedReference(model, torch.randn(1, 4, 16, 16, generator=g), 1.0, fidelity, 0.0, 1.0,
                                      [torch.Generator().manual_seed(1)])
    t = torch.tensor(500)
    with torch.inference_mode():
        plain = unet(x, t, encoder_hidden_states=text).sample
        with attached(unet, [ref]) as bank:
            # a schedule with no noise at t: both halves' reference rows are the reference itself
            write(unet, bank, [ref], t, text, torch.ones(1000), cfg=True)
            out = unet(x, t, encoder_hidden_states=text).sample
    return plain, out


@pytest.mark.parametrize("model", ["reference_only", "reference_adain"])
def test_style_fidelity_one_keeps_the_unconditional_half_plain_and_zero_shares_both(tiny_parts, model):
    unet = tiny_parts["unet"]
    plain, out = _main_pass(unet, 1.0, model)
    assert torch.allclose(out[0], plain[0], atol=1e-5)            # uncond: no reference at fidelity 1
    assert (out[1] - plain[1]).abs().max() > 1e-3                   # cond: always the reference
    plain, out = _main_pass(unet, 0.0, model)
    assert torch.allclose(out[0], out[1], atol=1e-5)                # both halves read it alike at 0
    assert (out[0] - plain[0]).abs().max() > 1e-3


def test_control_modes_override_style_fidelity_as_the_extension_does():
    assert effective_fidelity(0.3, "control", "sd1") == 1.0
    assert effective_fidelity(0.9, "prompt", "sd1") == 0.0
    assert effective_fidelity(0.5, "balanced", "sd1") == 0.5
    assert effective_fidelity(0.5, "balanced", "sdxl") == 0.125     # hook.py: "0.5 ** 3.0 = 0.125"


def test_stacks_with_a_controlnet(tiny_manager):
    cn = ControlUnit("cn0", RED_SQUARE)
    ref = ControlUnit("reference_adain+attn", RED_SQUARE)
    both = render(_req([cn, ref]), tiny_manager).images
    assert not np.array_equal(both, render(_req([cn]), tiny_manager).images)
    assert not np.array_equal(both, render(_req([ref]), tiny_manager).images)


def test_sdxl_backbone_runs_reference_units_and_is_untouched_after():
    p = tiny_sdxl_parts(seed=0)
    m = ModelManager(device="cpu", dtype=torch.float32)
    m.add(Backbone("xl", p["unet"], p["vae"], p["text_encoder"], p["tokenizer"], p["scheduler_config"],
                   text_encoder_2=p["text_encoder_2"], tokenizer_2=p["tokenizer_2"]))
    request = GenerationRequest(backbone="xl", prompt="a star", width=64, height=64, steps=2, seed=1, cfg_scale=5)
    plain = render(request, m).images
    ref = render(request.replace(units=(ControlUnit("reference_adain+attn", RED_SQUARE),)), m).images
    assert np.abs(ref - plain).max() > 1e-4
    assert np.array_equal(render(request, m).images, plain)


def test_bad_reference_units_are_refused_with_what_to_do():
    with pytest.raises(ValueError, match="style_fidelity must be between 0.0 and 1.0"):
        ControlUnit("reference_only", RED_SQUARE, style_fidelity=1.5)
    with pytest.raises(ValueError, match="takes no mask"):
        ControlUnit("reference_only", RED_SQUARE, mask=np.full((64, 64), 255, np.uint8))
    with pytest.raises(ValueError, match="no reference picture"):
        ControlUnit("reference_only", None)
    auto = ControlUnit("reference_adain", RED_SQUARE, annotator="auto")   # the picture is read as it is
    assert auto.annotator is None and np.array_equal(auto.image, RED_SQUARE)
