"""`launch.py generate` as a user types it."""
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from engine import GenerationRequest, read_recipe
from tests.tiny_models import save_backbone_folder

ROOT = Path(__file__).resolve().parents[2]


def _run(args, tmp_path):
    env = {"CNSTUDIO_OUTPUTS": str(tmp_path / "out"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(ROOT / "launch.py"), "--no-install", "generate", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_cli_flags_and_recipe_make_the_same_image(tmp_path, tiny_parts, tiny_nets, control_maps):
    save_backbone_folder(tiny_parts, tmp_path / "bb")
    tiny_nets[0].save_pretrained(tmp_path / "cn_scribble")
    Image.fromarray(control_maps[0]).save(tmp_path / "map.png")
    args = ["--backbone", str(tmp_path / "bb"), "--prompt", "a red star", "--steps", "2", "--seed", "5",
            "--control", f"model={tmp_path / 'cn_scribble'},map={tmp_path / 'map.png'},weight=0.7,end=0.5"]
    first = _run(args, tmp_path)
    assert first.returncode == 0, first.stderr
    path = Path(first.stdout.strip().splitlines()[-1])
    request = read_recipe(path)
    assert request.prompt == "a red star" and request.units[0].weight == 0.7 and request.units[0].end == 0.5
    (tmp_path / "r.json").write_text(request.to_json())
    second = _run(["--recipe", str(tmp_path / "r.json")], tmp_path)
    assert second.returncode == 0, second.stderr
    again = Path(second.stdout.strip().splitlines()[-1])
    assert again != path
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(path)))
    assert GenerationRequest.from_json(request.to_json()) == read_recipe(again)


def test_cli_bad_input_is_a_message_not_a_traceback(tmp_path):
    bad = _run(["--control", "model=x,image=/no/such.png"], tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "cannot read control image '/no/such.png'" in bad.stderr
    worse = _run(["--control", "weight=2"], tmp_path)
    assert worse.returncode == 2 and "needs model=... and one of image=..." in worse.stderr


def test_cli_batch_dir_names_outputs_after_inputs_and_a_re_run_makes_nothing_new(tmp_path, tiny_parts, tiny_nets):
    save_backbone_folder(tiny_parts, tmp_path / "bb")
    tiny_nets[0].save_pretrained(tmp_path / "cn_scribble")
    sketches = tmp_path / "sketches"
    sketches.mkdir()
    for k, name in enumerate(["b-frame.png", "a-frame.png"]):
        a = np.zeros((64, 64, 3), np.uint8)
        a[8:56, 10 + 20 * k:14 + 20 * k] = 255
        Image.fromarray(a).save(sketches / name)
    (sketches / "readme.txt").write_text("not a picture")
    args = ["--backbone", str(tmp_path / "bb"), "--prompt", "a red star", "--steps", "2", "--seed", "7",
            "--width", "64", "--height", "64",
            "--control", f"model={tmp_path / 'cn_scribble'},map={sketches / 'a-frame.png'},weight=0.5",  # fixed
            "--control", f"model={tmp_path / 'cn_scribble'},annotator=none",       # takes the folder's pictures
            "--batch-dir", str(sketches), "--batch-unit", "1"]
    first = _run(args, tmp_path)
    assert first.returncode == 0, first.stderr
    made = [Path(line) for line in first.stdout.split()]
    assert [p.name for p in made] == ["a-frame.png", "b-frame.png"]           # sorted, named after the inputs
    assert made[0].parent.parent == tmp_path / "out" / "batches" and made[0].parent.name.startswith("sketches-")
    assert "readme.txt: not a picture" in first.stderr and "batch: 2 made, 0 skipped, 1 not made" in first.stderr
    recipes = [read_recipe(p) for p in made]
    assert [r.seed for r in recipes] == [7, 8] and [r.units[0].weight for r in recipes] == [0.5, 0.5]
    a_input = np.asarray(Image.open(sketches / "a-frame.png").convert("RGB"))
    assert np.array_equal(np.asarray(recipes[0].units[1].image), a_input)      # its own picture as the map
    stamps = [p.stat().st_mtime_ns for p in made]

    again = _run(args, tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "" and "batch: 0 made, 2 skipped, 1 not made" in again.stderr
    assert [p.stat().st_mtime_ns for p in made] == stamps
    assert sorted(p.name for p in made[0].parent.iterdir()) == ["a-frame.png", "b-frame.png"]


def test_cli_unit_takes_its_hires_passes(tmp_path, control_maps):
    import pytest

    from engine.cli import parse_control
    Image.fromarray(control_maps[0]).save(tmp_path / "map.png")
    assert parse_control(f"model=demo:scribble,map={tmp_path / 'map.png'},hr_option=high").hr_option == "high"
    with pytest.raises(ValueError, match="hr_option"):
        parse_control(f"model=demo:scribble,map={tmp_path / 'map.png'},hr_option=second")
