"""Single checkpoint files in the original layouts: LDM backbones (`v1-5-pruned-emaonly.safetensors`,
`v2-1_768-ema-pruned.ckpt`) and lllyasviel ControlNets (`control_v11p_sd15_canny.pth`).

The file is read by engine.safe_load (never fully unpickled), its architecture is told from the
shapes of a few tensors, and diffusers' own LDM->diffusers conversion turns it into diffusers
models, configured from the JSON configs shipped in engine/configs/, so nothing reaches a hub.

Architecture rules:
- backbone: the UNet's cross-attention width (`input_blocks.1.1...attn2.to_k.weight`, dim 1)
  is 768 for SD 1.x, whose text encoder is OpenAI CLIP (`cond_stage_model.transformer.*`), and
  1024 for SD 2.x, whose text encoder is OpenCLIP (`cond_stage_model.model.*`).
- SD 2.x epsilon (512 base) vs v-prediction (768-v): the files look alike. A `v_pred` key marks
  v-prediction (ComfyUI's convention). Otherwise the UNet is asked, as AUTOMATIC1111 does
  (sd_models_config.is_using_v_parameterization_for_sd2): at t=999 on a constant 0.5 latent and
  context, an epsilon model predicts about the input itself, a v model predicts far below it;
  mean(output - input) < -1 means v-prediction. (diffusers' legacy rule, global_step == 875000
  means epsilon, needs training state that .safetensors files do not carry.)
- ControlNet: the same cross-attention width, 768 -> SD 1.5, 1024 -> SD 2.1, read from the
  `control_model.`-prefixed keys of lllyasviel's files, from unprefixed ones, or from a file
  already in diffusers' layout.
A config folder passed as `config_dir` replaces detection.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .safe_load import load_state_dict

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"

UNET_PREFIX = "model.diffusion_model."
CONTROL_PREFIX = "control_model."
SD1_TEXT_KEY = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
SD2_TEXT_KEY = "cond_stage_model.model.token_embedding.weight"
LDM_ATTN2 = "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
DIFFUSERS_ATTN2 = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"
BACKBONE_CONFIGS = {"sd1": "sd15", "sd2-epsilon": "sd2-base", "sd2-v": "sd2-v"}
CONTROLNET_CONFIGS = {768: "controlnet-sd15", 1024: "controlnet-sd21"}


def _pass_config(name: str | Path) -> str:
    folder = Path(name).stem + ".config/" if str(name) != "the file" else "<file name without extension>.config/"
    return ("Give it its configs: a diffusers folder holding them (unet/, vae/, text_encoder/, scheduler/ for a "
            f"backbone; config.json for a ControlNet), passed as `config_dir` or placed beside the file as {folder}")


def _shape(sd: dict, key: str) -> tuple | None:
    return tuple(sd[key].shape) if key in sd else None


def detect_backbone(sd: dict[str, torch.Tensor], name: str = "the file") -> str:
    """"sd1" or "sd2" from an LDM state dict's shapes; ValueError naming them otherwise."""
    if any(k.startswith("conditioner.embedders.") for k in sd):
        raise ValueError(f"{name} is an SDXL checkpoint; only SD 1.x and 2.x backbones are supported.")
    if not any(k.startswith(UNET_PREFIX) for k in sd):
        hint = (" It holds ControlNet weights: load it as a ControlNet." if _is_controlnet(sd)
                else " It may be a VAE, LoRA or embedding, or a UNet in diffusers' layout (use a diffusers folder).")
        raise ValueError(f"{name} holds no UNet ({UNET_PREFIX}* keys), so it is not a full SD checkpoint.{hint}")
    conv_in = _shape(sd, UNET_PREFIX + "input_blocks.0.0.weight")
    attn2 = _shape(sd, UNET_PREFIX + LDM_ATTN2)
    width = attn2[1] if attn2 else None
    has_clip, has_open_clip = SD1_TEXT_KEY in sd, SD2_TEXT_KEY in sd
    facts = (f"UNet input conv {conv_in}, cross-attention to_k {attn2}, text encoder "
             f"{'OpenAI CLIP' if has_clip else 'OpenCLIP' if has_open_clip else 'missing'}")
    if conv_in is not None and conv_in[1] != 4:
        kind = {9: "an inpainting model", 8: "an instruct-pix2pix model"}.get(conv_in[1], "not a text-to-image model")
        raise ValueError(f"{name} is {kind} ({conv_in[1]} UNet input channels; {facts}), which is not supported "
                         f"as a backbone. {_pass_config(name)}")
    if width == 768 and has_clip:
        return "sd1"
    if width == 1024 and has_open_clip:
        return "sd2"
    raise ValueError(f"{name}: unknown architecture ({facts}); SD 1.x has width 768 with OpenAI CLIP, "
                     f"SD 2.x width 1024 with OpenCLIP. {_pass_config(name)}")


