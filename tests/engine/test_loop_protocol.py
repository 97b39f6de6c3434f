"""The loop's protocol: each model evaluation reports the latent and the denoised estimate x0,
which previews and an interrupted result decode."""
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import GenerationRequest, generate
from engine import denoise as loop
from engine.samplers import SAMPLERS, make_scheduler

SD_SCHEDULER = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
                "beta_schedule": "scaled_linear", "steps_offset": 1, "timestep_spacing": "leading"}
MULTISTEP = ("unipc", "dpmpp_2m", "dpmpp_2m_karras")


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("sampler", [s for s in SAMPLERS if s not in MULTISTEP])
def test_the_estimate_is_the_schedulers_own_x0(sampler, prediction_type):
    """For every evaluation of the run (both of Heun's), against the scheduler's pred_original_sample."""
    scheduler = make_scheduler(sampler, SD_SCHEDULER | {"prediction_type": prediction_type})
    scheduler.set_timesteps(6)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=g) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        scheduler.scale_model_input(x, t)
        out = torch.randn(x.shape, generator=g)
        ours = loop.denoised_estimate(scheduler, out, t, x)
        step = scheduler.step(out, t, x, generator=g) if "generator" in scheduler.step.__code__.co_varnames \
            else scheduler.step(out, t, x)
        assert torch.allclose(ours, step.pred_original_sample, atol=1e-5, rtol=1e-5)
        x = step.prev_sample


@pytest.mark.parametrize("sampler", MULTISTEP)
def test_multistep_solvers_report_the_x0_they_keep(sampler, tiny_manager):
    """UniPC and DPM++ convert each evaluation to x0 themselves: the loop reports that, and it is
    the clean latent that the noise prediction implies at that sigma (x = x0 + sigma * eps, scaled)."""
    seen = []
    real = loop.predict_noise

    def predict(*args, **kw):
        seen.append(real(*args, **kw))
        return seen[-1]

    steps = []
    request = GenerationRequest(backbone="tiny", width=64, height=64, steps=4, seed=2, sampler=sampler, cfg_scale=1.0)
    backbone = tiny_manager.backbone("tiny")
    scheduler = make_scheduler(sampler, backbone.scheduler_config)
    scheduler.set_timesteps(4)
    x = [None]
    loop.denoise(backbone, [], request, 64, 64, [2], callback=lambda s: steps.append((x[0], s)) or x.__setitem__(0, s.x),
                 predict=predict)
    for i, ((before, step), eps) in enumerate(zip(steps[1:], seen[1:]), start=1):
        sigma = scheduler.sigmas[i]
        alpha = 1 / (sigma ** 2 + 1) ** 0.5
        assert torch.allclose(step.denoised, (before - sigma * alpha * eps) / alpha, atol=1e-4)


def _high_frequency(images: np.ndarray) -> float:
    """Mean absolute difference of neighbouring pixels: large for noise, small for a picture."""
    a = np.asarray(images, np.float32)
    return float(np.abs(np.diff(a, axis=1)).mean() + np.abs(np.diff(a, axis=2)).mean())


DEMO = Path(__file__).resolve().parents[2] / "models" / "demo" / "backbone" / "model_index.json"


@pytest.mark.skipif(not DEMO.is_file(), reason="needs the embedded demo model (models/demo)")
def test_an_interrupted_picture_is_the_decoded_estimate_not_noise(monkeypatch):
    from engine.manager import ModelManager
    manager = ModelManager(device="cpu", dtype=torch.float32)
    request = GenerationRequest(prompt="a red circle", steps=20, seed=4, sampler="euler")
    kept = []
    real_make = loop.make_scheduler

    def recording(name, config):
        scheduler = real_make(name, config)
        step = scheduler.step

        def recorded(*args, **kw):
            out = step(*args, **{**kw, "return_dict": True})
            kept.append(out.pred_original_sample)
            return out if kw.get("return_dict", True) else (out.prev_sample,)
        scheduler.step = recorded
        return scheduler

    monkeypatch.setattr(loop, "make_scheduler", recording)
    stopped = generate(request, on_step=lambda step, total, preview: step < 4, manager=manager, save=False)
    finished = generate(request, manager=manager, save=False)
    assert stopped.interrupted and len(kept) == 4 + 20
    backbone = manager.backbone("demo")
    x0 = loop.decode(backbone, kept[3], request, 128, 128)
    picture = np.asarray(stopped.images[0], np.float32) / 255
    assert np.abs(picture - x0[0]).max() <= 1 / 255 + 1e-6
    noise = loop.decode(backbone, torch.randn(kept[0].shape, generator=torch.Generator().manual_seed(4))
                        * 14.6, request, 128, 128)
    done = np.asarray(finished.images[0], np.float32)[None] / 255
    assert abs(_high_frequency(picture[None]) - _high_frequency(done)) < 0.5 * abs(_high_frequency(noise) - _high_frequency(done))
