"""Where learned annotators find their weights: one folder, or the local Hugging Face cache.

The folder is `<repo>/models/annotators/` unless the environment variable CNSTUDIO_ANNOTATORS or
`set_weights_dir` (the CLI flag) says otherwise. Nothing is ever downloaded here: a missing file is
a ValueError naming it, where to put it and where it comes from.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "CNSTUDIO_ANNOTATORS"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "models" / "annotators"
_override: Path | None = None


def set_weights_dir(path: str | os.PathLike | None) -> None:
    """Use `path` for annotator weights from now on (None: back to the env variable / default)."""
    global _override
    _override = None if path is None else Path(path).expanduser()


def weights_dir() -> Path:
    if _override is not None:
        return _override
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else DEFAULT_DIR


def _from_hf_cache(repo: str, filename: str) -> Path | None:
    """A file of `repo` in the local Hugging Face cache; only looks on disk, never on the network."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo, filename)
    except Exception:  # a malformed cache must not break a lookup that has other places to look
        return None
    return Path(found) if isinstance(found, str) else None


@dataclass(frozen=True)
class WeightFile:
    """One checkpoint file, under the name the field uses (lllyasviel/Annotators by default)."""

    filename: str
    repo: str = "lllyasviel/Annotators"

    def locate(self) -> Path | None:
        path = weights_dir() / self.filename
        return path if path.is_file() else _from_hf_cache(self.repo, self.filename)

    def where(self) -> str:
        return (f"{self.filename}: put it in {weights_dir()} "
                f"(it comes from https://huggingface.co/{self.repo}/blob/main/{self.filename})")

    def short(self) -> str:
        """The name a list shows for it: the file's own name."""
        return self.filename

    def to_json(self) -> dict:
        return {"file": self.filename, "repo": self.repo, "folder": str(weights_dir())}


@dataclass(frozen=True)
class ModelFolder:
    """A transformers model saved as a folder (config.json, weights, preprocessor_config.json);
    any of `repos` will do, the first is preferred."""

    repos: tuple[str, ...]
    what: str

    def locate(self) -> Path | None:
        for repo in self.repos:
            folder = weights_dir() / repo.split("/")[-1]
            if (folder / "config.json").is_file():
                return folder
        for repo in self.repos:
            cached = _from_hf_cache(repo, "config.json")
            if cached is not None:
                return cached.parent
        return None

    def where(self) -> str:
        first = self.repos[0]
        return (f"a {self.what} model folder: save one of {', '.join(self.repos)} "
                f"(https://huggingface.co/{first}: config.json, model.safetensors, preprocessor_config.json) "
                f"as {weights_dir() / first.split('/')[-1]}")

    def short(self) -> str:
        """The name a list shows for it: the folder it is looked for under."""
        return f"{self.repos[0].split('/')[-1]} folder"

    def to_json(self) -> dict:
        return {"model": self.what, "repos": list(self.repos), "folder": str(weights_dir())}


def require(annotator: str, needs: tuple) -> list[Path]:
    """The paths of every weight `annotator` needs; ValueError naming each missing one."""
    found = [need.locate() for need in needs]
    missing = [need.where() for need, path in zip(needs, found) if path is None]
    if missing:
        raise ValueError(
            f"annotator {annotator!r} is missing its weights. Needed: " + "; ".join(missing) + ". "
            f"The folder is set by --annotators-dir or the {ENV_VAR} environment variable; files in the "
            "local Hugging Face cache are found too. Nothing is downloaded automatically."
        )
    return found  # type: ignore[return-value]
