"""The paper's guarantees, on a tiny backbone of the demo's architecture."""
import hashlib
import json

import pytest
import torch
from diffusers import ControlNetModel

import demo  # noqa: F401  (registers the world dataset the trainer reads)
from engine.training import checkpoints
from engine.training.controlnet import TrainConfig, controlled_noise_pred, load_parts, make_controlnet, train, zero_convs


def _hash(*modules) -> str:
    h = hashlib.sha256()
    for m in modules:
        for k, v in sorted(m.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _cfg(backbone, out, **kw) -> TrainConfig:
    base = dict(backbone=str(backbone), output_dir=str(out), kind="canny", batch_size=2, learning_rate=1e-3,
                steps=2, cpu=True, log_every=1, checkpoint_every=100)
    return TrainConfig(**{**base, **kw})


def _inputs(unet, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 32, 32, generator=g)
    text = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g)
    cond = torch.rand(2, 3, 64, 64, generator=g)
    return x, torch.tensor([10, 700]), text, cond


def test_step0_output_equals_locked_unet_exactly(tiny_world_backbone):
    parts = load_parts(str(tiny_world_backbone), "cpu")
    unet = parts["unet"]
    net = make_controlnet(unet, vae_scale=2)
    x, t, text, cond = _inputs(unet)
    with torch.no_grad():
        locked = unet(x, t, encoder_hidden_states=text).sample
        controlled = controlled_noise_pred(unet, net, x, t, text, cond)
    assert torch.equal(locked, controlled)
    # ... although the trainable copy itself computes something non-trivial.
    with torch.no_grad():
        h = net.conv_in(x) + net.controlnet_cond_embedding(cond)
    assert h.abs().sum() > 0


def test_backbone_stays_locked_and_zero_convs_wake_up(tiny_world_backbone, tmp_path):
    parts = load_parts(str(tiny_world_backbone), "cpu")
    before = _hash(parts["unet"], parts["vae"], parts["text_encoder"])
    fresh = make_controlnet(parts["unet"], vae_scale=2)
    assert all(not p.any() for z in zero_convs(fresh) for p in z.parameters())
    final = train(_cfg(tiny_world_backbone, tmp_path / "run", steps=1), parts=parts)
    assert _hash(parts["unet"], parts["vae"], parts["text_encoder"]) == before
    assert all(not p.requires_grad for n in ("unet", "vae", "text_encoder") for p in parts[n].parameters())
    net = ControlNetModel.from_pretrained(str(final))
    residual_zero_convs = list(net.controlnet_down_blocks) + [net.controlnet_mid_block]
    for z in residual_zero_convs:
        assert z.weight.abs().sum() > 0, z
    # At step 0 every zero conv's weight is zero, so nothing upstream of them had a gradient
    # yet: the condition encoder's own zero conv only wakes up on the second step.
    assert not net.controlnet_cond_embedding.conv_out.weight.any()
    final = train(_cfg(tiny_world_backbone, tmp_path / "run", steps=2), parts=parts)
    net = ControlNetModel.from_pretrained(str(final))
    assert net.controlnet_cond_embedding.conv_out.weight.abs().sum() > 0
    assert _hash(parts["unet"], parts["vae"], parts["text_encoder"]) == before
    # the copy has left the UNet weights it started from
    assert not torch.equal(net.conv_in.weight, parts["unet"].conv_in.weight)


def test_small_compute_mode_trains_only_the_middle_link(tiny_world_backbone, tmp_path):
    final = train(_cfg(tiny_world_backbone, tmp_path / "run", steps=2, mid_only_steps=2))
    net = ControlNetModel.from_pretrained(str(final))
    assert all(not p.any() for p in net.controlnet_down_blocks.parameters())
    assert net.controlnet_mid_block.weight.abs().sum() > 0
    # after the middle-only phase every link trains
    final = train(_cfg(tiny_world_backbone, tmp_path / "run", steps=3, mid_only_steps=2))
    net = ControlNetModel.from_pretrained(str(final))
    assert all(b.weight.abs().sum() > 0 for b in net.controlnet_down_blocks)


