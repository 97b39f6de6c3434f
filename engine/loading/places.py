"""Where a source string points: a local folder or file, found in this order:
- "demo" (backbone) / "demo:<kind>" (ControlNet): the embedded demo model under models/demo/;
- a path to a diffusers folder or a single .safetensors/.ckpt/.pth file;
- a bare name of a folder or file under models/backbones/ or models/controlnets/;
- a hub id "owner/name" (or "owner/name/file.safetensors") from the local Hugging Face cache,
  downloaded into it only when downloads are allowed (paths.downloads_allowed).
Also what is installed, for the pickers.
"""
from __future__ import annotations

import re
from pathlib import Path

from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError

from .folders import BACKBONE_PARTS
from .paths import downloads_allowed, hf_cache_dir, models_dir
from .safe_load import CHECKPOINT_SUFFIXES

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?$")


def resolve(source: str, role: str) -> Path:
    """The local folder or file a source names (fetching a hub id into the cache when allowed)."""
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"A {role} source must be a non-empty string, got {source!r}.")
    source = source.strip()
    demo = _demo_path(source, role)
    if demo is not None:
        return demo
    tried = []
    path = Path(source).expanduser()
    tried.append(f"a path ({path.resolve()})")
    if path.exists():
        return _check_local(path, source)
    folder = models_dir() / ("backbones" if role == "backbone" else "controlnets")
    bare = "/" not in source and "\\" not in source
    for cand in ([folder / source] + [folder / (source + s) for s in CHECKPOINT_SUFFIXES]) if bare else []:
        if cand.exists():
            return _check_local(cand, source)
    tried.append(f"a name under {folder}")
    if HUB_ID.match(source) and not source.startswith((".", "/")):
        return _hub(source, role)
    tried.append("a hub id (not of the form owner/name)")
    installed = list_installed()["backbones" if role == "backbone" else "controlnets"]
    raise ValueError(f"{role.capitalize()} source {source!r} matches nothing. Tried {'; '.join(tried)}. "
                     f"Installed: {', '.join(installed) or 'none'}.")


def _check_local(path: Path, source: str) -> Path:
    if path.is_file() and path.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise ValueError(f"{source!r} ({path}) is not a model file: expected a diffusers folder or one of "
                         f"{', '.join(CHECKPOINT_SUFFIXES)}.")
    return path


def _demo_path(source: str, role: str) -> Path | None:
    demo = models_dir() / "demo"
    if source == "demo":
        if role != "backbone":
            raise ValueError('"demo" names the demo backbone; demo ControlNets are "demo:<kind>", e.g. "demo:scribble".')
        path = demo / "backbone"
        if not path.is_dir():
            raise ValueError(f"The embedded demo model is not installed at {path}; rebuild it with "
                             "`python3 launch.py train-demo` or pick another backbone")
        return path
    if not source.startswith("demo:"):
        return None
    if role != "controlnet":
        raise ValueError(f'{source!r} names a demo ControlNet; the demo backbone is "demo".')
    kind = source.split(":", 1)[1].strip()
    path = demo / f"controlnet-{kind}"
    if not path.is_dir():
        have = [s for s in list_installed()["controlnets"] if s.startswith("demo:")]
        raise ValueError(f"The demo ControlNet for {kind!r} is not installed at {path} (installed: "
                         f"{', '.join(have) or 'none'}); rebuild the demo with `python3 launch.py train-demo` "
                         "or pick another ControlNet.")
    return path


def _hub(source: str, role: str) -> Path:
    """A hub id from the local cache, or downloaded into it when the user allows downloads."""
    owner, name, *rest = source.split("/")
    repo_id, filename = f"{owner}/{name}", "/".join(rest) or None
    cache = hf_cache_dir()
    allow = downloads_allowed()
    try:
        if filename:
            return Path(hf_hub_download(repo_id, filename, cache_dir=str(cache), local_files_only=not allow))
        patterns = ([f"{p}/*" for p in BACKBONE_PARTS] + ["model_index.json"] if role == "backbone"
                    else ["config.json", "*.safetensors", "*.bin"])
        return Path(snapshot_download(
            repo_id, cache_dir=str(cache), local_files_only=not allow, allow_patterns=patterns,
            ignore_patterns=["*.msgpack", "*.h5", "*.onnx*", "*.ckpt", "*non_ema*", "*openvino*"]))
    except LocalEntryNotFoundError as e:
        where = cache / f"models--{owner}--{name}"
        fix = ("It could not be downloaded either." if allow else
               "Downloads are off: set CNSTUDIO_ALLOW_DOWNLOAD=1 to allow them, or copy the model under "
               f"{models_dir() / ('backbones' if role == 'backbone' else 'controlnets')}.")
        raise ValueError(f"Hub model {source!r} is not in the local Hugging Face cache ({where}). {fix}") from e
    except OSError as e:  # a repo that does not exist, no network, ...
        raise ValueError(f"Hub model {source!r} could not be fetched: {str(e)[:200]}") from e


def sibling_config(path: Path) -> Path | None:
    """`<name>.config/` beside a single file: the diffusers configs for a file whose architecture
    the shipped ones do not cover (what `config_dir` is to single_file)."""
    folder = path.with_name(path.stem + ".config")
    return folder if folder.is_dir() else None


def list_installed() -> dict[str, list[str]]:
    """Source strings a user can pick: the demo's, then what is under models/backbones and models/controlnets."""
    root = models_dir()
    backbones = ["demo"] if (root / "demo" / "backbone").is_dir() else []
    demo_nets = sorted(p.name[len("controlnet-"):] for p in (root / "demo").glob("controlnet-*") if p.is_dir())
    controlnets = [f"demo:{k}" for k in demo_nets]
    backbones += _entries(root / "backbones")
    controlnets += _entries(root / "controlnets")
    return {"backbones": backbones, "controlnets": controlnets}


def _entries(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and not p.name.endswith(".config") and (
        (p.is_dir() and any((p / m).is_file() for m in ("model_index.json", "config.json", "controlnet/config.json")))
        or (p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES)))
