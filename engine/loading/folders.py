"""Diffusers folders: a Stable Diffusion pipeline folder as backbone parts, a control model folder as
a ControlNetModel, ControlNetUnionModel or T2IAdapter; local files only, with errors that say what the folder lacks."""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, ControlNetModel, ControlNetUnionModel, T2IAdapter, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from . import adapters, tokenizers
from .files import class_name, read_scheduler_config

BACKBONE_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def load_backbone_folder(folder: Path, dtype: torch.dtype, source: str) -> dict:
    if class_name(folder / "config.json") == "ControlNetModel":
        raise ValueError(f"{source!r} ({folder}) is a ControlNet, not a backbone; use it in a control unit.")
    if (folder / "text_encoder_2").is_dir() and not (folder / "text_encoder").is_dir():
        raise ValueError(f"{source!r} ({folder}) is an SDXL refiner (it has only text_encoder_2/); refiners are not "
                         "supported as backbones: use an SDXL base model.")
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
        tokenizer = tokenizers.clip_tokenizer("sd2" if text_encoder.config.hidden_size == 1024 else "sd1")
    scheduler_config = read_scheduler_config(folder)
    parts = {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer,
             "scheduler_config": scheduler_config}
    if (folder / "text_encoder_2").is_dir():   # SDXL: a second, projecting text encoder
        parts["text_encoder_2"] = _from_pretrained(CLIPTextModelWithProjection, folder, "text_encoder_2", dtype)
        source_dir = folder if (folder / "tokenizer_2").is_dir() else tokenizers.CONFIGS_DIR / "sdxl-base"
        parts["tokenizer_2"] = tokenizers.for_config(source_dir, open_clip=True, subfolder="tokenizer_2")
    return parts


def load_controlnet_folder(folder: Path, dtype: torch.dtype, source: str):
    if not (folder / "config.json").is_file() and (folder / "controlnet" / "config.json").is_file():
        folder = folder / "controlnet"
    name = class_name(folder / "config.json")
    if name is None and (folder / "model_index.json").is_file():
        raise ValueError(f"{source!r} ({folder}) is a backbone (a pipeline folder), not a ControlNet.")
    if name == "T2IAdapter":
        return _from_pretrained(T2IAdapter, folder, None, dtype)
    if name in ("ControlNetModel", "ControlNetUnionModel") and adapters.folder_is_union(folder, adapters.read_config(folder)):
        count = adapters.union_type_count_in_folder(folder)
        return _from_pretrained(ControlNetUnionModel, folder, None, dtype,
                                **({} if count is None else {"num_control_type": count}))
    if name != "ControlNetModel":
        raise ValueError(f"{source!r} ({folder}) is not a diffusers ControlNet folder: its config.json "
                         f"{'names ' + repr(name) if name else 'is missing'}; expected ControlNetModel, "
                         "ControlNetUnionModel or T2IAdapter.")
    return _from_pretrained(ControlNetModel, folder, None, dtype)


_WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                 "model.safetensors", "pytorch_model.bin")


def _from_pretrained(cls, folder: Path, subfolder: str | None, dtype: torch.dtype, **overrides):
    """from_pretrained, local files only; picks the fp16 variant when it is the only one there."""
    where = folder / subfolder if subfolder else folder
    variant = None
    if not any((where / n).is_file() for n in _WEIGHT_NAMES) and any(where.glob("*.fp16.*")):
        variant = "fp16"
    kwargs = {"subfolder": subfolder, **overrides} if subfolder else dict(overrides)
    try:
        return cls.from_pretrained(str(folder), torch_dtype=dtype, local_files_only=True, variant=variant, **kwargs)
    except (OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"Could not load {cls.__name__} from {where}: {str(e)[:300]}") from e
