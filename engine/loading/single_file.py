"""Single checkpoint files in the original layouts: LDM backbones (`v1-5-pruned-emaonly.safetensors`,
`v2-1_768-ema-pruned.ckpt`) and lllyasviel ControlNets (`control_v11p_sd15_canny.pth`).

The file is read by safe_load (never fully unpickled), its architecture is told by detect, and
diffusers' own LDM->diffusers conversion turns it into diffusers models, configured from the
JSON configs shipped in engine/configs/, so nothing reaches a hub. A config folder passed as
`config_dir` replaces detection.
"""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from . import adapters, tokenizers
from .detect import (BACKBONE_CONFIGS, CONTROLNET_CONFIGS, SD1_TEXT_KEY, SD2_TEXT_KEY, SDXL_CLIP_PREFIX,
                     controlnet_part, detect_backbone, detect_controlnet, is_v_prediction, pass_config)
from .files import read_scheduler_config
from .paths import CONFIGS_DIR
from .safe_load import load_state_dict


def load_backbone_file(path: str | Path, dtype: torch.dtype = torch.float32,
                       config_dir: str | Path | None = None, device: str | torch.device = "cpu") -> dict:
    """Load an LDM-layout checkpoint as diffusers parts on `device`:
    dict(unet=, vae=, text_encoder=, tokenizer=, scheduler_config=dict).
    An SD 2.x file without a `v_pred` marker runs one UNet call on an 8x8 latent to tell
    v-prediction from epsilon: 3-8 s for SD 2's UNet on a 2-core CPU in fp32, far less on a GPU."""
    path = Path(path)
    sd = load_state_dict(path)
    if config_dir is None:
        family = detect_backbone(sd, path.name)
        cfg = CONFIGS_DIR / BACKBONE_CONFIGS[{"sd1": "sd1", "sdxl": "sdxl"}.get(family, "sd2-v")]
    else:
        family, cfg = None, _config_folder(config_dir, ("unet", "vae", "text_encoder", "scheduler"))
    if family == "sdxl" or (cfg / "text_encoder_2").is_dir():
        return _sdxl_parts(sd, cfg, dtype, path, device)

    unet = _convert(UNet2DConditionModel, sd, cfg, "unet", dtype, path).to(device)
    if family == "sd2" and not ("v_pred" in sd or is_v_prediction(unet)):
        cfg = CONFIGS_DIR / BACKBONE_CONFIGS["sd2-epsilon"]
        unet = _reconfigure(unet, cfg / "unet")
    vae = _convert(AutoencoderKL, sd, cfg, "vae", dtype, path).to(device)
    text_encoder = _text_encoder(sd, cfg, dtype, path).to(device)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder,
            "tokenizer": tokenizers.for_config(cfg, open_clip=SD2_TEXT_KEY in sd),
            "scheduler_config": read_scheduler_config(cfg)}


def _sdxl_parts(sd: dict, cfg: Path, dtype: torch.dtype, path: Path, device) -> dict:
    """An original-layout SDXL base checkpoint: diffusers converts each part against `cfg`."""
    unet = _convert(UNet2DConditionModel, sd, cfg, "unet", dtype, path).to(device)
    vae = _convert(AutoencoderKL, sd, cfg, "vae", dtype, path).to(device)
    encoders = [_text_encoder(sd, cfg, dtype, path, cls, sub).to(device) for cls, sub in
                ((CLIPTextModel, "text_encoder"), (CLIPTextModelWithProjection, "text_encoder_2"))]
    return {"unet": unet, "vae": vae, "text_encoder": encoders[0], "text_encoder_2": encoders[1],
            "tokenizer": tokenizers.for_config(cfg, open_clip=False),
            "tokenizer_2": tokenizers.for_config(cfg, open_clip=True, subfolder="tokenizer_2"),
            "scheduler_config": read_scheduler_config(cfg)}


