"""The hires fix as a user meets it: the second pass's size, each unit's hr_option acting in
exactly the pass it names (seen through hooks on the nets), progress over both passes, an
interrupt in either pass, and the recipe."""
import numpy as np
import pytest

from engine import ControlUnit, GenerationRequest, generate, read_recipe
from engine.hires import target_size

FIRST, SECOND = 2, 2   # steps of each pass (UniPC: one evaluation per step)


def _req(**kw):
    base = dict(backbone="tiny", prompt="a red star", width=64, height=64, steps=FIRST, seed=5, enable_hr=True,
                cfg_scale=1.0, hr_scale=1.25, hr_second_pass_steps=SECOND, strength=0.6)
    return GenerationRequest(**(base | kw))


def _pixels(result):
    return np.asarray(result.images[0]).astype(int)


@pytest.mark.parametrize("fields, size, cover", [
    (dict(hr_scale=2.0), (1024, 768), (1024, 768)),
    (dict(hr_scale=1.25), (640, 480), (640, 480)),
    (dict(), (768, 576), (768, 576)),
    (dict(hr_resize_x=1000), (1000, 744), (1000, 744)),       # 750 floored to whole latent pixels
    (dict(hr_resize_y=900), (1200, 896), (1200, 896)),
    # both sides given, another aspect ratio: enlarged to cover, then centre-cropped (A1111's truncate)
    (dict(hr_resize_x=1024, hr_resize_y=1024), (1024, 1024), (1360, 1024)),
])
def test_the_second_pass_size_follows_a1111(fields, size, cover):
    t = target_size(_req(**({"hr_scale": 1.5} | fields)), 512, 384, 8)
    assert ((t.width, t.height), (t.cover_width, t.cover_height)) == (size, cover)


def test_a_size_past_the_limit_is_refused_before_anything_runs(tiny_manager):
    with pytest.raises(ValueError, match="over the 2048-pixel limit.*lower hr_scale"):
        generate(_req(width=1024, height=1024, hr_scale=4.0), manager=tiny_manager, save=False)


def test_each_unit_acts_in_the_passes_its_hr_option_names(tiny_manager, tiny_nets, control_maps):
    """cn0 first pass only, cn1 second only, cn2 both: hooks on each net see which latent size
    it ran at, and which map size its condition embedding read."""
    runs = {i: [] for i in range(3)}
    maps = {i: [] for i in range(3)}
    hooks = []
    for i, net in enumerate(tiny_nets):
        hooks.append(net.controlnet_mid_block.register_forward_hook(
            lambda m, a, out, i=i: runs[i].append(tuple(a[0].shape[-2:]))))
        hooks.append(net.controlnet_cond_embedding.register_forward_hook(
            lambda m, a, out, i=i: maps[i].append(tuple(a[0].shape[-2:]))))
    units = [ControlUnit("cn0", control_maps[0], hr_option="low"), ControlUnit("cn1", control_maps[1], hr_option="high"),
             ControlUnit("cn2", control_maps[2])]
    steps = []
    try:
        r = generate(_req(units=units), manager=tiny_manager, save=False,
                     on_step=lambda i, n, _: steps.append((i, n)))
    finally:
        for h in hooks:
            h.remove()
    assert r.images[0].size == (80, 80) and not r.interrupted
    low, high = (16, 16), (20, 20)     # the tiny UNet's middle block: latent 32 -> 16, 40 -> 20
    assert runs[0] == [low] * FIRST                       # nothing in the second pass
    assert runs[1] == [high] * SECOND                     # nothing in the first
    assert runs[2] == [low] * FIRST + [high] * SECOND
    assert maps[0] == [(64, 64)] and maps[1] == [(80, 80)] and maps[2] == [(64, 64), (80, 80)]  # re-fitted
    assert steps == [(i, FIRST + SECOND) for i in range(1, FIRST + SECOND + 1)]


def test_the_first_pass_holds_exactly_its_units_and_a_stop_there_skips_the_second(tiny_manager, control_maps):
    """Stopped at the first pass's last step, a hires run returns the first pass's picture: with
    a second-pass-only unit it is the plain run without that unit, pixel for pixel."""
    plain = generate(_req(enable_hr=False), manager=tiny_manager, save=False)
    unit = ControlUnit("cn0", control_maps[0], weight=1.5, hr_option="high")
    seen = []
    stopped = generate(_req(units=[unit]), manager=tiny_manager, save=False,
                       on_step=lambda i, n, _: seen.append(i) or i < FIRST)
    assert stopped.interrupted and seen == [1, 2] and stopped.images[0].size == (64, 64)
    assert np.array_equal(_pixels(stopped), _pixels(plain))
    both = generate(_req(units=[ControlUnit("cn0", control_maps[0], weight=1.5)]),
                    manager=tiny_manager, save=False, on_step=lambda i, n, _: i < FIRST)
    assert np.abs(_pixels(both) - _pixels(plain)).mean() > 1     # that unit in the first pass changes it


def test_a_stop_in_the_second_pass_returns_its_picture_so_far(tiny_manager):
    import threading
    stop = threading.Event()
    seen = []
    r = generate(_req(hr_upscaler="Lanczos", hr_second_pass_steps=3), manager=tiny_manager, save=False, stop=stop,
                 on_step=lambda i, n, preview: (seen.append((i, n, preview().shape)), i == FIRST + 1 and stop.set()))
    assert r.interrupted and r.images[0].size == (80, 80)
    assert seen == [(1, 5, (1, 64, 64, 3)), (2, 5, (1, 64, 64, 3)), (3, 5, (1, 80, 80, 3))]


def test_recipe_keeps_the_hires_fields_and_old_recipes_stay_as_they_were(tiny_manager, control_maps):
    plain = GenerationRequest(prompt="x", units=[ControlUnit("cn0", control_maps[0])])
    assert "hr_" not in plain.to_json() and "enable_hr" not in plain.to_json()
    r = generate(_req(hr_upscaler="Latent (nearest)", units=[ControlUnit("cn0", control_maps[0], hr_option="low")]),
                 manager=tiny_manager)
    back = read_recipe(r.paths[0])
    assert (back.enable_hr, back.hr_scale, back.hr_second_pass_steps, back.hr_upscaler, back.units[0].hr_option) \
        == (True, 1.25, SECOND, "Latent (nearest)", "low")
    assert np.array_equal(_pixels(generate(back, manager=tiny_manager, save=False)), _pixels(r))
    from PIL import Image
    with Image.open(r.paths[0]) as im:
        params = im.info["parameters"]
    assert "Size: 64x64" in params and "Hires upscale: 1.25, Hires steps: 2, Hires upscaler: Latent (nearest)" in params
    assert "Hr Option: Low res only" in params


@pytest.mark.parametrize("fields, message", [
    (dict(hr_upscaler="R-ESRGAN 4x+"), r"hr_upscaler 'R-ESRGAN 4x\+' is not one of: Latent,"),
    (dict(init_image=np.zeros((64, 64, 3), np.uint8)), "set enable_hr to false and ask for the larger width"),
    (dict(strength=0.0), "strength .* above 0"),
    (dict(hr_scale=5), "hr_scale must be between 1.0 and 4.0"),
    (dict(hr_resize_x=10), "hr_resize_x must be 0 .* or at least 64"),
])
def test_bad_hires_fields_say_what_to_do(fields, message):
    with pytest.raises(ValueError, match=message):
        _req(**fields)
    with pytest.raises(ValueError, match="hr_option 'Low' is not one of: both, low, high"):
        ControlUnit("cn0", np.zeros((8, 8, 3), np.uint8), hr_option="Low")
