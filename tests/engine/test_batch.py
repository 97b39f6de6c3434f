"""One request over a folder of pictures, as an artist runs it: outputs named after the inputs,
a report for a file that is not a picture, seeds by sorted order, a re-run that makes nothing
new, and an interrupt followed by a resume that completes the rest."""
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import ControlUnit, GenerationRequest, read_recipe
from engine.batch import run_batch
from engine.outputs import read_recipe_text

NAMES = ["a-sketch.png", "b.png", "c.jpg", "d.png", "e-wide.png"]


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "sketches"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k, name in enumerate(NAMES):
        size = (48, 96) if "wide" in name else (64, 64)           # another aspect ratio: fitted by the unit
        picture = np.zeros((*size, 3), np.uint8)
        picture[8 + 4 * k:40, 10:20 + 6 * k] = 255
        picture[rng.random(size) > 0.97] = 128
        Image.fromarray(picture).save(folder / name, quality=95)
    (folder / "notes.txt").write_text("colours: red, then blue")
    return folder


def _request(control_maps, **kw):
    units = [ControlUnit("cn0", control_maps[0], weight=0.8), ControlUnit("cn1", control_maps[1], resize_mode="fill")]
    return GenerationRequest(**(dict(backbone="tiny", prompt="a red star", width=64, height=64, steps=2, seed=40,
                                     cfg_scale=1.0, units=units) | kw))


def test_a_folder_interrupted_then_resumed_then_run_again(tiny_manager, control_maps, tmp_path):
    folder = _folder(tmp_path)
    request = _request(control_maps)
    stop = threading.Event()
    steps = []

    def on_step(i, total, preview):
        steps.append((i, total))
        if i == 5:                        # the third picture's first step
            stop.set()

    first = run_batch(request, folder, 1, on_step=on_step, stop=stop, manager=tiny_manager)
    assert first.interrupted and [i.status for i in first.items] == ["not a picture", "made", "made"]
    assert first.items[0].source.name == "notes.txt" and "not a picture" in first.items[0].line()
    assert steps[:5] == [(1, 10), (2, 10), (3, 10), (4, 10), (5, 10)]   # progress over the whole batch
    assert sorted(p.name for p in first.folder.iterdir()) == ["a-sketch.png", "b.png"]  # the cut picture is not kept

    second = run_batch(request, folder, 1, manager=tiny_manager)
    assert second.folder == first.folder and not second.interrupted
    assert [(i.source.name, i.status) for i in second.items] == [
        ("notes.txt", "not a picture"), ("a-sketch.png", "skipped"), ("b.png", "skipped"),
        ("c.jpg", "made"), ("d.png", "made"), ("e-wide.png", "made")]
    outputs = sorted(second.folder.iterdir())
    assert [p.name for p in outputs] == ["a-sketch.png", "b.png", "c.png", "d.png", "e-wide.png"]
    for k, path in enumerate(outputs):
        back = read_recipe(path)
        assert json.loads(read_recipe_text(path))["seed"] == back.seed == 40 + k      # seed + index, sorted order
        given = np.asarray(Image.open(folder / NAMES[k]).convert("RGB"))
        assert np.array_equal(back.units[1].image, given)                             # this input as the unit's map
        assert back.units[0] == request.units[0] and back.units[1].resize_mode == "fill"
        assert Image.open(path).size == (64, 64)
    pictures = [np.asarray(Image.open(p)).astype(int) for p in outputs]
    assert np.abs(pictures[0] - pictures[1]).mean() > 1

    stamps = [p.stat().st_mtime_ns for p in outputs]
    third = run_batch(request, folder, 1, manager=tiny_manager)
    assert third.count("made") == 0 and third.count("skipped") == 5
    assert [p.stat().st_mtime_ns for p in sorted(third.folder.iterdir())] == stamps

    changed = run_batch(request.replace(prompt="a blue star"), folder, 1, manager=tiny_manager,
                        stop=threading.Event(), on_step=lambda i, n, p: False)
    assert changed.folder != first.folder          # another recipe, another folder: nothing overwritten


def test_a_bad_folder_or_unit_says_what_to_do(tiny_manager, control_maps, tmp_path):
    with pytest.raises(ValueError, match="is not a folder; give a folder of pictures"):
        run_batch(_request(control_maps), tmp_path / "missing", 0, manager=tiny_manager)
    with pytest.raises(ValueError, match="batch unit 2 does not exist: the request has 2 unit"):
        run_batch(_request(control_maps), tmp_path, 2, manager=tiny_manager)