def test_resume_continues_exactly_where_it_stopped(tiny_world_backbone, tmp_path):
    straight = train(_cfg(tiny_world_backbone, tmp_path / "a", steps=4, prompt_dropout=0.5))
    train(_cfg(tiny_world_backbone, tmp_path / "b", steps=2, prompt_dropout=0.5))
    assert checkpoints.read_state(checkpoints.latest(tmp_path / "b"))["step"] == 2
    resumed = train(_cfg(tiny_world_backbone, tmp_path / "b", steps=4, prompt_dropout=0.5))
    a, b = ControlNetModel.from_pretrained(str(straight)), ControlNetModel.from_pretrained(str(resumed))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(va, vb, atol=1e-6), k
    # and a different seed would not have matched (the comparison can fail)
    other = train(_cfg(tiny_world_backbone, tmp_path / "c", steps=4, prompt_dropout=0.5, seed=1))
    c = ControlNetModel.from_pretrained(str(other))
    assert not torch.allclose(a.controlnet_mid_block.weight, c.controlnet_mid_block.weight)


def test_fidelity_curve_is_written(tiny_world_backbone, tmp_path):
    out = tmp_path / "run"
    train(_cfg(tiny_world_backbone, out, steps=2, eval_every=1, eval_count=1, eval_steps=2))
    rows = (out / "fidelity.csv").read_text().splitlines()
    assert rows[0] == "step,fidelity,loss,seconds"
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2"]
    assert all(0.0 <= float(r.split(",")[1]) <= 1.0 for r in rows[1:])
    assert (out / "fidelity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["processes"] == 1


def test_config_errors_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="probability"):
        _cfg(tmp_path, tmp_path, prompt_dropout=1.5)
    with pytest.raises(ValueError, match="--annotator"):
        _cfg(tmp_path, tmp_path, data=str(tmp_path))


def test_training_can_start_from_another_controlnet(tiny_world_backbone, tmp_path):
    parts = load_parts(str(tiny_world_backbone), "cpu")
    start = make_controlnet(parts["unet"], vae_scale=2)
    torch.nn.init.constant_(start.controlnet_mid_block.weight, 0.5)
    start.save_pretrained(str(tmp_path / "start"))
    final = train(_cfg(tiny_world_backbone, tmp_path / "run", steps=1, learning_rate=1e-6,
                       init_from=str(tmp_path / "start")))
    net = ControlNetModel.from_pretrained(str(final))
    assert torch.allclose(net.controlnet_mid_block.weight, torch.full_like(net.controlnet_mid_block.weight, 0.5), atol=1e-4)


def test_cubic_timesteps_favour_the_noisy_end_and_stay_in_range():
    from engine.training import draws
    cubic = draws.timesteps("cubic", 1000, draws.generators(0, 0, 0, 20000, "cpu"), "cpu")
    uniform = draws.timesteps("uniform", 1000, draws.generators(0, 1, 0, 20000, "cpu"), "cpu")
    assert 0 <= int(cubic.min()) and int(cubic.max()) <= 999 and 0 <= int(uniform.min()) and int(uniform.max()) <= 999
    # P(t >= 500) is 1 - 0.5**(1/3) ~ 0.79... under cubic: 1 - u**3 >= 0.5 when u <= 0.794
    assert (cubic >= 500).float().mean() > 0.75 > 0.55 > (uniform >= 500).float().mean()


def test_a_samples_draws_depend_on_its_place_in_the_global_batch_not_on_the_process():
    from engine.training import draws

    def step_draws(first, n, step=3):
        gens = draws.generators(7, step, first, n, "cpu")
        return draws.uniform(gens, "cpu"), draws.noise(gens, (n, 2, 4, 4), "cpu"), draws.timesteps("cubic", 1000, gens, "cpu")

    whole = step_draws(0, 4)
    halves = [torch.cat(parts) for parts in zip(step_draws(0, 2), step_draws(2, 2))]
    for a, b in zip(whole, halves):
        assert torch.equal(a, b)
    # the samples of a step differ from each other and from the next step's
    assert len(set(whole[2].tolist())) > 1 and not torch.equal(whole[1], step_draws(0, 4, step=4)[1])


def test_unknown_timestep_schedule_is_refused(tmp_path):
    with pytest.raises(ValueError, match="uniform or cubic"):
        _cfg(tmp_path, tmp_path, timesteps="exponential")
