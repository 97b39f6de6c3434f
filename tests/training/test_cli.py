"""`launch.py train` through engine.training.cli.main: folder data, and two processes."""
import json

import cv2
import numpy as np
import pytest

from engine.training import cli
from demo import draw, world


def _folder(tmp_path, n=4):
    pics, maps = tmp_path / "pics", tmp_path / "maps"
    pics.mkdir()
    maps.mkdir()
    for i in range(n):
        sc = world.scene(i)
        cv2.imwrite(str(pics / f"p{i}.png"), cv2.cvtColor(draw.image(sc, 80), cv2.COLOR_RGB2BGR))
        (pics / f"p{i}.txt").write_text(sc.caption)
        cv2.imwrite(str(maps / f"p{i}.png"), draw.segmentation(sc, 80))
    return pics, maps


def test_train_on_a_folder_with_an_annotator_and_with_map_files(tiny_world_backbone, tmp_path):
    pics, maps = _folder(tmp_path)
    common = ["--backbone", str(tiny_world_backbone), "--steps", "1", "--batch-size", "2", "--cpu",
              "--resolution", "64"]
    assert cli.main(["train", "--kind", "canny", "--data", str(pics), "--annotator", "canny",
                     "--output", str(tmp_path / "a"), *common]) == 0
    assert (tmp_path / "a" / "controlnet" / "config.json").is_file()
    assert cli.main(["train", "--kind", "seg", "--data", str(pics), "--control-dir", str(maps),
                     "--output", str(tmp_path / "b"), *common]) == 0
    assert (tmp_path / "b" / "controlnet" / "diffusion_pytorch_model.safetensors").is_file()


def test_bad_arguments_are_refused(tmp_path, capsys):
    assert cli.main(["nonsense"]) == 2
    assert cli.main(["train", "--kind", "canny", "--data", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    assert "--annotator" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_through_accelerate(tiny_world_backbone, tmp_path):
    out = tmp_path / "run"
    code = cli.main(["train", "--backbone", str(tiny_world_backbone), "--kind", "scribble", "--output", str(out),
                     "--steps", "2", "--batch-size", "1", "--processes", "2", "--cpu"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["batch"] == 2 and summary["steps"] == 2
    assert (out / "controlnet" / "config.json").is_file()