def load_controlnet_file(path: str | Path, dtype: torch.dtype = torch.float32,
                         config_dir: str | Path | None = None):
    """Load an lllyasviel-layout (or diffusers-layout) ControlNet file as a diffusers ControlNetModel; a
    T2I-Adapter or ControlNet-Union file as its diffusers class (engine.loading.adapters)."""
    path = Path(path)
    sd = controlnet_part(load_state_dict(path))
    config_dir = None if config_dir is None else Path(config_dir)
    if adapters.is_adapter_state(sd):
        return adapters.load_adapter_state(sd, dtype, path.name, config_dir)
    if adapters.is_union_state(sd):
        return adapters.load_union_state(sd, dtype, path.name, config_dir)
    cfg = (CONFIGS_DIR / detect_controlnet(sd, path.name) if config_dir is None
           else _config_folder(config_dir, ()))
    if not (cfg / "config.json").is_file() and (cfg / "controlnet" / "config.json").is_file():
        cfg = cfg / "controlnet"
    extra = {"global_pool_conditions": True} if _pools_globally(path) else {}
    try:
        net = ControlNetModel.from_single_file(sd, config=str(cfg), torch_dtype=dtype, local_files_only=True, **extra)
    except (RuntimeError, ValueError, KeyError) as e:
        raise ValueError(f"{path.name} does not fit the ControlNet config in {cfg}: {e}. {pass_config(path.name)}") from e
    _check_complete(net, path, "ControlNet")
    return net


def _pools_globally(path: Path) -> bool:
    """Shuffle ControlNets average their residuals over space; lllyasviel's yaml beside the file
    says so (global_average_pooling), and A1111 also goes by the name."""
    yaml = path.with_suffix(".yaml")
    if yaml.is_file() and "global_average_pooling: true" in yaml.read_text(errors="ignore").lower():
        return True
    return "shuffle" in path.stem.lower()


def _config_folder(config_dir: str | Path, parts: tuple[str, ...]) -> Path:
    cfg = Path(config_dir)
    missing = [p for p in parts if not (cfg / p).is_dir()]
    if not cfg.is_dir() or missing:
        raise ValueError(f"Config folder {cfg} is missing {', '.join(missing) or 'entirely'}; it must be a diffusers "
                         "folder with the configs of " + (", ".join(parts) or "the model (config.json)") + ".")
    return cfg


def _convert(cls, sd: dict, cfg: Path, subfolder: str, dtype: torch.dtype, path: Path):
    try:
        model = cls.from_single_file(sd, config=str(cfg), subfolder=subfolder, torch_dtype=dtype,
                                     local_files_only=True)
    except (RuntimeError, ValueError, KeyError) as e:  # shape mismatches, missing weights
        raise ValueError(f"{path.name}: its {subfolder} does not fit the config in {cfg / subfolder}: "
                         f"{str(e)[:300]}. {pass_config(path.name)}") from e
    _check_complete(model, path, subfolder)
    return model


def _text_encoder(sd: dict, cfg: Path, dtype: torch.dtype, path: Path, cls=CLIPTextModel,
                  subfolder: str = "text_encoder"):
    if SD1_TEXT_KEY not in sd and SD2_TEXT_KEY not in sd and not any(k.startswith(SDXL_CLIP_PREFIX) for k in sd):
        raise ValueError(f"{path.name} holds no text encoder (neither {SD1_TEXT_KEY} nor {SD2_TEXT_KEY}). "
                         "Use a full checkpoint, or a diffusers folder.")
    try:
        model = create_diffusers_clip_model_from_ldm(cls, sd, subfolder=subfolder, config=str(cfg),
                                                     torch_dtype=dtype, local_files_only=True)
    except (RuntimeError, ValueError, KeyError) as e:
        raise ValueError(f"{path.name}: its {subfolder} does not fit the config in {cfg / subfolder}: "
                         f"{str(e)[:300]}. {pass_config(path.name)}") from e
    _check_complete(model, path, "text encoder")
    return model


def _check_complete(model: torch.nn.Module, path: Path, part: str) -> None:
    """diffusers builds the model on the meta device and fills it from the file; a weight the
    file lacks would stay an empty meta tensor and fail much later."""
    empty = [n for n, p in model.named_parameters() if p.is_meta]
    if empty:
        raise ValueError(f"{path.name} lacks {len(empty)} weights of the {part} (e.g. {empty[:3]}); the file is "
                         f"incomplete or of another architecture. {pass_config(path.name)}")


def _reconfigure(unet, unet_config: Path):
    """The same weights under another config of the same architecture (SD 2 base vs 768-v differ
    only in sample size and attention upcasting); tensors are shared, not copied."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        twin = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(unet_config)))
    twin.load_state_dict(unet.state_dict(), strict=True, assign=True)
    return twin.eval()
