"""How units act: the window rule, soft-injection scales, masks, the embedding computed once."""
import contextlib

import numpy as np
import pytest
import torch

from engine import ControlUnit, GenerationRequest
from engine.control import in_window, residual_scales
from engine.generate import render
from annotators.image import fit as resize


@contextlib.contextmanager
def counting(module):
    calls = []
    handle = module.register_forward_hook(lambda *a: calls.append(1))
    try:
        yield calls
    finally:
        handle.remove()


def _req(units, steps=4, **kw):
    return GenerationRequest(backbone="tiny", prompt="a star", units=tuple(units), width=64, height=64,
                             steps=steps, seed=7, **kw)


# (steps, start, end) -> the steps diffusers runs the ControlNet at. Worked out by hand from
# pipeline_controlnet.py's keep rule, `1.0 - float(i / len(timesteps) < s or (i + 1) / len(timesteps) > e)`,
# not by calling any code: e.g. 10 steps, 0.2-0.5: i/10 >= 0.2 gives i >= 2, (i+1)/10 <= 0.5 gives i <= 4.
KEPT_STEPS = [
    (10, 0.0, 1.0, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
    (10, 0.2, 0.5, [2, 3, 4]),
    (10, 0.35, 0.95, [4, 5, 6, 7, 8]),
    (10, 0.0, 0.1, [0]),
    (10, 0.3, 0.7, [3, 4, 5, 6]),        # both bounds land exactly on a step: kept (strict < and >)
    (20, 0.0, 0.5, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
    (8, 0.5, 1.0, [4, 5, 6, 7]),
    (7, 0.1, 0.9, [1, 2, 3, 4, 5]),
    (4, 0.25, 0.75, [1, 2]),
    (3, 0.0, 0.5, [0]),
    (3, 0.4, 0.6, []),                   # a window narrower than a step keeps none
]


@pytest.mark.parametrize("steps, start, end, kept", KEPT_STEPS)
def test_window_keeps_the_steps_diffusers_keeps(steps, start, end, kept):
    assert [i for i in range(steps) if in_window(i, steps, start, end)] == kept


def test_unit_outside_its_window_is_not_called(tiny_manager, tiny_nets, control_maps):
    units = [ControlUnit("cn0", control_maps[0], start=0.5, end=1.0),
             ControlUnit("cn1", control_maps[1], start=0.0, end=0.25)]
    with counting(tiny_nets[0].conv_in) as a, counting(tiny_nets[1].conv_in) as b, \
            counting(tiny_nets[0].controlnet_cond_embedding) as emb:
        render(_req(units, steps=4), tiny_manager)
    assert (len(a), len(b)) == (2, 1)      # steps 2,3 and step 0 only
    assert len(emb) == 1                     # the map is embedded once per generation, not per step


def test_zero_weight_unit_costs_nothing_and_changes_nothing(tiny_manager, tiny_nets, control_maps):
    plain = render(_req([]), tiny_manager).images
    with counting(tiny_nets[0].conv_in) as calls:
        zero = render(_req([ControlUnit("cn0", control_maps[0], weight=0.0)]), tiny_manager).images
    assert calls == [] and np.array_equal(plain, zero)


def test_soft_injection_scales():
    s = residual_scales(13, 1.0, "prompt")
    assert s[-1] == pytest.approx(1.0) and s[0] == pytest.approx(0.1)
    assert s[11] / s[12] == pytest.approx(0.8254, abs=1e-4)          # A1111's 0.825 per level
    assert torch.equal(residual_scales(5, 0.5, "balanced"), torch.full((5,), 0.5))
    assert torch.allclose(residual_scales(4, 2.0, "control"), 2.0 * torch.logspace(-1, 0, 4))


def test_modes_differ_and_control_mode_runs_on_the_conditional_half_only(tiny_manager, tiny_nets, control_maps):
    out, batches = {}, {}
    for mode in ("balanced", "prompt", "control"):
        seen = []
        handle = tiny_nets[2].conv_in.register_forward_hook(lambda m, args, y: seen.append(args[0].shape[0]))
        try:
            out[mode] = render(_req([ControlUnit("cn2", control_maps[2], mode=mode)], steps=2), tiny_manager).images
        finally:
            handle.remove()
        batches[mode] = set(seen)
    assert batches == {"balanced": {2}, "prompt": {2}, "control": {1}}
    assert np.abs(out["balanced"] - out["prompt"]).max() > 1e-3
    assert np.abs(out["prompt"] - out["control"]).max() > 1e-3


def test_mask_scales_each_residual_at_its_resolution(tiny_nets, control_maps):
    from engine.control import prepare_unit, unit_residuals
    left = np.zeros((64, 64), np.uint8); left[:, :32] = 255
    masked = prepare_unit(ControlUnit("cn0", control_maps[0], mask=left), tiny_nets[0], 64, 64, "cpu", torch.float32)
    free = prepare_unit(ControlUnit("cn0", control_maps[0]), tiny_nets[0], 64, 64, "cpu", torch.float32)
    x, text = torch.randn(2, 4, 32, 32), torch.randn(2, 77, 32)
    with torch.no_grad():
        for r_mask, r_free in zip(unit_residuals(masked, x, 500, text, True), unit_residuals(free, x, 500, text, True)):
            w = r_mask.shape[-1]
            assert r_mask[..., : w // 2 - 1].abs().max() > 0                       # kept where painted
            assert r_mask[..., w // 2 + 1:].abs().max() == 0                        # silent elsewhere
            assert torch.allclose(r_mask[..., : w // 2 - 1], r_free[..., : w // 2 - 1])


def test_map_of_another_size_is_fitted_by_resize_mode(tiny_manager):
    wide = np.zeros((32, 128, 3), np.uint8); wide[:, 60:68] = 255
    assert resize(wide, 64, 64, "crop").shape == (64, 64, 3)
    assert resize(wide, 64, 64, "fill")[:16].max() == 0          # padded with black above and below
    assert resize(wide, 64, 64, "just_resize")[:, 30:34].mean() > 200
    outs = [render(_req([ControlUnit("cn0", wide, resize_mode=m)]), tiny_manager).images for m in ("crop", "fill")]
    assert outs[0].shape == (1, 64, 64, 3) and np.abs(outs[0] - outs[1]).max() > 1e-3
