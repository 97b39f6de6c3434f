"""What a model is, told from its weights or its name: an LDM backbone's family (SD 1.x / 2.x,
epsilon or v-prediction), a ControlNet's family, and the condition a ControlNet reads.

Rules (the shapes of a few tensors):
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
- condition kind: from the name, as the field names its models (`control_v11p_sd15_canny`).
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from .safe_load import CHECKPOINT_SUFFIXES

UNET_PREFIX = "model.diffusion_model."
CONTROL_PREFIX = "control_model."
SD1_TEXT_KEY = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
SD2_TEXT_KEY = "cond_stage_model.model.token_embedding.weight"
LDM_ATTN2 = "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
DIFFUSERS_ATTN2 = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"
BACKBONE_CONFIGS = {"sd1": "sd15", "sd2-epsilon": "sd2-base", "sd2-v": "sd2-v", "sdxl": "sdxl-base"}
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer."   # SDXL's OpenAI CLIP ViT-L
SDXL_OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."      # SDXL's OpenCLIP ViT-bigG
SDXL_CONTROLNET_CONFIGS = ("controlnet-sdxl-full", "controlnet-sdxl-mid", "controlnet-sdxl-small")
CONTROLNET_CONFIGS = {768: "controlnet-sd15", 1024: "controlnet-sd21"}


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


def pass_config(name: str | Path) -> str:
    folder = Path(name).stem + ".config/" if str(name) != "the file" else "<file name without extension>.config/"
    return ("Give it its configs: a diffusers folder holding them (unet/, vae/, text_encoder/, scheduler/ for a "
            f"backbone; config.json for a ControlNet), passed as `config_dir` or placed beside the file as {folder}")


def _shape(sd: dict, key: str) -> tuple | None:
    return tuple(sd[key].shape) if key in sd else None


def detect_backbone(sd: dict[str, torch.Tensor], name: str = "the file") -> str:
    """"sd1", "sd2" or "sdxl" from an LDM state dict's shapes; ValueError naming them otherwise."""
    if any(k.startswith("conditioner.embedders.") for k in sd):
        return _detect_sdxl(sd, name)
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
                         f"as a backbone. {pass_config(name)}")
    if width == 768 and has_clip:
        return "sd1"
    if width == 1024 and has_open_clip:
        return "sd2"
    raise ValueError(f"{name}: unknown architecture ({facts}); SD 1.x has width 768 with OpenAI CLIP, "
                     f"SD 2.x width 1024 with OpenCLIP. {pass_config(name)}")


def _detect_sdxl(sd: dict, name: str) -> str:
    """SDXL base: both encoders (embedders.0 CLIP, embedders.1 OpenCLIP). The refiner has only
    OpenCLIP, as embedders.0; a v-prediction SDXL carries a `v_pred` key. Both are refused."""
    if not any(k.startswith(SDXL_CLIP_PREFIX) for k in sd):
        raise ValueError(f"{name} is an SDXL refiner (one OpenCLIP text encoder, no CLIP ViT-L); refiners are not "
                         "supported as backbones: use an SDXL base checkpoint.")
    if "v_pred" in sd:
        raise ValueError(f"{name} is a v-prediction SDXL checkpoint (it has a v_pred key); only epsilon SDXL "
                         "checkpoints are supported.")
    if not any(k.startswith(SDXL_OPEN_CLIP_PREFIX) for k in sd) or not any(k.startswith(UNET_PREFIX) for k in sd):
        raise ValueError(f"{name} is an incomplete SDXL checkpoint: it lacks the "
                         f"{'UNet' if any(k.startswith(SDXL_OPEN_CLIP_PREFIX) for k in sd) else 'second text encoder'}"
                         f". Use a whole SDXL base checkpoint.")
    return "sdxl"


def is_control_lora(sd: dict) -> bool:
    """Stability's Control-LoRA files: a ControlNet stored as low-rank factors (`*.up`/`*.down`
    keys, or the `lora_controlnet` marker ComfyUI reads)."""
    return "lora_controlnet" in sd or any(k.endswith((".up", ".down")) for k in sd)


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
    if is_control_lora(sd):
        raise ValueError(f"{name} is a Control-LoRA (a ControlNet stored as low-rank factors); Control-LoRAs are "
                         "not supported: use a full ControlNet (e.g. diffusers_xl_canny_full / _mid / _small).")
    if "add_embedding.linear_1.weight" in sd:
        return _sdxl_controlnet_config(sd)
    if not _is_controlnet(sd):
        hint = " It holds a UNet: load it as a backbone." if any(k.startswith(UNET_PREFIX) for k in sd) else ""
        raise ValueError(f"{name} holds no ControlNet weights (no input_hint_block / controlnet_cond_embedding "
                         f"keys, nor a T2I-Adapter's or Union model's).{hint}")
    attn2 = _shape(sd, LDM_ATTN2) or _shape(sd, DIFFUSERS_ATTN2)
    if attn2 is None or attn2[1] not in CONTROLNET_CONFIGS:
        hint_conv = _shape(sd, "input_hint_block.0.weight") or _shape(sd, "controlnet_cond_embedding.conv_in.weight")
        raise ValueError(f"{name}: unknown ControlNet architecture (cross-attention to_k {attn2}, hint conv "
                         f"{hint_conv}); known: width 768 (SD 1.5), 1024 (SD 2.1). {pass_config(name)}")
    return CONTROLNET_CONFIGS[attn2[1]]


def _sdxl_controlnet_config(sd: dict) -> str:
    """An SDXL ControlNet in diffusers' layout: full, mid and small differ in the transformer
    layers of each level (full 1/2/10 as SDXL's UNet, mid 0/0/1, small 0/0/0), told by the keys."""
    layers = [len({k.split(".")[5] for k in sd if k.startswith(f"down_blocks.{i}.attentions.0.transformer_blocks.")})
              for i in range(3)]
    return {(0, 2, 10): "controlnet-sdxl-full", (0, 0, 1): "controlnet-sdxl-mid"}.get(tuple(layers),
                                                                                     "controlnet-sdxl-small")


@torch.no_grad()
def is_v_prediction(unet) -> bool:
    """AUTOMATIC1111's probe (see the module docstring): does the UNet predict v rather than noise?"""
    p = next(unet.parameters())
    cfg = unet.config
    x = torch.full((1, cfg.in_channels, 8, 8), 0.5, dtype=p.dtype, device=p.device)
    context = torch.full((1, 2, cfg.cross_attention_dim), 0.5, dtype=p.dtype, device=p.device)
    out = unet(x, torch.tensor([999], device=p.device), encoder_hidden_states=context).sample
    return float((out.float() - x.float()).mean()) < -1.0



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
