"""Disk: an unwritable or full output folder gives a clear error in the log and the client still
gets its images through the API function the HTTP endpoint runs."""
from __future__ import annotations

import errno
import json
import logging

import numpy as np
import pytest
from PIL import Image

from engine import GenerationRequest


@pytest.fixture()
def tiny_default(monkeypatch, tiny_manager):
    import engine.manager
    monkeypatch.setattr(engine.manager, "_default", tiny_manager)
    return tiny_manager


def _recipe() -> str:
    return GenerationRequest(backbone="tiny", prompt="a cat", steps=1, seed=4, width=64, height=64).to_json()


def _full_disk(self, fp, *args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("trouble", ["folder-is-a-file", "disk-full"])
def test_images_come_back_when_they_cannot_be_saved(trouble, tiny_default, tmp_path, monkeypatch, caplog):
    from ui import api
    if trouble == "folder-is-a-file":
        blocked = tmp_path / "not-a-folder"
        blocked.write_text("x")
        monkeypatch.setenv("CNSTUDIO_OUTPUTS", str(blocked))
    else:
        monkeypatch.setattr(Image.Image, "save", _full_disk)
    with caplog.at_level(logging.ERROR):
        images, recipe = api.generate(_recipe())
    monkeypatch.undo()
    assert len(images) == 1 and isinstance(images[0], Image.Image) and images[0].size == (64, 64)
    assert np.asarray(images[0]).std() > 0
    assert json.loads(recipe)["seed"] == 4
    assert GenerationRequest.from_json(recipe).seed == 4       # still a recipe a client can send back
    told = " ".join(json.loads(recipe)["warnings"])               # the client is told, not only the log
    assert "not saved" in told
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "not saved" in logged and ("CNSTUDIO_OUTPUTS" in logged or "free some space" in logged)
    if trouble == "disk-full":
        outputs = tmp_path / "outputs"
        assert not any(p.stat().st_size == 0 for p in outputs.rglob("*.png"))   # no empty leftovers
