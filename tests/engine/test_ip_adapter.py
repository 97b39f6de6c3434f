"""IP-Adapter units (issue 26) as a user meets them: h94-layout files (.safetensors and .bin, basic
and plus) with their CLIP image encoders under models/ipadapters/, through generate(), equal to
diffusers' pipelines after `load_ip_adapter` with the same scales; the window (a hook on the
UNet reads the scales per step), weight 0, the shared backbone bit-identical afterwards, two
units, one beside a ControlNet, SDXL; bad files refused naming the folder, file and family."""
import copy

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionControlNetPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline
from PIL import Image

from engine import ControlUnit, GenerationRequest
from engine import ip_adapter
from engine.generate import render
from engine.manager import ModelManager
from engine.models import Backbone
from engine.samplers import make_scheduler
from tests.engine.ip_adapter_files import VIT_BIGG, VIT_H, make_ip_adapter, save_bin, save_encoder, save_safetensors
from tests.engine.test_lora_slots import _managers, loras  # noqa: F401  (loras: a fixture)
from tests.tiny_models import tiny_sdxl_parts

PROMPT, NEG, STEPS, CFG, SEED = "a red star", "blurry", 3, 6.0, 7
TOLERANCE = 2 / 255


def _picture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picture = np.zeros((64, 48, 3), np.uint8)
    picture[:] = rng.integers(0, 255, 3)
    picture[8:40, 10:30] = rng.integers(0, 255, 3)
    return picture


FACE, STREET = _picture(1), _picture(2)


@pytest.fixture()
def ipadapters(tmp_path, monkeypatch, tiny_parts):
    """models/ipadapters/ with a ViT-H-like encoder and, for the tiny SD1.5 UNet, a basic adapter
    as .safetensors and a plus adapter as .bin (h94's names)."""
    monkeypatch.setenv("CNSTUDIO_MODELS", str(tmp_path / "models"))
    folder = tmp_path / "models" / "ipadapters"
    folder.mkdir(parents=True)
    save_encoder(folder / "image_encoder", VIT_H)
    unet = tiny_parts["unet"]
    save_safetensors(make_ip_adapter(unet, VIT_H, seed=1), folder / "ip-adapter_sd15.safetensors")
    save_bin(make_ip_adapter(unet, VIT_H, plus=True, seed=2), folder / "ip-adapter-plus_sd15.bin")
    ip_adapter.forget()
    return folder


def _request(backbone="tiny", units=(), **kw):
    base = dict(backbone=backbone, prompt=PROMPT, negative_prompt=NEG, steps=STEPS, cfg_scale=CFG, seed=SEED,
                width=64, height=64, sampler="unipc")
    return GenerationRequest(units=tuple(units), **{**base, **kw})


def _scales(fed) -> tuple:
    """The scales a processor reads now (tensors, so the fast path's graphs read each step's)."""
    return tuple(round(float(s), 4) for s in fed.processor.scale)


def _state(unet):
    return {k: v.clone() for k, v in unet.state_dict().items()}, dict(unet.attn_processors)


def _untouched(before, unet):
    weights, processors = before
    now = unet.state_dict()
    assert list(now) == list(weights), "the UNet's modules changed (processors left registered)"
    assert all(torch.equal(weights[k], now[k]) for k in weights), "a backbone weight changed"
    assert all(unet.attn_processors[k] is p for k, p in processors.items()), "a processor was not put back"
    assert unet.encoder_hid_proj is None and unet.config.encoder_hid_dim_type is None


def _sd_pipe(parts, folder, weights, cls=StableDiffusionPipeline, **kw):
    p = copy.deepcopy(parts)
    pipe = cls(vae=p["vae"], text_encoder=p["text_encoder"], tokenizer=p["tokenizer"], unet=p["unet"],
               scheduler=make_scheduler("unipc", p["scheduler_config"]), safety_checker=None, feature_extractor=None,
               image_encoder=None, requires_safety_checker=False, **kw)
    pipe.load_ip_adapter(str(folder), subfolder="", weight_name=weights, image_encoder_folder="image_encoder")
    return pipe


def _diffusers(pipe, scales, pictures, **call):
    pipe.set_ip_adapter_scale(scales)
    return pipe(PROMPT, negative_prompt=NEG, num_inference_steps=STEPS, guidance_scale=CFG, height=64, width=64,
                generator=torch.Generator("cpu").manual_seed(SEED), output_type="np",
                ip_adapter_image=[Image.fromarray(p) for p in pictures], **call).images


