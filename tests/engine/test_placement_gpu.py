"""Placement and life on a real GPU: eviction with the fast path on frees the model's memory,
and two threads with offload sharing a net both finish with the right pictures while `.to()`
really moves the weights. Figures are printed (run with -s)."""
import gc
import weakref

import numpy as np
import pytest
import torch

from engine import ControlUnit, GenerationRequest, generate
from engine.manager import ModelManager
from engine.models import Backbone, ControlModel
from tests.engine.overlapping import run_overlapping
from tests.tiny_models import tiny_backbone_parts, tiny_controlnet

pytestmark = pytest.mark.gpu
MiB = 2**20


def _add(manager, parts, nets):
    manager.add(Backbone("tiny", parts["unet"], parts["vae"], parts["text_encoder"], parts["tokenizer"],
                         parts["scheduler_config"]))
    for i, net in enumerate(nets):
        manager.add(ControlModel(f"cn{i}", net))


def _req(control_maps, seed=3, units=2):
    return GenerationRequest(backbone="tiny", prompt="a red star", width=64, height=64, steps=6, seed=seed,
                             units=[ControlUnit(f"cn{i}", control_maps[i]) for i in range(units)])


def test_evicting_with_the_fast_path_on_frees_the_models_memory(control_maps):
    gc.collect()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    parts = tiny_backbone_parts(0)
    nets = [tiny_controlnet(parts["unet"], seed=s) for s in (1, 2)]
    for m in (parts["unet"], parts["vae"], parts["text_encoder"], *nets):
        m.to("cuda", torch.float16)
    manager = ModelManager(device="cuda", dtype=torch.float16, fast=True, compile=True)
    _add(manager, parts, nets)
    generate(_req(control_maps), manager=manager, save=False)
    manager.predictor.wait_compiled()
    generate(_req(control_maps), manager=manager, save=False)    # replays the compiled graphs
    assert manager.predictor.captures >= 1
    torch.cuda.synchronize()
    loaded = torch.cuda.memory_allocated()
    refs = [weakref.ref(parts["unet"])] + [weakref.ref(n) for n in nets]
    del parts, nets, m
    for source in ("tiny", "cn0", "cn1"):
        assert manager.evict(source)
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    after = torch.cuda.memory_allocated()
    print(f"allocated: before {base / MiB:.1f} MiB, loaded and graphed {loaded / MiB:.1f} MiB, "
          f"after eviction {after / MiB:.1f} MiB")
    assert all(r() is None for r in refs), "an evicted model is still referenced"
    assert after - base <= 0.05 * (loaded - base), "eviction left most of the models' memory allocated"


def test_two_threads_with_offload_sharing_a_net_both_get_the_right_pictures(control_maps):
    parts = tiny_backbone_parts(0)
    nets = [tiny_controlnet(parts["unet"], seed=s) for s in (1, 2)]
    for m in (parts["unet"], parts["vae"], parts["text_encoder"]):
        m.to("cuda", torch.float16)
    for n in nets:
        n.to(torch.float16)   # on the CPU: offload places them
    resident = ModelManager(device="cuda", dtype=torch.float16, fast=False)
    offload = ModelManager(device="cuda", dtype=torch.float16, offload=True)
    assert offload.predictor is None
    _add(offload, parts, nets)
    reqs = [_req(control_maps, seed=s) for s in (0, 1)]

    seen = []
    hooks = [n.conv_in.register_forward_pre_hook(lambda mod, _: seen.append(mod.weight.device.type)) for n in nets]
    try:
        results = run_overlapping(reqs, offload, timeout=120)
    finally:
        for h in hooks:
            h.remove()
    assert results[0] is not None and results[1] is not None
    assert seen and set(seen) == {"cuda"}, "a shared net ran while it was on the CPU"
    assert all(next(n.parameters()).device.type == "cpu" for n in nets), "idle nets go back to the CPU"

    for n in nets:
        n.to("cuda")
    _add(resident, parts, nets)
    for r, req in zip(results, reqs):
        want = np.asarray(generate(req, manager=resident, save=False).images[0]).astype(int)
        diff = np.abs(np.asarray(r.images[0]).astype(int) - want)
        print(f"offload vs resident: max {diff.max()} levels")
        assert diff.max() <= 1
