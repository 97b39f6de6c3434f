"""T2I-Adapter units on SD 1.x and SDXL equal diffusers' adapter pipelines on the same tiny weights,
prompt, seed and scheduler (CPU fp32; the issue's bar is 2/255); an adapter and a ControlNet in one
request add what diffusers computes for each (checked with a hook on the UNet); the extension's soft
scales and the cond-only mode reach the UNet; the SDXL pipeline's adapter_conditioning_factor is the
unit's `end`."""
import numpy as np
import pytest
import torch
from diffusers import StableDiffusionAdapterPipeline, StableDiffusionXLAdapterPipeline
from PIL import Image

from engine import ControlUnit, GenerationRequest
from engine.generate import render
from engine.manager import ModelManager
from engine.models import Backbone, ControlModel
from engine.samplers import make_scheduler
from tests.tiny_models import tiny_adapter, tiny_sdxl_parts

PROMPT, NEG, STEPS, CFG, SEED = "a red star on blue", "blurry", 4, 7.5, 1234
TOLERANCE = 2 / 255


@pytest.fixture(scope="module")
def adapters():
    return {"sd": tiny_adapter(seed=3), "xl": tiny_adapter(seed=4, xl=True)}


@pytest.fixture(scope="module")
def xl_parts():
    return tiny_sdxl_parts(seed=0)


@pytest.fixture()
def manager(tiny_parts, tiny_nets, xl_parts, adapters):
    m = ModelManager(device="cpu", dtype=torch.float32, max_backbones=2)
    p = tiny_parts
    m.add(Backbone("tiny", p["unet"], p["vae"], p["text_encoder"], p["tokenizer"], p["scheduler_config"]))
    p = xl_parts
    m.add(Backbone("xl", p["unet"], p["vae"], p["text_encoder"], p["tokenizer"], p["scheduler_config"],
                   text_encoder_2=p["text_encoder_2"], tokenizer_2=p["tokenizer_2"]))
    m.add(ControlModel("cn0", tiny_nets[0]))
    m.add(ControlModel("t2i-sd", adapters["sd"], "canny"))
    m.add(ControlModel("t2i-xl", adapters["xl"], "openpose"))
    return m


def _ours(manager, backbone, units, steps=STEPS, **kw):
    req = GenerationRequest(backbone=backbone, prompt=PROMPT, negative_prompt=NEG, units=tuple(units), width=64,
                            height=64, steps=steps, cfg_scale=CFG, seed=SEED, sampler="unipc", **kw)
    return render(req, manager).images


def _gen():
    return torch.Generator("cpu").manual_seed(SEED)


def _close(a, b):
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max()
    assert diff <= TOLERANCE, f"max abs difference {diff}"