def test_one_unit_equals_diffusers_and_leaves_the_backbone_as_it_was(tiny_manager, tiny_parts, ipadapters):
    unet = tiny_parts["unet"]
    plain = render(_request(), tiny_manager).images
    before = _state(unet)
    ours = render(_request(units=[ControlUnit("ip-adapter_sd15", FACE, weight=0.8)]), tiny_manager).images
    _untouched(before, unet)
    ref = _diffusers(_sd_pipe(tiny_parts, ipadapters, "ip-adapter_sd15.safetensors"), 0.8, [FACE])
    diff = np.abs(ours - ref).max()
    assert diff <= TOLERANCE, f"IP-Adapter vs diffusers: max abs difference {diff}"
    assert np.abs(ours - plain).max() > 0.02, "the IP-Adapter changed nothing"
    # after it, the same picture as one that never had it, bit for bit; weight 0 is no unit
    assert np.array_equal(render(_request(), tiny_manager).images, plain)
    assert np.array_equal(render(_request(units=[ControlUnit("ip-adapter_sd15", FACE, weight=0)]),
                                 tiny_manager).images, plain)


def test_two_units_basic_and_plus_bin_equal_diffusers_with_two_adapters(tiny_manager, tiny_parts, ipadapters):
    units = [ControlUnit("ip-adapter_sd15", FACE, weight=0.7), ControlUnit("ip-adapter-plus_sd15", STREET, weight=0.9)]
    ours = render(_request(units=units), tiny_manager).images
    pipe = _sd_pipe(tiny_parts, ipadapters, ["ip-adapter_sd15.safetensors", "ip-adapter-plus_sd15.bin"])
    ref = _diffusers(pipe, [0.7, 0.9], [FACE, STREET])
    assert np.abs(ours - ref).max() <= TOLERANCE
    # the plus unit alone is a different picture: both units acted
    alone = render(_request(units=units[:1]), tiny_manager).images
    assert np.abs(ours - alone).max() > 0.02


def test_with_a_controlnet_equals_diffusers_controlnet_pipeline(tiny_manager, tiny_parts, tiny_nets, control_maps,
                                                                ipadapters):
    units = [ControlUnit("cn0", control_maps[0], weight=0.8), ControlUnit("ip-adapter-plus_sd15", FACE, weight=0.6)]
    ours = render(_request(units=units), tiny_manager).images
    pipe = _sd_pipe(tiny_parts, ipadapters, "ip-adapter-plus_sd15.bin", StableDiffusionControlNetPipeline,
                    controlnet=copy.deepcopy(tiny_nets[0]))
    ref = _diffusers(pipe, 0.6, [FACE], image=Image.fromarray(control_maps[0]), controlnet_conditioning_scale=0.8)
    assert np.abs(ours - ref).max() <= TOLERANCE


