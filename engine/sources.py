"""Model sources: what a source string names, and loading it.

A source is one of, tried in this order:
- "demo" (backbone) / "demo:<kind>" (ControlNet): the embedded demo model under models/demo/;
- a path to a diffusers folder or a single .safetensors/.ckpt/.pth file (LDM / lllyasviel layout;
  a `<name>.config/` folder of diffusers configs beside the file overrides architecture detection);
- a bare name of a folder or file under models/backbones/ or models/controlnets/;
- a hub id "owner/name" (or "owner/name/file.safetensors") from the local Hugging Face cache;
  downloads only when the environment sets CNSTUDIO_ALLOW_DOWNLOAD=1.
The models folder is <repo>/models unless CNSTUDIO_MODELS says otherwise.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from . import limits
from .safe_load import CHECKPOINT_SUFFIXES
from .values import _number

REPO_ROOT = Path(__file__).resolve().parent.parent
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?$")
BACKBONE_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
# A backbone's own request defaults (InvokeAI keeps such per-model settings): the file in its
# folder, or `<name>.recommended.json` beside a single file. Keys starting with "_" are notes.
RECOMMENDED_FILE = "recommended.json"
RECOMMENDABLE = ("cfg_scale",)

# condition kinds (DESIGN.md) and the names the field uses for them, most specific first
CONDITION_ALIASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("lineart_anime", ("lineart_anime", "lineartanime", "anime_lineart")),
    ("softedge", ("softedge", "hed", "pidi", "pidinet", "teed")),
    ("openpose", ("openpose", "dwpose", "pose", "keypose")),
    ("scribble", ("scribble", "sketch", "doodle")),
    ("canny", ("canny",)),
    ("depth", ("depth", "midas", "zoe", "leres")),
    ("seg", ("seg", "segmentation", "ade20k")),
    ("lineart", ("lineart",)),
    ("mlsd", ("mlsd", "hough")),
    ("normal", ("normal", "normalbae")),
    ("shuffle", ("shuffle",)),
    ("tile", ("tile",)),
    ("inpaint", ("inpaint", "inpainting")),
)


def models_dir() -> Path:
    """The models folder: env CNSTUDIO_MODELS, else <repo>/models."""
    env = os.environ.get("CNSTUDIO_MODELS")
    return Path(env).expanduser() if env else REPO_ROOT / "models"


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


# ---------------------------------------------------------------- loading

def load_backbone_components(source: str, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> dict:
    """dict(unet, vae, text_encoder, tokenizer, scheduler_config, source) for a backbone source."""
    path = _resolve(source, "backbone")
    if path.is_dir():
        parts = _backbone_folder(path, dtype, source)
    else:
        from .single_file import load_backbone_file
        parts = load_backbone_file(path, dtype=dtype, config_dir=_sibling_config(path), device=device)
    for name in ("unet", "vae", "text_encoder"):
        parts[name] = parts[name].to(device).eval()
    return {**parts, "recommended": read_recommended(path), "source": source}


def recommended_settings(source: str) -> dict:
    """The request settings a backbone recommends for itself ({} when it names none), read
    without loading it: what the studio shows when an artist picks the backbone."""
    return read_recommended(_resolve(source, "backbone"))


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
        return {k: _number(k, v, 0.0, limits.MAX_CFG_SCALE) for k, v in settings.items()}
    except ValueError as e:
        raise ValueError(f"{file}: {e}.") from None


def load_controlnet_model(source: str, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """A diffusers ControlNetModel for a ControlNet source."""
    path = _resolve(source, "controlnet")
    if path.is_dir():
        net = _controlnet_folder(path, dtype, source)
    else:
        from .single_file import load_controlnet_file
        net = load_controlnet_file(path, dtype=dtype, config_dir=_sibling_config(path))
    return net.to(device).eval()


def _sibling_config(path: Path) -> Path | None:
    """`<name>.config/` beside a single file: the diffusers configs for a file whose architecture
    the shipped ones do not cover (what `config_dir` is to engine.single_file)."""
    folder = path.with_name(path.stem + ".config")
    return folder if folder.is_dir() else None


def _backbone_folder(folder: Path, dtype: torch.dtype, source: str) -> dict:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    if _class_name(folder / "config.json") == "ControlNetModel":
        raise ValueError(f"{source!r} ({folder}) is a ControlNet, not a backbone; use it in a control unit.")
    missing = [p for p in ("unet", "vae", "text_encoder", "scheduler") if not (folder / p).is_dir()]
    if missing:
        raise ValueError(f"{source!r} ({folder}) is not a diffusers Stable Diffusion folder: it lacks "
                         f"{', '.join(m + '/' for m in missing)}. Expected model_index.json with "
                         f"{', '.join(BACKBONE_PARTS)} subfolders.")
    unet = _from_pretrained(UNet2DConditionModel, folder, "unet", dtype)
    vae = _from_pretrained(AutoencoderKL, folder, "vae", dtype)
    text_encoder = _from_pretrained(CLIPTextModel, folder, "text_encoder", dtype)
    if (folder / "tokenizer").is_dir():
        tokenizer = CLIPTokenizer.from_pretrained(str(folder), subfolder="tokenizer", local_files_only=True)
    else:  # SD 2's OpenCLIP encoder is 1024 wide; its tokenizer pads differently
        from .tokenizer import clip_tokenizer
        tokenizer = clip_tokenizer("sd2" if text_encoder.config.hidden_size == 1024 else "sd1")
    scheduler_config = read_scheduler_config(folder)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer,
            "scheduler_config": scheduler_config}


def read_scheduler_config(folder: Path) -> dict:
    """The scheduler's config dict of a diffusers folder (scheduler/scheduler_config.json)."""
    return read_json_object(folder / "scheduler" / "scheduler_config.json",
                            "a backbone folder needs its scheduler config.")


