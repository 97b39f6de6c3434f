"""Small JSON files of a model: a scheduler config, a backbone's recommended settings."""
from __future__ import annotations

import json
from pathlib import Path

from .. import limits
from ..values import checked_number

# A backbone's own request defaults (InvokeAI keeps such per-model settings): the file in its
# folder, or `<name>.recommended.json` beside a single file. Keys starting with "_" are notes.
RECOMMENDED_FILE = "recommended.json"
RECOMMENDABLE = ("cfg_scale",)


def read_json_object(path: Path, fix: str) -> dict:
    """The JSON object in `path`, or a ValueError that names the file, what is wrong and `fix`."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is missing or not JSON ({e}); {fix}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object; {fix}")
    return data


def class_name(config_json: Path) -> str | None:
    """The `_class_name` a diffusers config.json names, None when unreadable."""
    try:
        return json.loads(config_json.read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None


def read_scheduler_config(folder: Path) -> dict:
    """The scheduler's config dict of a diffusers folder (scheduler/scheduler_config.json)."""
    return read_json_object(folder / "scheduler" / "scheduler_config.json",
                            "a backbone folder needs its scheduler config.")


def read_recommended(path: Path) -> dict:
    """{setting: value} from a backbone folder's recommended.json (or the file beside a single
    file); {} when there is none."""
    file = path / RECOMMENDED_FILE if path.is_dir() else path.with_name(path.stem + "." + RECOMMENDED_FILE)
    if not file.is_file():
        return {}
    data = read_json_object(file, 'fix it (e.g. {"cfg_scale": 3.0}) or delete it.')
    settings = {k: v for k, v in data.items() if not k.startswith("_")}
    unknown = sorted(set(settings) - set(RECOMMENDABLE))
    if unknown:
        raise ValueError(f"{file} names settings a backbone cannot recommend: {', '.join(unknown)} "
                         f"(known: {', '.join(RECOMMENDABLE)}).")
    try:
        return {k: checked_number(k, v, 0.0, limits.MAX_CFG_SCALE) for k, v in settings.items()}
    except ValueError as e:
        raise ValueError(f"{file}: {e}.") from None
