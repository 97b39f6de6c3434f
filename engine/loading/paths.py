"""Where things are: the models folder, the Hugging Face cache, the outputs folder, and whether
downloads are allowed. Every environment override of a place is read here, at call time (a
test or the studio's flags may set them after import).

- CNSTUDIO_MODELS: the models folder (default <repo>/models)
- CNSTUDIO_OUTPUTS: where pictures are saved (default <repo>/outputs)
- CNSTUDIO_ALLOW_DOWNLOAD=1: hub ids may be fetched into the cache (default: cache only)
- HF_HUB_CACHE / HUGGINGFACE_HUB_CACHE / HF_HOME / XDG_CACHE_HOME: the hub cache, as
  huggingface_hub reads them
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
CONFIGS_DIR = REPO_ROOT / "engine" / "configs"


def models_dir() -> Path:
    """The models folder: env CNSTUDIO_MODELS, else <repo>/models."""
    env = os.environ.get("CNSTUDIO_MODELS")
    return Path(env).expanduser() if env else REPO_ROOT / "models"


def outputs_dir() -> Path:
    """Where generated pictures are saved: env CNSTUDIO_OUTPUTS, else <repo>/outputs."""
    env = os.environ.get("CNSTUDIO_OUTPUTS")
    return Path(env).expanduser() if env else REPO_ROOT / "outputs"


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time (huggingface_hub reads
    it once at import, which would miss a cache chosen later, e.g. by a test)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def downloads_allowed() -> bool:
    return os.environ.get("CNSTUDIO_ALLOW_DOWNLOAD", "").strip().lower() in ("1", "true", "yes")
