"""The manager owns placement and life: eviction leaves nothing of a model behind in the fast
path's caches, and offload is reference-counted, so threads sharing a net never move it from
under each other. (On the GPU, with real memory moves: test_placement_gpu.py.)"""
import gc
import weakref

import numpy as np
import torch

from engine import ControlUnit, GenerationRequest, generate
from engine.control import prepare_unit
from engine.fast import GraphedPredictor
from engine.manager import ModelManager
from engine.models import Backbone, ControlModel
from tests.engine.overlapping import run_overlapping
from tests.tiny_models import save_backbone_folder, tiny_controlnet


def _what_a_generation_leaves(predictor, unet, units):
    """The fast path's state after a generation with compile on, built without CUDA: the
    compiled UNet and the capture arguments waiting for the background compile."""
    x, t, text = torch.zeros(1, 4, 8, 8), torch.tensor(1), torch.zeros(1, 77, unet.config.cross_attention_dim)
    predictor._static(unet, units, x, t, text, None, compiled=True)
    predictor._pending[predictor._key(unet, units, x, t, text, None)] = (unet, units, x, t, text, None)


def test_evicting_models_with_the_fast_path_on_leaves_no_reference_to_them(tiny_parts, tiny_nets, tmp_path,
                                                                          control_maps):
    for name in ("a", "b"):
        save_backbone_folder(tiny_parts, tmp_path / name)
    for i in range(2):
        tiny_nets[i].save_pretrained(tmp_path / f"control_tiny_scribble_{i}")
    m = ModelManager(device="cpu", dtype=torch.float32, max_backbones=1, max_controlnets=1)
    m.predictor = GraphedPredictor(compile=True, streams=False)   # built explicitly: CPU has no fast path
    backbone = m.backbone(str(tmp_path / "a"))
    net = m.controlnet(str(tmp_path / "control_tiny_scribble_0")).net
    unit = prepare_unit(ControlUnit("x", control_maps[0]), net, 16, 16, "cpu", torch.float32)
    _what_a_generation_leaves(m.predictor, backbone.unet, [unit])
    unet_ref, net_ref = weakref.ref(backbone.unet), weakref.ref(net)
    del backbone, net, unit

    m.backbone(str(tmp_path / "b"))                                # evicts backbone a
    m.controlnet(str(tmp_path / "control_tiny_scribble_1"))        # evicts ControlNet 0
    gc.collect()
    assert unet_ref() is None, "the evicted UNet is still referenced (by the fast path's caches?)"
    assert net_ref() is None, "the evicted ControlNet is still referenced (by the fast path's caches?)"
    assert not m.predictor._pending and not m.predictor._compiled_unets


def test_fast_path_keys_never_reuse_a_freed_models_number():
    predictor = GraphedPredictor(streams=False)
    seen = set()
    for _ in range(20):   # freed at once, so CPython is free to give the next one the same address
        seen.add(predictor._token(torch.nn.Linear(2, 2)))
    assert len(seen) == 20


def test_two_threads_sharing_a_net_with_offload_keep_it_placed(tiny_parts, control_maps):
    """A stand-in device: the net's .to() only records where it was sent, `idle_device` is a
    name that differs from the compute device, and every forward checks the net is placed."""
    p = tiny_parts
    net = tiny_controlnet(p["unet"], seed=5)
    plain = ModelManager(device="cpu", dtype=torch.float32)
    m = ModelManager(device="cpu", dtype=torch.float32, offload=True)
    m.idle_device = torch.device("meta")
    for mgr in (plain, m):
        mgr.add(Backbone("tiny", p["unet"], p["vae"], p["text_encoder"], p["tokenizer"], p["scheduler_config"]))
        mgr.add(ControlModel("shared", net))
    reqs = [GenerationRequest(backbone="tiny", prompt="a star", width=64, height=64, steps=4, seed=s,
                              units=[ControlUnit("shared", control_maps[s])]) for s in (0, 1)]
    serial = [np.asarray(generate(r, manager=plain, save=False).images[0]) for r in reqs]

    where = {"at": "idle"}
    seen = []
    net.to = lambda target, *a, **k: where.update(at="device" if torch.device(target) == m.device else "idle") or net
    hooks = [mod.register_forward_pre_hook(lambda *_: seen.append(where["at"]))
             for mod in (net.conv_in, net.controlnet_cond_embedding)]
    try:
        results = run_overlapping(reqs, m, timeout=60)
    finally:
        for h in hooks:
            h.remove()
        del net.to
    assert results[0] is not None and results[1] is not None
    assert seen and all(s == "device" for s in seen), f"the net ran while sent away: {seen}"
    assert where["at"] == "idle", "after both generations the net waits on the idle device again"
    for r, want in zip(results, serial):
        assert np.array_equal(np.asarray(r.images[0]), want)
    assert not np.array_equal(serial[0], serial[1])