def _is_controlnet(sd: dict) -> bool:
    return any(k.startswith(CONTROL_PREFIX) or k.startswith("input_hint_block.")
               or k.startswith("controlnet_cond_embedding.") for k in sd)


def controlnet_part(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ControlNet's own tensors: lllyasviel's 1.0 files also carry a whole SD model, and
    their keys start with `control_model.`; later files drop the prefix."""
    if any(k.startswith(CONTROL_PREFIX) for k in sd):
        return {k[len(CONTROL_PREFIX):]: v for k, v in sd.items() if k.startswith(CONTROL_PREFIX)}
    return sd


def detect_controlnet(sd: dict[str, torch.Tensor], name: str = "the file") -> str:
    """The shipped config folder name for a ControlNet state dict (prefix already stripped)."""
    if not _is_controlnet(sd):
        hint = " It holds a UNet: load it as a backbone." if any(k.startswith(UNET_PREFIX) for k in sd) else ""
        raise ValueError(f"{name} holds no ControlNet weights (no input_hint_block / controlnet_cond_embedding "
                         f"keys); T2I-Adapters and Control-LoRAs are not supported.{hint}")
    attn2 = _shape(sd, LDM_ATTN2) or _shape(sd, DIFFUSERS_ATTN2)
    if attn2 is None or attn2[1] not in CONTROLNET_CONFIGS:
        hint_conv = _shape(sd, "input_hint_block.0.weight") or _shape(sd, "controlnet_cond_embedding.conv_in.weight")
        raise ValueError(f"{name}: unknown ControlNet architecture (cross-attention to_k {attn2}, hint conv "
                         f"{hint_conv}); known: width 768 (SD 1.5), 1024 (SD 2.1). {_pass_config(name)}")
    return CONTROLNET_CONFIGS[attn2[1]]


@torch.no_grad()
def is_v_prediction(unet) -> bool:
    """AUTOMATIC1111's probe (see the module docstring): does the UNet predict v rather than noise?"""
    p = next(unet.parameters())
    cfg = unet.config
    x = torch.full((1, cfg.in_channels, 8, 8), 0.5, dtype=p.dtype, device=p.device)
    context = torch.full((1, 2, cfg.cross_attention_dim), 0.5, dtype=p.dtype, device=p.device)
    out = unet(x, torch.tensor([999], device=p.device), encoder_hidden_states=context).sample
    return float((out.float() - x.float()).mean()) < -1.0


def load_backbone_file(path: str | Path, dtype: torch.dtype = torch.float32,
                       config_dir: str | Path | None = None, device: str | torch.device = "cpu") -> dict:
    """Load an LDM-layout checkpoint as diffusers parts on `device`:
    dict(unet=, vae=, text_encoder=, tokenizer=, scheduler_config=dict).
    An SD 2.x file without a `v_pred` marker runs one UNet call on an 8x8 latent to tell
    v-prediction from epsilon: 3-8 s for SD 2's UNet on a 2-core CPU in fp32, far less on a GPU."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    path = Path(path)
    sd = load_state_dict(path)
    if config_dir is None:
        family = detect_backbone(sd, path.name)
        cfg = CONFIGS_DIR / BACKBONE_CONFIGS["sd1" if family == "sd1" else "sd2-v"]
    else:
        family, cfg = None, _config_folder(config_dir, ("unet", "vae", "text_encoder", "scheduler"))

    unet = _convert(UNet2DConditionModel, sd, cfg, "unet", dtype, path).to(device)
    if family == "sd2" and not ("v_pred" in sd or is_v_prediction(unet)):
        cfg = CONFIGS_DIR / BACKBONE_CONFIGS["sd2-epsilon"]
        unet = _reconfigure(unet, cfg / "unet")
    vae = _convert(AutoencoderKL, sd, cfg, "vae", dtype, path).to(device)
    text_encoder = _text_encoder(sd, cfg, dtype, path).to(device)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder,
            "tokenizer": _tokenizer(cfg, open_clip=SD2_TEXT_KEY in sd),
            "scheduler_config": _scheduler_config(cfg)}


def load_controlnet_file(path: str | Path, dtype: torch.dtype = torch.float32,
                         config_dir: str | Path | None = None):
    """Load an lllyasviel-layout (or diffusers-layout) ControlNet file as a diffusers ControlNetModel."""
    from diffusers import ControlNetModel

    path = Path(path)
    sd = controlnet_part(load_state_dict(path))
    cfg = (CONFIGS_DIR / detect_controlnet(sd, path.name) if config_dir is None
           else _config_folder(config_dir, ()))
    if not (cfg / "config.json").is_file() and (cfg / "controlnet" / "config.json").is_file():
        cfg = cfg / "controlnet"
    extra = {"global_pool_conditions": True} if _pools_globally(path) else {}
    try:
        net = ControlNetModel.from_single_file(sd, config=str(cfg), torch_dtype=dtype, local_files_only=True, **extra)
    except (RuntimeError, ValueError, KeyError) as e:
        raise ValueError(f"{path.name} does not fit the ControlNet config in {cfg}: {e}. {_pass_config(path.name)}") from e
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
                         f"{str(e)[:300]}. {_pass_config(path.name)}") from e
    _check_complete(model, path, subfolder)
    return model


def _text_encoder(sd: dict, cfg: Path, dtype: torch.dtype, path: Path):
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm
    from transformers import CLIPTextModel

    if SD1_TEXT_KEY not in sd and SD2_TEXT_KEY not in sd:
        raise ValueError(f"{path.name} holds no text encoder (neither {SD1_TEXT_KEY} nor {SD2_TEXT_KEY}). "
                         "Use a full checkpoint, or a diffusers folder.")
    try:
        model = create_diffusers_clip_model_from_ldm(CLIPTextModel, sd, subfolder="text_encoder", config=str(cfg),
                                                     torch_dtype=dtype, local_files_only=True)
    except (RuntimeError, ValueError, KeyError) as e:
        raise ValueError(f"{path.name}: its text encoder does not fit the config in {cfg / 'text_encoder'}: "
                         f"{str(e)[:300]}. {_pass_config(path.name)}") from e
    _check_complete(model, path, "text encoder")
    return model


def _check_complete(model: torch.nn.Module, path: Path, part: str) -> None:
    """diffusers builds the model on the meta device and fills it from the file; a weight the
    file lacks would stay an empty meta tensor and fail much later."""
    empty = [n for n, p in model.named_parameters() if p.is_meta]
    if empty:
        raise ValueError(f"{path.name} lacks {len(empty)} weights of the {part} (e.g. {empty[:3]}); the file is "
                         f"incomplete or of another architecture. {_pass_config(path.name)}")


def _reconfigure(unet, unet_config: Path):
    """The same weights under another config of the same architecture (SD 2 base vs 768-v differ
    only in sample size and attention upcasting); tensors are shared, not copied."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    with init_empty_weights():
        twin = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(unet_config)))
    twin.load_state_dict(unet.state_dict(), strict=True, assign=True)
    return twin.eval()


def _tokenizer(cfg: Path, open_clip: bool):
    if (cfg / "tokenizer").is_dir():
        from transformers import CLIPTokenizer
        return CLIPTokenizer.from_pretrained(str(cfg / "tokenizer"), local_files_only=True)
    from .tokenizer import clip_tokenizer
    return clip_tokenizer("sd2" if open_clip else "sd1")


def _scheduler_config(cfg: Path) -> dict:
    from .sources import read_scheduler_config
    return read_scheduler_config(cfg)
