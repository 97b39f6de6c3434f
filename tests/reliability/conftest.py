"""Servers for the reliability tests: the studio as launch.py starts it, on a models folder with
the tiny demo and hostile files (models_folder.py), logging to its own logs folder."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.reliability import models_folder


@pytest.fixture(scope="session")
def hostile_models():
    return models_folder.build(Path(tempfile.mkdtemp(prefix="cnstudio-rel-models-")))


def start_studio(models: Path, *extra: str) -> dict:
    """A studio child process on `models`, with `extra` flags; server["logs"] is its log folder."""
    from tests.ui import studio_server
    logs = Path(tempfile.mkdtemp(prefix="cnstudio-rel-logs-"))
    saved = os.environ.get("CNSTUDIO_UI_TEST_MODELS")
    os.environ["CNSTUDIO_UI_TEST_MODELS"] = str(models)
    try:
        server = studio_server.start(("--logs-dir", str(logs), *extra))
    finally:
        if saved is None:
            os.environ.pop("CNSTUDIO_UI_TEST_MODELS", None)
        else:
            os.environ["CNSTUDIO_UI_TEST_MODELS"] = saved
    server["logs"] = logs
    return server


@pytest.fixture(scope="session")
def studio(hostile_models):
    """One studio for the bad-input, hostile-file and load tests."""
    from tests.ui.studio_server import stop
    server = start_studio(hostile_models)
    yield server
    stop(server)


@pytest.fixture(scope="session")
def client(studio):
    from gradio_client import Client
    return Client(studio["url"] + "/", verbose=False)


@pytest.fixture()
def python_manager(hostile_models, monkeypatch):
    """A fresh CPU model manager reading the same models folder as the server."""
    import torch

    from engine.manager import ModelManager
    monkeypatch.setenv("CNSTUDIO_MODELS", str(hostile_models))
    return ModelManager(device="cpu", dtype=torch.float32)
