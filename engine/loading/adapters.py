"""T2I-Adapters and ControlNet-Union / ProMax models, from diffusers folders or single files.

diffusers cannot load either class from a single file, so a file's tensors are read by safe_load
and put into a model built from a config: the one in `<name>.config/` beside the file when there
is one, else the one shipped in engine/configs/ for what the tensors are:
- adapters: `t2i-adapter-sd15` (full, 8x pixel-unshuffle), `t2i-adapter-sdxl` (full_adapter_xl,
  16x), `t2i-adapter-sd15-light`; told apart by the input conv's width (channels x factor^2) and
  the light adapter's missing input conv. The input channels (1 for sketch adapters, else 3) come
  from the weights. Both diffusers' layout (`adapter.body.0.resnets.0...`) and TencentARC's
  original one (`body.0.block1...`, A1111's .pth files) are read.
- Union: `controlnet-union-sdxl` (xinsir's config); the number of control types comes from the
  task embedding's rows (Union 6, ProMax 8), in folders too, never from the name.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from .files import read_json_object
from .paths import CONFIGS_DIR

ADAPTER_CONFIGS = {8: "t2i-adapter-sd15", 16: "t2i-adapter-sdxl"}
LIGHT_ADAPTER_CONFIG = "t2i-adapter-sd15-light"
UNION_CONFIG = "controlnet-union-sdxl"


def is_adapter_state(sd: dict) -> bool:
    keys = set(sd)
    return (any(k.startswith("adapter.body.") for k in keys)
            or (("conv_in.weight" in keys or "body.0.in_conv.weight" in keys)
                and any(re.match(r"body\.\d+\.(block1|body)", k) for k in keys)
                and not any(k.startswith(("down_blocks.", "input_blocks.")) for k in keys)))


def is_union_state(sd: dict) -> bool:
    return "task_embedding" in sd


def _config(name: str, config_dir: Path | None, fix: str) -> dict:
    folder = Path(config_dir) if config_dir is not None else CONFIGS_DIR / name
    if not (folder / "config.json").is_file() and (folder / "controlnet" / "config.json").is_file():
        folder = folder / "controlnet"
    return read_json_object(folder / "config.json", fix)


def _build(cls, config: dict, sd: dict, dtype: torch.dtype, name: str, what: str, fix: str):
    from accelerate import init_empty_weights

    config = {k: v for k, v in config.items() if not k.startswith("_")}
    try:
        with init_empty_weights():
            model = cls.from_config(config)
        model.load_state_dict(sd, strict=True, assign=True)
    except (RuntimeError, ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{name} does not fit the {what} config ({str(e)[:300]}). {fix}") from e
    return model.to(dtype).eval()


def _original_adapter_keys(sd: dict, num_res_blocks: int) -> dict:
    """TencentARC's full-adapter layout -> diffusers': body.{level * n + j} holds level `level`'s
    j-th resnet block; the first of a level also holds the 1x1 conv that changes the width."""
    out = {}
    for k, v in sd.items():
        m = re.match(r"body\.(\d+)\.(in_conv|block1|block2)\.(weight|bias)$", k)
        if m:
            level, j = divmod(int(m.group(1)), num_res_blocks)
            part = m.group(2)
            out[f"adapter.body.{level}.in_conv.{m.group(3)}" if part == "in_conv"
                else f"adapter.body.{level}.resnets.{j}.{part}.{m.group(3)}"] = v
        elif k.startswith("conv_in."):
            out["adapter." + k] = v
        else:
            out[k] = v
    return out


def load_adapter_state(sd: dict, dtype: torch.dtype, name: str, config_dir: Path | None = None):
    """A diffusers T2IAdapter from a single file's tensors."""
    from diffusers import T2IAdapter

    fix = (f"Place the adapter's diffusers config.json in {Path(name).stem}.config/ beside the file, or use "
           "the diffusers folder it came in.")
    diffusers_layout = any(k.startswith("adapter.") for k in sd)
    conv_in = sd.get("adapter.conv_in.weight" if diffusers_layout else "conv_in.weight")
    if conv_in is None:     # the light adapter has no input conv
        if config_dir is None and not diffusers_layout:
            raise ValueError(f"{name} is a light T2I-Adapter in TencentARC's original layout, which is not read here; "
                             f"convert it with diffusers' scripts/convert_original_t2i_adapter.py. {fix}")
        config = _config(LIGHT_ADAPTER_CONFIG, config_dir, fix)
    else:
        config = _config("", config_dir, fix) if config_dir is not None else None
        width = int(conv_in.shape[1])
        if config is None:
            factor = next((f for f in ADAPTER_CONFIGS if width in (f * f, 3 * f * f)), None)
            if factor is None:
                raise ValueError(f"{name}: unknown T2I-Adapter (its input conv reads {width} channels; SD 1.5 "
                                 f"adapters read 64 or 192, SDXL ones 256 or 768). {fix}")
            config = _config(ADAPTER_CONFIGS[factor], None, fix)
        factor = int(config.get("downscale_factor", 8))
        config["in_channels"] = max(1, width // (factor * factor))
    if not diffusers_layout:
        sd = _original_adapter_keys(sd, int(config.get("num_res_blocks", 2)))
    return _build(T2IAdapter, config, sd, dtype, name, "T2I-Adapter", fix)


def load_union_state(sd: dict, dtype: torch.dtype, name: str, config_dir: Path | None = None):
    """A diffusers ControlNetUnionModel from a single file's tensors; its type count from them."""
    from diffusers import ControlNetUnionModel

    fix = (f"Place the model's diffusers config.json in {Path(name).stem}.config/ beside the file, or use the "
           "diffusers folder it came in.")
    config = _config(UNION_CONFIG, config_dir, fix)
    config["num_control_type"] = int(sd["task_embedding"].shape[0])
    return _build(ControlNetUnionModel, config, sd, dtype, name, "ControlNet-Union", fix)


def union_type_count_in_folder(folder: Path) -> int | None:
    """The task embedding's rows in a folder's weights (safetensors header only), None if unread."""
    from safetensors import safe_open
    for file in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(file), framework="pt") as f:
                if "task_embedding" in f.keys():
                    return int(f.get_slice("task_embedding").get_shape()[0])
        except (OSError, ValueError, RuntimeError):
            continue
    return None


def folder_is_union(folder: Path, config: dict) -> bool:
    """xinsir's folders name the class ControlNetModel; their config or weights say Union."""
    return (config.get("_class_name") == "ControlNetUnionModel" or "num_control_type" in config
            or union_type_count_in_folder(folder) is not None)


def read_config(folder: Path) -> dict:
    try:
        data = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
