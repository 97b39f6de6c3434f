"""LoRAs on the fast path (issue 27, engine/lora_slots.py), on the CPU: the fast path's own
bookkeeping (GraphedPredictor's keys, static inputs and cache) with a "graph" that runs the step
again on its static inputs. A weight change and a swap to a LoRA of the same (or a lower) rank
keep the view, its tensors and its graph, and the text encoder's view too; the pictures equal the eager LoRA path's; a request
without LoRAs afterwards is the never-LoRA picture, bit for bit. The real CUDA graphs and
torch.compile are tested the same way on the GPU (tests/engine/test_fast_gpu.py)."""
import logging

import numpy as np
import pytest
import torch

from engine import GenerationRequest
from engine.fast import GraphedPredictor, _Graph
from engine.generate import render
from engine.manager import ModelManager
from engine.models import Backbone
from tests.engine.lora_files import make_lora, save_diffusers, save_kohya

FP32 = 2e-5      # the slot's padded matmuls add zeros in another order than the eager path's


class _Replay:
    """Stands in for a CUDA graph on the CPU: replaying runs the captured step function again."""

    def __init__(self, run, out):
        self.run, self.out = run, out

    def replay(self):
        self.out.copy_(self.run())


class CpuGraphs(GraphedPredictor):
    def __init__(self):
        super().__init__(cudnn_benchmark=False, streams=False)
        self.forgotten = []

    def _capture(self, static, warm=True):
        run, (sx, st, stext, scfg, units, compiled, sadded) = static
        out = run()
        self.captures += 1
        return _Graph(_Replay(run, out), sx, st, stext, scfg, units, out, compiled, sadded)

    def forget(self, module):
        self.forgotten.append(module)
        super().forget(module)


def _locon(parts, seed, rank=4):
    """make_lora's attention layers plus LoCon's: the resnets' 3x3 convs and the 1x1 proj_in convs."""
    layers = make_lora(parts, seed=seed, rank=rank)
    g = torch.Generator().manual_seed(seed)
    for name, module in parts["unet"].named_modules():
        if isinstance(module, torch.nn.Conv2d) and name.endswith(("resnets.0.conv1", "proj_in")):
            out_c, in_c, kh, kw = module.weight.shape
            layers[("unet", name)] = (torch.randn(rank, in_c, kh, kw, generator=g) * (0.3 / (in_c * kh * kw) ** 0.5),
                                      torch.randn(out_c, rank, 1, 1, generator=g) * (1.2 / rank ** 0.5), 2.0)
    return layers


@pytest.fixture()
def loras(tmp_path, monkeypatch, tiny_parts):
    monkeypatch.setenv("CNSTUDIO_MODELS", str(tmp_path / "models"))
    folder = tmp_path / "models" / "loras"
    folder.mkdir(parents=True)
    save_kohya(_locon(tiny_parts, seed=11), folder / "ink.safetensors")
    save_kohya(make_lora(tiny_parts, seed=13, rank=4, alpha=1.0), folder / "moss.safetensors")     # same rank
    save_diffusers(_locon(tiny_parts, seed=12, rank=2), folder / "small.safetensors")              # lower rank
    cross_only = {k: v for k, v in make_lora(tiny_parts, seed=14, rank=4).items() if "attn2" in k[1] or k[0] != "unet"}
    save_kohya(cross_only, folder / "cross.safetensors")                                            # fewer layers
    save_kohya(make_lora(tiny_parts, seed=15, rank=8), folder / "wide.safetensors")                # higher rank
    words = {k: v for k, v in make_lora(tiny_parts, seed=16, rank=4, strength=0.6).items() if k[0] != "unet"}
    save_kohya(words, folder / "words.safetensors")                                                 # encoder only
    return folder


def _managers(parts):
    out = []
    for predictor in (None, CpuGraphs()):
        m = ModelManager(device="cpu", dtype=torch.float32, predictor=predictor)
        m.add(Backbone("tiny", parts["unet"], parts["vae"], parts["text_encoder"], parts["tokenizer"],
                       parts["scheduler_config"]))
        out.append(m)
    return out


def _req(*loras):
    return GenerationRequest(backbone="tiny", prompt="a red star", negative_prompt="blurry", width=64, height=64,
                             steps=1, seed=5, sampler="unipc", loras=list(loras))


def _slot_tensors(view):
    tensors = [*view.scales, *view.base]
    for layers in view.layers:
        for layer in layers.values():
            tensors += [p for p in layer.lora_A.parameters()] + [p for p in layer.lora_B.parameters()]
    return [(t.data_ptr(), tuple(t.shape)) for t in tensors]


