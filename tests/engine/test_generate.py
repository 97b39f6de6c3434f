"""generate() as a user meets it: seeds, interrupt, long prompts, inpainting, files and recipes."""
import threading

import numpy as np
import torch

from engine import ControlUnit, GenerationRequest, generate, read_recipe
from engine.generate import render
from engine.prompt import encode_prompts


def _req(**kw):
    base = dict(backbone="tiny", prompt="a red star", width=64, height=64, steps=4, seed=11)
    return GenerationRequest(**(base | kw))


def test_batch_seeds_follow_the_first_and_minus_one_is_drawn_and_recorded(tiny_manager):
    r = generate(_req(batch_size=3), manager=tiny_manager, save=False)
    assert r.seeds == [11, 12, 13] and len(r.images) == 3
    drawn = generate(_req(seed=-1), manager=tiny_manager, save=False)
    again = GenerationRequest.from_json(drawn.recipe)
    assert again.seed == drawn.seeds[0] >= 0
    redo = generate(again, manager=tiny_manager, save=False)
    assert np.array_equal(np.asarray(redo.images[0]), np.asarray(drawn.images[0]))


def test_on_step_returning_false_interrupts_and_returns_the_current_image(tiny_manager):
    seen = []

    def on_step(step, total, preview):
        seen.append((step, total))
        if step == 2:
            assert preview().shape == (1, 64, 64, 3)
            return False

    r = generate(_req(steps=6), on_step=on_step, manager=tiny_manager, save=False)
    assert r.interrupted and seen == [(1, 6), (2, 6)] and len(r.images) == 1
    full = generate(_req(steps=6), manager=tiny_manager, save=False)
    assert not full.interrupted
    assert not np.array_equal(np.asarray(full.images[0]), np.asarray(r.images[0]))


def test_stop_event_interrupts(tiny_manager):
    stop = threading.Event()
    steps = []
    r = generate(_req(steps=5), on_step=lambda s, n, p: (steps.append(s), s == 1 and stop.set()),
                 stop=stop, manager=tiny_manager, save=False)
    assert r.interrupted and steps == [1]


def test_long_prompts_are_encoded_in_windows_not_cut(tiny_manager, tiny_parts):
    tok, enc = tiny_parts["tokenizer"], tiny_parts["text_encoder"]
    short, _ = encode_prompts(tok, enc, "a red star", "", "cpu", torch.float32)
    long_text = "a red star " * 20                     # 200+ character-level tokens
    long, neg = encode_prompts(tok, enc, long_text, "", "cpu", torch.float32)
    assert short.shape[1] == 77 and long.shape[1] % 77 == 0 and long.shape[1] >= 3 * 77
    assert neg.shape == long.shape                     # the negative prompt is padded to match
    a = render(_req(prompt=long_text), tiny_manager).images
    b = render(_req(prompt=long_text + " blue"), tiny_manager).images
    assert np.abs(a - b).max() > 1e-4                  # words past the first window still count


def test_inpainting_keeps_pixels_outside_the_mask(tiny_manager, control_maps):
    rng = np.random.default_rng(1)
    init = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    mask = np.zeros((64, 64), np.uint8); mask[:, 32:] = 255
    r = generate(_req(init_image=init, inpaint_mask=mask, strength=1.0,
                      units=[ControlUnit("cn0", control_maps[0])]), manager=tiny_manager, save=False)
    out = np.asarray(r.images[0]).astype(int)
    assert np.abs(out[:, :32] - init[:, :32]).max() <= 1
    assert np.abs(out[:, 32:] - init[:, 32:]).mean() > 10


def test_saved_png_carries_a_recipe_that_regenerates_the_same_pixels(tiny_manager, control_maps, tmp_path):
    unit = ControlUnit("cn1", control_maps[1], weight=0.9, end=0.8, annotator="scribble",
                       annotator_params={"threshold": 0.5})
    req = _req(prompt="../../etc/passwd", units=[unit], batch_size=2)
    r = generate(req, manager=tiny_manager)
    assert len(r.paths) == 2 and len(set(r.paths)) == 2
    for p in r.paths:
        assert p.parent.parent == tmp_path / "outputs" and p.name.endswith(".png") and "passwd" not in p.name
    back = read_recipe(r.paths[0])
    assert back == GenerationRequest.from_json(r.recipe) and back.to_json() == r.recipe
    again = generate(back, manager=tiny_manager, save=False)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(again.images, r.images))
    second = read_recipe(r.paths[1], this_image=True)
    assert (second.seed, second.batch_size) == (r.seeds[1], 1)
    one = generate(second, manager=tiny_manager, save=False)
    # Batch size changes float summation order inside convolutions, so equal up to rounding.
    diff = np.abs(np.asarray(one.images[0]).astype(int) - np.asarray(r.images[1]).astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01
    from PIL import Image
    with Image.open(r.paths[0]) as im:
        params = im.info["parameters"]
    assert "Steps: 4, Sampler: UniPC" in params and 'ControlNet 0: "Module: scribble, Model: cn1, Weight: 0.9' in params


def test_recipe_over_pillows_1mb_text_limit_is_read(tiny_manager):
    rng = np.random.default_rng(2)
    noisy = [ControlUnit("cn0", (rng.random((400, 400, 3)) * 255).astype(np.uint8)) for _ in range(3)]
    r = generate(_req(units=noisy, steps=1), manager=tiny_manager)
    assert len(r.recipe) > 1_000_000
    assert read_recipe(r.paths[0]) == GenerationRequest.from_json(r.recipe)


def test_out_of_memory_is_a_clear_error_and_the_next_job_runs(tiny_manager, control_maps, monkeypatch):
    import importlib

    import pytest

    from engine import GenerationError
    g = importlib.import_module("engine.generate")   # the module, not the function of that name
    real = g.denoise

    def oom(*args, **kwargs):                          # raised where CUDA raises it: inside the loop
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(g, "denoise", oom)
    with pytest.raises(GenerationError) as e:
        generate(_req(units=[ControlUnit("cn0", control_maps[0])]), manager=tiny_manager, save=False)
    assert "ran out of memory" in str(e.value) and "smaller size" in str(e.value) and "--offload" in str(e.value)
    monkeypatch.setattr(g, "denoise", real)
    assert len(generate(_req(), manager=tiny_manager, save=False).images) == 1


def test_unwritable_output_folder_still_returns_the_images(tiny_manager, tmp_path, monkeypatch):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    monkeypatch.setenv("CNSTUDIO_OUTPUTS", str(blocked))
    r = generate(_req(), manager=tiny_manager)
    assert len(r.images) == 1 and r.paths == []
    assert r.warnings and "not saved" in r.warnings[0] and "CNSTUDIO_OUTPUTS" in r.warnings[0]
