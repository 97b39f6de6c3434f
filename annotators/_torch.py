"""The two torch helpers the learned annotators share; torch is imported only when they run."""
from __future__ import annotations

import os
from pathlib import Path

DEVICE_ENV_VAR = "CNSTUDIO_ANNOTATORS_DEVICE"


def torch_device() -> str:
    """Where learned annotators run: $CNSTUDIO_ANNOTATORS_DEVICE (e.g. "cpu" to keep GPU memory for
    generation), else CUDA when there is one."""
    import torch

    return os.environ.get(DEVICE_ENV_VAR) or ("cuda" if torch.cuda.is_available() else "cpu")


def read_state_dict(path: Path, strip_prefix: str = "") -> dict:
    """A checkpoint's tensors, read without unpickling arbitrary objects."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k.removeprefix(strip_prefix): v for k, v in state.items()} if strip_prefix else state
