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