def read_json_object(path: Path, fix: str) -> dict:
    """The JSON object in `path`, or a ValueError that names the file, what is wrong and `fix`."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is missing or not JSON ({e}); {fix}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object; {fix}")
    return data


def _controlnet_folder(folder: Path, dtype: torch.dtype, source: str):
    from diffusers import ControlNetModel

    if not (folder / "config.json").is_file() and (folder / "controlnet" / "config.json").is_file():
        folder = folder / "controlnet"
    name = _class_name(folder / "config.json")
    if name is None and (folder / "model_index.json").is_file():
        raise ValueError(f"{source!r} ({folder}) is a backbone (a pipeline folder), not a ControlNet.")
    if name != "ControlNetModel":
        raise ValueError(f"{source!r} ({folder}) is not a diffusers ControlNet folder: its config.json "
                         f"{'names ' + repr(name) if name else 'is missing'}; expected ControlNetModel.")
    return _from_pretrained(ControlNetModel, folder, None, dtype)


def _class_name(config_json: Path) -> str | None:
    try:
        return json.loads(config_json.read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None


_WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                 "model.safetensors", "pytorch_model.bin")


def _from_pretrained(cls, folder: Path, subfolder: str | None, dtype: torch.dtype):
    """from_pretrained, local files only; picks the fp16 variant when it is the only one there."""
    where = folder / subfolder if subfolder else folder
    variant = None
    if not any((where / n).is_file() for n in _WEIGHT_NAMES) and any(where.glob("*.fp16.*")):
        variant = "fp16"
    kwargs = {"subfolder": subfolder} if subfolder else {}
    try:
        return cls.from_pretrained(str(folder), torch_dtype=dtype, local_files_only=True, variant=variant, **kwargs)
    except (OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"Could not load {cls.__name__} from {where}: {str(e)[:300]}") from e


# ---------------------------------------------------------------- resolving

def _resolve(source: str, role: str) -> Path:
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
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

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


# ---------------------------------------------------------------- listing and naming

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


def condition_kind(name: str) -> str | None:
    """The condition a ControlNet reads, from its name as the field names them
    ("control_v11p_sd15_canny" -> "canny", "demo:scribble" -> "scribble", "sd-controlnet-hed" ->
    "softedge"); None when the name does not say."""
    if not name:
        return None
    base = name.split(":", 1)[1] if name.startswith("demo:") else re.split(r"[\\/]", name.rstrip("/\\"))[-1]
    stem = base.lower()
    for suffix in CHECKPOINT_SUFFIXES:
        stem = stem.removesuffix(suffix)
    tokens = [t for t in re.split(r"[^a-z0-9]+", stem) if t]
    joined = "_".join(tokens)
    for kind, aliases in CONDITION_ALIASES:
        for alias in aliases:
            if "_" in alias:
                if alias in joined:
                    return kind
            elif any(t == alias or (t.startswith(alias) and not t[len(alias):].isalpha()) for t in tokens):
                return kind
    return None
