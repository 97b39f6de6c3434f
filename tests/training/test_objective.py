"""Training follows the backbone's prediction type, and the demo trainer's EMA is diffusers'
EMAModel whose checkpointed state loads back."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import demo  # noqa: F401  (registers the world dataset the trainer reads)
from demo import backbone as demo_backbone
from engine.training.controlnet import TrainConfig, load_parts, train


def _alphas_cumprod(cfg: dict) -> np.ndarray:
    """By hand from the schedule's betas (the demo's is "linear")."""
    assert cfg["beta_schedule"] == "linear"
    betas = np.linspace(cfg["beta_start"], cfg["beta_end"], cfg["num_train_timesteps"], dtype=np.float64)
    return np.cumprod(1.0 - betas)


def test_a_v_prediction_backbone_trains_toward_the_velocity(tiny_world_backbone, tmp_path):
    parts = load_parts(str(tiny_world_backbone), "cpu")
    parts["scheduler_config"] = {**dict(parts["scheduler_config"]), "prediction_type": "v_prediction"}
    vae, unet = parts["vae"], parts["unet"]
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    g = torch.Generator().manual_seed(5)
    clean = {}

    def encode(px):   # fixed latents, so the test knows x0 exactly
        shape = (px.shape[0], vae.config.latent_channels, px.shape[2] // scale, px.shape[3] // scale)
        clean["x0"] = torch.randn(shape, generator=g)
        return SimpleNamespace(latent_dist=SimpleNamespace(sample=lambda gen: clean["x0"]))

    vae.encode = encode
    seen = {}
    hook = unet.register_forward_hook(lambda m, args, out: seen.update(noisy=args[0].detach(), t=args[1].detach(),
                                                                       pred=out[0].detach()))
    try:
        cfg = TrainConfig(backbone=str(tiny_world_backbone), output_dir=str(tmp_path / "run"), kind="canny",
                          batch_size=2, steps=1, cpu=True, log_every=1, checkpoint_every=100)
        train(cfg, parts=parts)
    finally:
        hook.remove()
        del vae.encode
    loss = json.loads((tmp_path / "run" / "summary.json").read_text())["loss"]

    a = torch.tensor(_alphas_cumprod(parts["scheduler_config"]), dtype=torch.float64)[seen["t"]].view(-1, 1, 1, 1)
    x0 = clean["x0"].double() * vae.config.scaling_factor
    noise = (seen["noisy"].double() - a.sqrt() * x0) / (1 - a).sqrt()
    velocity = a.sqrt() * noise - (1 - a).sqrt() * x0
    pred = seen["pred"].double()
    against_v = float(((pred - velocity) ** 2).mean())
    against_noise = float(((pred - noise) ** 2).mean())
    assert loss == pytest.approx(against_v, rel=1e-4)
    assert abs(against_v - against_noise) > 1e-2 * against_v, "v and noise targets too close to tell apart"


def test_an_unknown_prediction_type_is_refused_before_training(tiny_world_backbone, tmp_path):
    parts = load_parts(str(tiny_world_backbone), "cpu")
    parts["scheduler_config"] = {**dict(parts["scheduler_config"]), "prediction_type": "sample"}
    cfg = TrainConfig(backbone=str(tiny_world_backbone), output_dir=str(tmp_path / "run"), kind="canny",
                      batch_size=2, steps=1, cpu=True)
    with pytest.raises(ValueError, match="epsilon and v_prediction"):
        train(cfg, parts=parts)


def test_the_demo_trainers_ema_state_is_saved_and_loads_back(tmp_path):
    torch.manual_seed(0)
    modules = [torch.nn.Linear(4, 4), torch.nn.Conv2d(2, 2, 1)]
    params = [p for m in modules for p in m.parameters()]
    ema = demo_backbone.make_ema(modules, decay=0.99)
    for _ in range(5):
        with torch.no_grad():
            for p in params:
                p.add_(torch.randn_like(p))
        ema.step(params)
    opt = torch.optim.SGD(params, lr=0.1)
    saved = SimpleNamespace(save_pretrained=lambda path, **kw: None)   # the models' folders are not the point here
    demo_backbone._save_unet_checkpoint(tmp_path, 5, saved, saved, ema, opt, 0.1, 1.0)

    again = demo_backbone.make_ema(modules, decay=0.99)
    demo_backbone._load_ema(tmp_path / "checkpoint-0000005", again, 5, "cpu")
    assert again.optimization_step == ema.optimization_step == 5
    for a, b in zip(again.shadow_params, ema.shadow_params):
        assert torch.equal(a, b)
    assert any(not torch.equal(s, p) for s, p in zip(ema.shadow_params, params)), "the average is the model itself"
    # and both go on identically (the warm-up's step count came back too)
    for e in (ema, again):
        e.step(params)
    assert ema.cur_decay_value == again.cur_decay_value
    for a, b in zip(again.shadow_params, ema.shadow_params):
        assert torch.allclose(a, b)