def test_weight_change_and_swaps_that_fit_keep_the_view_and_its_graph(tiny_parts, loras, caplog):
    eager, fast = _managers(tiny_parts)
    graphs = fast.predictor
    never = render(_req(), fast).images
    plain_captures = graphs.captures
    assert plain_captures >= 1

    def both(*chosen):
        a, b = render(_req(*chosen), eager).images, render(_req(*chosen), fast).images
        assert np.abs(a - b).max() <= FP32, (chosen, float(np.abs(a - b).max()))
        assert np.abs(b - never).max() > 0.02, f"{chosen} changed nothing; parity would prove nothing"
        return b

    first = both(("ink", 0.8))
    view = fast.lora_views._views[tiny_parts["unet"]][1]
    words = fast.lora_views._views[tiny_parts["text_encoder"]][1]     # the text encoder's view
    captures, tensors = graphs.captures, _slot_tensors(view)
    assert captures > plain_captures, "the LoRA view got no graph of its own"
    # a weight change, a same-rank swap, a lower-rank swap, a LoRA on fewer layers: same view, same graph
    reweighted = both(("ink", 0.3))
    assert np.abs(reweighted - first).max() > 0.01, "the new weight did not reach the graph"
    assert view.fills == 1, "a weight change copied the LoRA's tensors again"
    swapped = both(("moss", 0.8))
    assert np.abs(swapped - first).max() > 0.01, "the swapped LoRA did not reach the graph"
    both(("small", 1.0))
    both(("cross", 1.2))
    assert graphs.captures == captures, "a weight change or a swap that fits captured a new graph"
    assert fast.lora_views._views[tiny_parts["unet"]][1] is view and _slot_tensors(view) == tensors, \
        "the slot tensors a captured graph reads were replaced"
    assert fast.lora_views._views[tiny_parts["text_encoder"]][1] is words and words.fills == 4, \
        "the text encoder's slots were not reused by the weight change and the swaps"
    assert fast.lora_views.layouts == 2      # one layout of the UNet, one of the text encoder
    # the backbone's own graph serves a request without LoRAs again, and makes the never-LoRA picture
    assert np.array_equal(render(_req(), fast).images, never)
    assert graphs.captures == captures

    # a higher rank does not fit: a larger layout, a new graph, and the old view's graphs forgotten
    with caplog.at_level(logging.INFO, logger="engine.lora_slots"):
        both(("wide", 0.7))
    assert "a larger LoRA slot layout" in caplog.text and "ranks 8" in caplog.text
    assert graphs.captures > captures and graphs.forgotten == [view.module, words.module]
    assert not any(graphs._uses(key, graphs._tokens.get(view.module, -1)) for key in graphs._graphs)
    grown = fast.lora_views._views[tiny_parts["unet"]][1]
    after = graphs.captures
    again = render(_req(("ink", 0.8)), fast).images        # rank 4 fits the grown slot, padded to 8
    assert graphs.captures == after and fast.lora_views._views[tiny_parts["unet"]][1] is grown
    assert np.abs(again - first).max() <= FP32


def test_two_loras_share_a_two_slot_view_and_the_backbone_stays_untouched(tiny_parts, loras):
    eager, fast = _managers(tiny_parts)
    unet, encoder = tiny_parts["unet"], tiny_parts["text_encoder"]
    before = {m: {k: v.clone() for k, v in m.state_dict().items()} for m in (unet, encoder)}
    names = {m: [n for n, _ in m.named_modules()] for m in (unet, encoder)}
    never = render(_req(), fast).images
    a = render(_req(("ink", 0.8), ("small", -0.6)), eager).images
    b = render(_req(("ink", 0.8), ("small", -0.6)), fast).images
    assert np.abs(a - b).max() <= FP32
    captures = fast.predictor.captures
    b2 = render(_req(("moss", 0.5), ("small", 0.4)), fast).images
    assert np.abs(b2 - render(_req(("moss", 0.5), ("small", 0.4)), eager).images).max() <= FP32
    assert fast.predictor.captures == captures
    one = render(_req(("ink", 0.8)), fast).images            # one LoRA: a view of its own, kept beside
    assert set(fast.lora_views._views[unet]) == {1, 2}
    assert np.abs(one - render(_req(("ink", 0.8)), eager).images).max() <= FP32
    # the locked UNet and text encoder were never wrapped: same layers, same weights, same picture
    for m in (unet, encoder):
        assert [n for n, _ in m.named_modules()] == names[m], f"{type(m).__name__} carries LoRA layers"
        assert all(torch.equal(before[m][k], v) for k, v in m.state_dict().items())
    assert np.array_equal(render(_req(), fast).images, never)


def test_a_text_encoder_only_lora_runs_on_the_unets_own_graph(tiny_parts, loras):
    eager, fast = _managers(tiny_parts)
    never = render(_req(), fast).images
    captures = fast.predictor.captures
    a, b = render(_req(("words", 1.0)), eager).images, render(_req(("words", 1.0)), fast).images
    assert np.abs(b - never).max() > 0.02, "the encoder-only LoRA changed nothing"
    assert np.abs(a - b).max() <= FP32
    assert tiny_parts["unet"] not in fast.lora_views._views, "a LoRA without UNet layers made a UNet view"
    assert fast.predictor.captures == captures, "the plain UNet's graph was not reused"


def test_evicting_the_backbone_forgets_its_views(tiny_parts, loras):
    _, fast = _managers(tiny_parts)
    render(_req(("ink", 0.8)), fast)
    view = fast.lora_views._views[tiny_parts["unet"]][1]
    fast.evict("tiny")
    assert view.module in fast.predictor.forgotten and tiny_parts["unet"] not in fast.lora_views._views
    assert tiny_parts["text_encoder"] not in fast.lora_views._views
    assert not fast.predictor._graphs
