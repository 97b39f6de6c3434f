"""README's examples, run as written: its `python3 launch.py` lines from the repository root with
the project's Python, its Python blocks as a file of their own; the pictures they make must follow
the example sketch (edge F1, the fidelity meter's judge). Lines that take a GPU or hours
(train-demo, study, the studio and the test suite themselves) run with --help instead."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import annotators
from engine import fidelity_score

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
SKETCH = REPO / "examples" / "sketch.png"
# Measured on this CPU (seed 1, "a large red star on a white background"): 0.81 with the sketch
# annotated (image=); 0.05 with the sketch given as the map (map=, what the old line did).
STAR_F1_MIN = 0.5
RUN_FOR_REAL = {"generate"}


def _commands() -> list[str]:
    return [ln.strip() for ln in README.splitlines() if ln.startswith("    python3 launch.py")]


def _python_blocks() -> list[str]:
    # the A1111 API's example talks to a running studio (tests/ui/test_a1111.py drives those routes)
    return [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "http://127.0.0.1" not in b]


def _env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNSTUDIO_")}
    # the project's Python is the environment the launcher would set up: it starts at once
    env.update(CNSTUDIO_VENV=sys.prefix, CNSTUDIO_OUTPUTS=str(tmp_path / "outputs"), HF_HUB_OFFLINE="1")
    return env


def _follows_the_sketch(picture_path: Path) -> float:
    picture = np.asarray(Image.open(picture_path).convert("RGB"))
    the_map = annotators.run("scribble", np.asarray(Image.open(SKETCH).convert("RGB")))
    return fidelity_score("scribble", picture, the_map)


def test_readme_shows_commands_and_python():
    assert any(" generate " in c for c in _commands()) and _python_blocks()


@pytest.mark.parametrize("line", [c for c in _commands() if c.split()[2:3] == ["generate"]])
def test_a_generate_line_makes_the_star(line, tmp_path):
    words = shlex.split(line, comments=True)
    assert words[:2] == ["python3", "launch.py"]
    done = subprocess.run([sys.executable, *words[1:]], cwd=REPO, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    saved = Path(done.stdout.strip().splitlines()[-1])
    assert saved.is_file() and saved.is_relative_to(tmp_path / "outputs")
    f1 = _follows_the_sketch(saved)
    assert f1 >= STAR_F1_MIN, f"{line}: the picture's edges follow the sketch at F1 {f1:.2f}"


@pytest.mark.parametrize("line", [c for c in _commands() if c.split()[2:3] != ["generate"]])
def test_every_other_line_answers_help(line, tmp_path):
    words = shlex.split(line, comments=True)[1:]
    # the sub-command words (e.g. `study training`), without their options
    head = [w for w in words[1:2 + (words[1:2] == ["study"])] if not w.startswith("-")]
    done = subprocess.run([sys.executable, words[0], *head, "--help"], cwd=REPO, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower()


def test_the_python_block_makes_the_star(tmp_path):
    work = tmp_path / "root"
    work.mkdir()
    (work / "examples").symlink_to(REPO / "examples")     # the block reads examples/ from the root
    script = work / "readme_block.py"
    script.write_text("\n".join(_python_blocks()))
    env = _env(tmp_path) | {"PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(script)], cwd=work, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    f1 = _follows_the_sketch(work / "star.png")
    assert f1 >= STAR_F1_MIN, f"README's Python block: F1 {f1:.2f}"
    assert list((tmp_path / "outputs").rglob("*.png")), "the result is also saved under outputs/"