def test_sd15_adapter_unit_equals_adapter_pipeline(manager, tiny_parts, adapters, control_maps):
    p = tiny_parts
    pipe = StableDiffusionAdapterPipeline(vae=p["vae"], text_encoder=p["text_encoder"], tokenizer=p["tokenizer"],
                                          unet=p["unet"], adapter=adapters["sd"],
                                          scheduler=make_scheduler("unipc", p["scheduler_config"]),
                                          safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    ref = pipe(PROMPT, image=Image.fromarray(control_maps[0]), negative_prompt=NEG, num_inference_steps=STEPS,
               guidance_scale=CFG, generator=_gen(), height=64, width=64, output_type="np",
               adapter_conditioning_scale=0.8).images
    ours = _ours(manager, "tiny", [ControlUnit("t2i-sd", control_maps[0], weight=0.8)])
    _close(ours, ref)
    assert np.abs(ours - _ours(manager, "tiny", [])).max() > 1e-2, "the adapter changed nothing"


def _xl_pipe(parts, adapter):
    return StableDiffusionXLAdapterPipeline(
        vae=parts["vae"], text_encoder=parts["text_encoder"], text_encoder_2=parts["text_encoder_2"],
        tokenizer=parts["tokenizer"], tokenizer_2=parts["tokenizer_2"], unet=parts["unet"], adapter=adapter,
        scheduler=make_scheduler("unipc", parts["scheduler_config"])).to("cpu")


@pytest.mark.parametrize("end", [1.0, 0.5])
def test_sdxl_adapter_unit_equals_sdxl_adapter_pipeline(manager, xl_parts, adapters, control_maps, end):
    """`end` is the pipeline's adapter_conditioning_factor: the adapter acts on the first steps only."""
    ref = _xl_pipe(xl_parts, adapters["xl"])(
        PROMPT, image=Image.fromarray(control_maps[1]), negative_prompt=NEG, num_inference_steps=STEPS,
        guidance_scale=CFG, generator=_gen(), height=64, width=64, output_type="np",
        adapter_conditioning_scale=1.2, adapter_conditioning_factor=end).images
    ours = _ours(manager, "xl", [ControlUnit("t2i-xl", control_maps[1], weight=1.2, end=end)])
    _close(ours, ref)


class _UNetCalls:
    """Records what the locked UNet is given at each call (a forward pre-hook)."""

    def __init__(self, unet):
        self.calls = []
        self.handle = unet.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        intra = kwargs.get("down_intrablock_additional_residuals")
        downs = kwargs.get("down_block_additional_residuals")
        self.calls.append({"x": args[0].clone(), "t": args[1], "text": kwargs["encoder_hidden_states"].clone(),
                           "intra": None if intra is None else [r.clone() for r in intra],
                           "downs": None if downs is None else [r.clone() for r in downs],
                           "added": kwargs.get("added_cond_kwargs"),
                           "mid": None if kwargs.get("mid_block_additional_residual") is None
                           else kwargs["mid_block_additional_residual"].clone()})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def _map_tensor(image):
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255.0


def test_adapter_and_controlnet_in_one_request_add_what_diffusers_computes(manager, tiny_parts, tiny_nets, adapters,
                                                                           control_maps):
    units = [ControlUnit("t2i-sd", control_maps[0], weight=0.7), ControlUnit("cn0", control_maps[1], weight=1.1)]
    with _UNetCalls(tiny_parts["unet"]) as seen:
        _ours(manager, "tiny", units, steps=2)
    assert len(seen.calls) == 2
    with torch.no_grad():
        features = adapters["sd"](_map_tensor(control_maps[0]))
        for call in seen.calls:
            assert call["intra"] is not None and call["downs"] is not None, "one of the two was not applied"
            for got, f in zip(call["intra"], features):
                assert torch.allclose(got, torch.cat([f, f]) * 0.7, atol=1e-5)
            cond = _map_tensor(control_maps[1]).expand(2, -1, -1, -1)
            downs, mid = tiny_nets[0](call["x"], call["t"], encoder_hidden_states=call["text"], controlnet_cond=cond,
                                      conditioning_scale=1.1, return_dict=False)
            for got, want in zip(call["downs"] + [call["mid"]], list(downs) + [mid]):
                assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("mode", ["prompt", "control"])
def test_adapter_soft_modes_use_the_extensions_scales(manager, tiny_parts, adapters, control_maps, mode):
    """sd-webui-controlnet's hook scales adapter levels by 0.25, 0.62, 0.825, 1.0 (the tiny adapter
    has the first two); `control` leaves the unconditional half of the batch without them."""
    with _UNetCalls(tiny_parts["unet"]) as seen:
        _ours(manager, "tiny", [ControlUnit("t2i-sd", control_maps[0], weight=0.9, mode=mode)], steps=1)
    with torch.no_grad():
        features = adapters["sd"](_map_tensor(control_maps[0]))
    got = seen.calls[0]["intra"]
    for level, (g, f) in enumerate(zip(got, features)):
        scale = 0.9 * (0.25, 0.62)[level]
        assert torch.allclose(g[1:], f * scale, atol=1e-5)
        assert torch.allclose(g[:1], torch.zeros_like(f) if mode == "control" else f * scale, atol=1e-5)


def test_adapter_window_and_mask(manager, tiny_parts, control_maps):
    mask = np.zeros((64, 64), np.uint8)
    mask[:, :32] = 255
    with _UNetCalls(tiny_parts["unet"]) as seen:
        _ours(manager, "tiny", [ControlUnit("t2i-sd", control_maps[0], start=0.25, end=0.75, mask=mask)])
    applied = [c["intra"] is not None for c in seen.calls]
    assert applied == [False, True, True, False]
    first = seen.calls[1]["intra"][0]
    assert first[..., 20:].abs().max() == 0 and first[..., :12].abs().max() > 0, "the mask did not confine it"


def test_adapter_of_the_other_family_is_refused_naming_what_fits(manager, control_maps):
    with pytest.raises(ValueError, match="SD 1.x/2.x adapter.*SDXL T2I-Adapter"):
        _ours(manager, "xl", [ControlUnit("t2i-sd", control_maps[0])])
    with pytest.raises(ValueError, match="SDXL adapter.*SD 1.5 T2I-Adapter"):
        _ours(manager, "tiny", [ControlUnit("t2i-xl", control_maps[0])])


def test_size_that_the_adapter_cannot_read_is_a_clear_error(manager, control_maps):
    from diffusers import T2IAdapter
    # SD 1.5's real adapters unshuffle by 8 and halve three times: a multiple of 64 (here 4 x 4)
    manager.add(ControlModel("t2i-coarse", T2IAdapter(channels=(32, 64), num_res_blocks=1, downscale_factor=8)))
    req = GenerationRequest(backbone="tiny", prompt=PROMPT, units=(ControlUnit("t2i-coarse", control_maps[0]),),
                            width=72, height=64, steps=1, seed=1)
    with pytest.raises(ValueError, match="divide by 16.*72x64"):
        render(req, manager)
