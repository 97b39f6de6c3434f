"""Which folders on the server the page may read a batch from.

On this machine alone (the default, 127.0.0.1) the person at the page is the person at the
server, so any folder will do. With --listen anyone who reaches the port types the path, so a
batch reads only the studio's own folders: the inputs folder (--inputs-dir, env CNSTUDIO_INPUTS,
default inputs/ beside launch.py), the outputs folder (a batch over earlier results), models/ and
examples/. A path is judged after resolving symbolic links and "..", so a link inside an allowed
folder that points outside it is refused too.
"""
from __future__ import annotations

import os
from pathlib import Path

import engine

REPO = Path(__file__).resolve().parent.parent
_listening = False


def set_listening(on: bool) -> None:
    """Whether the studio accepts connections from other machines (ui.app sets it from --listen)."""
    global _listening
    _listening = bool(on)


def listening() -> bool:
    return _listening


def inputs_dir() -> Path:
    return Path(os.environ.get("CNSTUDIO_INPUTS") or REPO / "inputs").expanduser().resolve()


def allowed_roots() -> list[Path]:
    return [inputs_dir(), engine.outputs_dir().resolve(), engine.models_dir().resolve(), (REPO / "examples").resolve()]


def batch_folder(text: str | None) -> Path:
    """The folder a batch reads, from what was typed on the page; ValueError saying what to do
    when it is empty, not a folder, or (with --listen) outside the studio's own folders."""
    text = (text or "").strip()
    if not text:
        raise ValueError("type the path of a folder of pictures on the server (the machine the studio runs on)")
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = inputs_dir() / path      # a bare name is a folder inside the inputs folder
    path = path.resolve()
    if _listening and not any(path == root or path.is_relative_to(root) for root in allowed_roots()):
        raise ValueError(f"{text!r} is outside the studio's own folders: with --listen a batch reads only folders "
                         f"inside the inputs folder {inputs_dir()} (--inputs-dir DIR picks another), the outputs, "
                         f"models or examples folder; copy the pictures into {inputs_dir()}")
    if not path.is_dir():
        raise ValueError(f"{text!r} is not a folder on the server; give the path of a folder of pictures")
    return path
