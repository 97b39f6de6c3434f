"""Read a checkpoint file's tensors without running code from it.

`.safetensors` holds only tensors and is read as it is. `.ckpt`/`.pth`/`.pt`/`.bin` are
pickles: they go through torch's `weights_only` unpickler, which refuses every global that is
not on an allow-list. Real checkpoints hold a few globals besides tensors (AUTOMATIC1111's
modules/safe.py lists them for SD 1.x): the PyTorch Lightning `ModelCheckpoint` class used as a
dict key in `callbacks`, and numpy scalars/dtypes in the callback state. Those are mapped to
inert stand-ins here, so pytorch_lightning and numpy's pickle hooks are never reached and the
values are thrown away with everything else that is not a tensor.
"""
from __future__ import annotations

import _compat_pickle
import re
import threading
import zipfile
from pathlib import Path

import torch

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pth", ".pt", ".bin")
CHECKPOINT_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES


class _LightningStandIn:
    """Stands in for pytorch_lightning's ModelCheckpoint: accepts any arguments and state, keeps none."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


class _NumpyStandIn(_LightningStandIn):
    """Stands in for numpy scalars, dtypes and arrays found in training-state entries: state
    dicts hold tensors, so these values are never needed and are not rebuilt."""


def _numpy_reconstruct(*args, **kwargs) -> _NumpyStandIn:
    return _NumpyStandIn()


_NUMPY_DTYPE_CLASSES = [f"Float{n}DType" for n in (16, 32, 64)] + [
    f"{s}Int{n}DType" for s in ("", "U") for n in (8, 16, 32, 64)] + ["BoolDType", "Complex64DType", "Complex128DType"]

# full pickle name -> stand-in; numpy 2 pickles say numpy._core where numpy 1 said numpy.core
ALLOWED_EXTRA_GLOBALS: dict[str, object] = {
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint": _LightningStandIn,
    **{f"numpy.{core}.multiarray.{fn}": (_NumpyStandIn if fn == "scalar" else _numpy_reconstruct)
       for core in ("core", "_core") for fn in ("scalar", "_reconstruct")},
    "numpy.dtype": _NumpyStandIn,
    "numpy.ndarray": _NumpyStandIn,
    **{f"numpy.dtypes.{name}": _NumpyStandIn for name in _NUMPY_DTYPE_CLASSES},
}

# torch keeps the allow-list in one process-wide set; loads hold this lock so one load leaving
# its `safe_globals` block cannot take the names away from another still reading
_allow_lock = threading.Lock()


def load_state_dict(path: str | Path, nested: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, keyed by name, on the CPU. A `state_dict` nesting (Lightning
    checkpoints) is unwrapped; entries that are not tensors are dropped. With `nested`, a pickle's
    dicts of tensors are flattened to "outer.inner" keys (h94's IP-Adapter .bin files hold
    {"image_proj": {...}, "ip_adapter": {...}}, their .safetensors the flat names).

    Raises ValueError for a missing, unknown, corrupt or truncated file, or a pickle that needs a
    global outside the allow-list (the message names it)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Checkpoint file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        raw = _load_safetensors(path)
    elif suffix in PICKLE_SUFFIXES:
        raw = _load_pickle(path)
        if nested and isinstance(raw, dict):
            raw = _flattened(raw)
    else:
        raise ValueError(
            f"{path.name}: unknown checkpoint type {suffix!r}; expected one of {', '.join(CHECKPOINT_SUFFIXES)}.")
    return _tensors_only(raw, path)


def _load_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, RuntimeError) as e:
        raise ValueError(
            f"{path} is not a readable .safetensors file (corrupt or truncated: {e}). "
            "Download it again.") from e


def _load_pickle(path: Path) -> object:
    safe = [(obj, name) for name, obj in ALLOWED_EXTRA_GLOBALS.items()]
    # mmap keeps multi-GB files out of RAM until a tensor is touched; only the zip format has it
    use_mmap = zipfile.is_zipfile(path)
    with _allow_lock, torch.serialization.safe_globals(safe):
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=use_mmap)
        except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ... by cause
            refused = _refused_global(e)
            if refused:
                raise ValueError(
                    f"{path.name} was refused: its pickle needs the global {refused!r}, which is not on "
                    "the allow-list of what checkpoints may hold, so it was not loaded (a pickle can run "
                    "code). If you trust the file, convert it to .safetensors with the tool that made it "
                    "and load that instead.") from e
            raise ValueError(
                f"{path} is not a readable checkpoint (corrupt, truncated or not a PyTorch file: "
                f"{type(e).__name__}: {_first_sentence(e)}). Download it again, or use a .safetensors file.") from e


_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def _refused_global(err: Exception) -> str | None:
    """The global torch's weights_only unpickler refused, from its message; None when it refused
    nothing (a broken file). Pickle protocol 2 writes Python 2 module names (`commands.run` for
    `subprocess.run`); they are translated back as pickle itself does."""
    text = str(err)
    m = _GLOBAL_RE.search(text)
    if m is None:
        return "an unknown global" if "weights_only" in text.lower() and "allowlist" in text.lower() else None
    module, _, name = m.group(1).rpartition(".")
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    return f"{module}.{name}" if module else name


def _first_sentence(err: Exception) -> str:
    return str(err).split(". ")[0].strip()[:200]


def _flattened(raw: dict) -> dict:
    flat = {}
    for key, value in raw.items():
        if isinstance(value, dict) and isinstance(key, str):
            flat.update({f"{key}.{k}": v for k, v in value.items() if isinstance(k, str)})
        else:
            flat[key] = value
    return flat


def _tensors_only(raw: object, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict):
        raise ValueError(f"{path.name} holds a {type(raw).__name__}, not a state dict of named tensors.")
    tensors = {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(f"{path.name} holds no tensors; it is not a model checkpoint.")
    return tensors
