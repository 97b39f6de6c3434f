"""controlnet_aux's detector submodules, imported without its package __init__.

That __init__ imports every detector, some of which need torchvision (not installable on the
CPU-only machines here); each submodule we use needs only torch, cv2, einops and huggingface_hub.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from types import ModuleType


def _bare_package(name: str) -> None:
    """Put package `name` in sys.modules with its real search path, without running its __init__."""
    if name in sys.modules:
        return
    found = importlib.util.find_spec(name)
    if found is None or not found.submodule_search_locations:
        raise ValueError("controlnet_aux is not installed; install it with "
                         "`pip install controlnet_aux==0.0.10 --no-deps`")
    package = types.ModuleType(name)
    package.__path__ = list(found.submodule_search_locations)
    package.__spec__ = found
    sys.modules[name] = package


def aux_module(name: str) -> ModuleType:
    """`controlnet_aux.<name>` (e.g. "hed", "pidi", "open_pose.util"), loaded without the
    __init__ of the packages above it."""
    parts = ["controlnet_aux", *name.split(".")]
    for depth in range(1, len(parts)):
        _bare_package(".".join(parts[:depth]))
    return importlib.import_module(".".join(parts))