def test_beside_a_reference_unit_an_adapter_and_a_controlnet_in_a_hires_run(tiny_manager, tiny_parts, control_maps,
                                                                             ipadapters):
    """Every kind of unit in one request, hires fix on: the IP-Adapter acts in the pass its
    hr_option names only, and the backbone is as it was afterwards."""
    from engine.models import ControlModel
    from tests.tiny_models import tiny_adapter
    tiny_manager.add(ControlModel("t2i-sd", tiny_adapter(seed=3), "canny"))
    unet = tiny_parts["unet"]
    before = _state(unet)
    others = [ControlUnit("cn0", control_maps[0], weight=0.7), ControlUnit("t2i-sd", control_maps[1], weight=0.6),
              ControlUnit("reference_only", STREET, weight=0.8)]
    hires = dict(steps=2, enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", strength=0.6)
    seen = []
    handle = unet.register_forward_pre_hook(lambda m, a: seen.append(
        [_scales(p) for p in m.attn_processors.values() if isinstance(p, ip_adapter._Fed)][:1]))
    try:
        low = render(_request(units=[*others, ControlUnit("ip-adapter_sd15", FACE, hr_option="low")], **hires),
                     tiny_manager)
    finally:
        handle.remove()
    _untouched(before, unet)
    without = render(_request(units=others, **hires), tiny_manager)
    assert low.images.shape == without.images.shape == (1, 96, 96, 3)
    assert np.abs(low.images - without.images).max() > 0.02
    # with CFG and a reference unit, each step is a reference pass then the main pass: 2 per step, 2 + 2 steps
    scales = [s[0][0] for s in seen]
    assert scales == [1.0] * 4 + [0.0] * 4, scales


def test_window_sets_the_scale_to_zero_outside_it(tiny_manager, tiny_parts, ipadapters):
    """diffusers has no window: a hook before each UNet call reads the scales the processors hold."""
    unet = tiny_parts["unet"]
    seen = []

    def hook(module, args):
        fed = [p for p in module.attn_processors.values() if isinstance(p, ip_adapter._Fed)]
        seen.append([_scales(p) for p in fed])
    handle = unet.register_forward_pre_hook(hook)
    try:
        steps = []
        units = [ControlUnit("ip-adapter_sd15", FACE, weight=0.8, start=0.5, end=1.0),
                 ControlUnit("ip-adapter-plus_sd15", STREET, weight=0.4, start=0.0, end=0.5)]
        windowed = render(_request(units=units, steps=4), tiny_manager,
                          on_step=lambda i, n, preview: steps.append(i)).images
    finally:
        handle.remove()
    assert len(seen) == 4 and all(len(set(layers)) == 1 for layers in seen), "every layer holds the step's scales"
    assert [layers[0] for layers in seen] == [(0.0, 0.4), (0.0, 0.4), (0.8, 0.0), (0.8, 0.0)]
    whole = render(_request(units=[ControlUnit("ip-adapter_sd15", FACE, weight=0.8)], steps=4), tiny_manager).images
    assert np.abs(windowed - whole).max() > 1e-3


def test_sdxl_unit_picks_the_bigg_encoder_and_equals_diffusers(tmp_path, monkeypatch):
    monkeypatch.setenv("CNSTUDIO_MODELS", str(tmp_path / "models"))
    folder = tmp_path / "models" / "ipadapters"
    folder.mkdir(parents=True)
    parts = tiny_sdxl_parts(seed=0)
    save_encoder(folder / "image_encoder", VIT_H, seed=3)
    save_encoder(folder / "image_encoder_sdxl", VIT_BIGG, seed=4)
    save_safetensors(make_ip_adapter(parts["unet"], VIT_BIGG, seed=5), folder / "ip-adapter_sdxl.safetensors")
    manager = ModelManager(device="cpu", dtype=torch.float32)
    manager.add(Backbone("xl", parts["unet"], parts["vae"], parts["text_encoder"], parts["tokenizer"],
                         parts["scheduler_config"], text_encoder_2=parts["text_encoder_2"],
                         tokenizer_2=parts["tokenizer_2"]))
    before = _state(parts["unet"])
    ours = render(_request("xl", units=[ControlUnit("ip-adapter_sdxl", FACE, weight=0.9)]), manager).images
    _untouched(before, parts["unet"])
    p = copy.deepcopy(parts)
    pipe = StableDiffusionXLPipeline(vae=p["vae"], text_encoder=p["text_encoder"], text_encoder_2=p["text_encoder_2"],
                                     tokenizer=p["tokenizer"], tokenizer_2=p["tokenizer_2"], unet=p["unet"],
                                     scheduler=make_scheduler("unipc", p["scheduler_config"]), add_watermarker=False)
    pipe.load_ip_adapter(str(folder), subfolder="", weight_name="ip-adapter_sdxl.safetensors",
                         image_encoder_folder="image_encoder_sdxl")
    ref = _diffusers(pipe, 0.9, [FACE])
    assert np.abs(ours - ref).max() <= TOLERANCE
    assert np.abs(ours - render(_request("xl"), manager).images).max() > 0.02
    # ip-adapter-plus_sdxl_vit-h reads ViT-H's hidden states: the other folder, by its width
    from engine.loading.ipadapters import find_encoder, read_ip_adapter
    plus = save_safetensors(make_ip_adapter(parts["unet"], VIT_H, plus=True, seed=6),
                            folder / "ip-adapter-plus_sdxl_vit-h.safetensors")
    assert find_encoder(read_ip_adapter(plus.stem, plus)) == folder / "image_encoder"


def test_bad_files_are_refused_naming_folder_file_and_family(tiny_manager, tiny_parts, ipadapters, tmp_path):
    before = _state(tiny_parts["unet"])
    xl_unet = tiny_sdxl_parts(seed=0)["unet"]
    save_safetensors(make_ip_adapter(xl_unet, VIT_H, seed=6), ipadapters / "ip-adapter_sdxl_vit-h.safetensors")
    (ipadapters / "broken.safetensors").write_bytes(b"not a safetensors file")
    lone = ipadapters / "lone"
    lone.mkdir()
    save_safetensors(make_ip_adapter(tiny_parts["unet"], VIT_BIGG, seed=7), lone / "needs_bigg.safetensors")
    cases = (("ip-adapter_sdxl_vit-h", ["ip-adapter_sdxl_vit-h", "SD 1.x", "width 80"]),
             ("broken", ["broken.safetensors", "corrupt"]),
             ("needs_bigg", ["needs_bigg", "projection_dim 28", str(ipadapters / "image_encoder"), "image_encoder"]),
             ("ip-adapter_not_here", ["ip-adapter_not_here", str(ipadapters)]))
    for name, words in cases:
        with pytest.raises(ValueError) as err:
            render(_request(units=[ControlUnit(name, FACE)]), tiny_manager)
        for word in words:
            assert word in str(err.value), (word, str(err.value))
    # an encoder folder that cannot be loaded is named too
    (ipadapters / "image_encoder" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="image_encoder"):
        render(_request(units=[ControlUnit("ip-adapter_sd15", FACE)]), tiny_manager)
    _untouched(before, tiny_parts["unet"])
    assert render(_request(), tiny_manager).images.shape == (1, 64, 64, 3)


def test_a_unit_reads_its_picture_as_it_is(ipadapters, tmp_path):
    unit = ControlUnit("ip-adapter_sd15", FACE, annotator="auto")
    assert unit.annotator is None and unit.image.shape == FACE.shape
    assert ControlUnit.from_dict(unit.to_dict()) == unit and "style_fidelity" not in unit.to_dict()
    with pytest.raises(ValueError, match="no mask"):
        ControlUnit("ip-adapter_sd15", FACE, mask=np.full((64, 48), 255, np.uint8))
    assert sorted(ip_adapter.installed_ip_adapters()) == ["ip-adapter-plus_sd15", "ip-adapter_sd15"]
    # the CLI's image= is the picture itself for such a unit (no annotator runs on it)
    from engine.cli import parse_control
    Image.fromarray(FACE).save(tmp_path / "face.png")
    cli = parse_control(f"model=ip-adapter_sd15,image={tmp_path / 'face.png'},weight=0.5,end=0.7")
    assert cli.annotator is None and np.array_equal(cli.image, FACE) and (cli.weight, cli.end) == (0.5, 0.7)


@pytest.mark.gpu
def test_on_the_gpu_fast_path_ip_adapter_steps_replay_graphs_that_read_each_runs_picture_and_scale(tiny_parts,
                                                                                                   ipadapters, loras):
    """fp16 on CUDA: an IP-Adapter run is captured and equals diffusers; a second run with another
    picture, weight and window replays the same graphs (the buffers and scale tensors they read
    hold the new run's) and equals the eager path; beside a LoRA (its view's graphs) too; the
    plain graph serves the same picture after."""
    p = {k: (copy.deepcopy(v).to("cuda", torch.float16) if isinstance(v, torch.nn.Module) else v)
         for k, v in tiny_parts.items()}
    managers = [ModelManager(device="cuda", dtype=torch.float16, fast=fast) for fast in (True, False)]
    for m in managers:
        m.add(Backbone("tiny", p["unet"], p["vae"], p["text_encoder"], p["tokenizer"], p["scheduler_config"]))
    manager, eager = managers
    plain = render(_request(), manager).images
    captured = manager.predictor.captures
    ours = render(_request(units=[ControlUnit("ip-adapter-plus_sd15", FACE, weight=0.8)]), manager).images
    assert manager.predictor.captures == captured + 1 and manager.predictor.eager_calls == 0
    pipe = _sd_pipe(tiny_parts, ipadapters, "ip-adapter-plus_sd15.bin").to("cuda", torch.float16)
    assert np.abs(ours - _diffusers(pipe, 0.8, [FACE])).max() <= TOLERANCE and np.abs(ours - plain).max() > 0.02
    full = render(_request(units=[ControlUnit("ip-adapter-plus_sd15", STREET, weight=0.5)]), manager).images
    assert manager.predictor.captures == captured + 1, "a new picture and weight replay the same graph"
    assert np.abs(full - render(_request(units=[ControlUnit("ip-adapter-plus_sd15", STREET, weight=0.5)]),
                                eager).images).max() <= TOLERANCE
    assert np.abs(full - ours).max() > 0.02, "the graph still read the first run's picture or scale"
    windowed = _request(units=[ControlUnit("ip-adapter-plus_sd15", STREET, weight=0.5, end=0.5)], steps=4)
    assert np.abs(render(windowed, manager).images - render(windowed, eager).images).max() <= TOLERANCE
    for weight in (0.8, 0.4):
        both = _request(units=[ControlUnit("ip-adapter-plus_sd15", FACE, weight=weight)], loras=[("ink", weight)])
        ours = render(both, manager).images
        assert np.abs(ours - render(both, eager).images).max() <= TOLERANCE
        assert np.abs(ours - render(both.replace(loras=()), eager).images).max() > 0.02, "the LoRA changed nothing"
    assert manager.predictor.eager_calls == 0
    assert np.array_equal(render(_request(), manager).images, plain)


def test_on_the_fast_path_a_unit_runs_on_graphs_that_a_new_picture_weight_or_window_reuses(tiny_parts, ipadapters):
    """The fast path's bookkeeping on the CPU (a "graph" that runs the step again on its static
    inputs): IP-Adapter steps are captured, keyed by the processor set and which units act; a
    new picture and weight are copied into the same buffers (no new capture) and give the eager
    path's picture; a window adds one graph per set of acting units; the plain graph is untouched."""
    eager, fast = _managers(tiny_parts)
    plain = render(_request(), fast).images
    plain_graphs = fast.predictor.captures
    first = _request(units=[ControlUnit("ip-adapter-plus_sd15", FACE, weight=0.8)])
    assert np.abs(render(first, fast).images - render(first, eager).images).max() <= 1e-6
    one_unit = fast.predictor.captures
    assert one_unit == plain_graphs + 1
    second = _request(units=[ControlUnit("ip-adapter-plus_sd15", STREET, weight=0.5)])
    ours = render(second, fast).images
    assert fast.predictor.captures == one_unit, "a new picture or weight needs no new graph"
    assert np.abs(ours - render(second, eager).images).max() <= 1e-6
    assert np.abs(ours - render(first, eager).images).max() > 0.02, "the second picture changed nothing"
    windowed = _request(units=[ControlUnit("ip-adapter-plus_sd15", FACE, weight=0.8, end=0.5)], steps=4)
    assert np.abs(render(windowed, fast).images - render(windowed, eager).images).max() <= 1e-6
    assert fast.predictor.captures == one_unit + 1, "steps past the window have a graph without the unit"
    assert np.array_equal(render(_request(), fast).images, plain)


def test_beside_loras_on_the_fast_path_the_units_processors_go_on_the_loras_view(tiny_parts, ipadapters, loras):
    """With LoRAs the run calls a LoRA view of the UNet (engine/lora_slots.py): the IP-Adapter's
    processors go on the view for the run, so both act on the fast path and equal the eager path
    (LoRAs in the UNet, processors on it); a weight change of either replays the same graph;
    afterwards the UNet and the view hold their own processors and the plain picture is unchanged."""
    eager, fast = _managers(tiny_parts)
    unet = tiny_parts["unet"]
    before, own = _state(unet), dict(unet.attn_processors)
    plain = render(_request(), fast).images
    plain_graphs = fast.predictor.captures
    req = _request(units=[ControlUnit("ip-adapter_sd15", FACE, weight=0.8)], loras=[("ink", 0.8)])
    a, b = render(req, eager).images, render(req, fast).images
    assert np.abs(a - b).max() <= 2e-5, float(np.abs(a - b).max())
    captured = fast.predictor.captures
    assert captured == plain_graphs + 1 and fast.predictor.eager_calls == 0
    changed = req.replace(units=[ControlUnit("ip-adapter_sd15", STREET, weight=0.5)], loras=[("ink", 0.4)])
    assert np.abs(render(changed, fast).images - render(changed, eager).images).max() <= 2e-5
    assert fast.predictor.captures == captured, "a new picture and weights replay the same graph"
    for alone in (req.replace(units=()), req.replace(loras=())):
        assert np.abs(render(alone, eager).images - a).max() > 0.02, "the LoRA or the IP-Adapter changed nothing"
    views = [view.module for per_module in fast.lora_views._views.values() for view in per_module.values()]
    unet_views = [m for m in views if hasattr(m, "attn_processors")]
    assert unet_views and not any(isinstance(p, ip_adapter._Fed) for m in unet_views for p in m.attn_processors.values())
    assert all(unet.attn_processors[k] is v for k, v in own.items())
    _untouched(before, unet)
    assert np.array_equal(render(_request(), fast).images, plain)