"""Tiny LoRA files for the tiny backbones, written in the two layouts users meet:

- A1111/kohya (sd-scripts): `lora_unet_<module with _>.lora_down/.lora_up.weight` + `.alpha`,
  text encoders `lora_te_` (SDXL: `lora_te1_`, `lora_te2_`) over `text_model_encoder_layers_...`;
- diffusers (`save_lora_weights`): `unet.<module>.lora_A/.lora_B.weight`,
  `text_encoder.text_model.encoder.layers....lora_A.weight`, no alphas (scale 1).

`merged_weights` gives each layer's W + weight * alpha/rank * up @ down straight from the
tensors written, the reference for the text encoders that diffusers cannot load here.
"""
from __future__ import annotations

import torch
from safetensors.torch import save_file

UNET_TARGETS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
                "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0")
TE_TARGETS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj")
KOHYA_TE = {"text_encoder": "lora_te", "text_encoder_2": "lora_te2"}
KOHYA_TE_XL = {"text_encoder": "lora_te1", "text_encoder_2": "lora_te2"}


def make_lora(parts: dict, seed: int, rank: int = 4, alpha: float = 2.0, strength: float = 0.3,
              encoders=("text_encoder",)) -> dict:
    """{(component, module name): (down, up, alpha)} for the UNet's attention layers and each
    named text encoder's attention projections; `strength` sizes the change (visible, not wild)."""
    g = torch.Generator().manual_seed(seed)
    layers = {}
    for component in ("unet",) + tuple(encoders):
        targets = UNET_TARGETS if component == "unet" else TE_TARGETS
        for name, module in parts[component].named_modules():
            if isinstance(module, torch.nn.Linear) and name.endswith(targets):
                out_f, in_f = module.weight.shape
                down = torch.randn(rank, in_f, generator=g) * (strength / in_f ** 0.5)
                up = torch.randn(out_f, rank, generator=g) * (strength * 4 / rank ** 0.5)
                layers[(component, name)] = (down, up, alpha)
    return layers


def _field_name(component: str, name: str) -> str:
    # LoRA files name the text encoder's layers as transformers 4 did (text_model.encoder...)
    return name if component == "unet" or name.startswith("text_model.") else f"text_model.{name}"


def save_kohya(layers: dict, path, sdxl: bool = False) -> None:
    prefixes = {"unet": "lora_unet", **(KOHYA_TE_XL if sdxl else KOHYA_TE)}
    tensors = {}
    for (component, name), (down, up, alpha) in layers.items():
        key = f"{prefixes[component]}_{_field_name(component, name).replace('.', '_')}"
        tensors[f"{key}.lora_down.weight"] = down.contiguous()
        tensors[f"{key}.lora_up.weight"] = up.contiguous()
        tensors[f"{key}.alpha"] = torch.tensor(float(alpha))
    save_file(tensors, str(path))


def save_diffusers(layers: dict, path) -> None:
    """diffusers' layout has no alpha: up is pre-scaled by alpha/rank so the file means the same."""
    tensors = {}
    for (component, name), (down, up, alpha) in layers.items():
        key = f"{component}.{_field_name(component, name)}"
        tensors[f"{key}.lora_A.weight"] = down.contiguous()
        tensors[f"{key}.lora_B.weight"] = (up * (alpha / down.shape[0])).contiguous()
    save_file(tensors, str(path))


def merged_weights(layers_and_weights, component: str) -> dict:
    """{module name: delta W} summed over (layers, weight) pairs for one component."""
    deltas = {}
    for layers, weight in layers_and_weights:
        for (comp, name), (down, up, alpha) in layers.items():
            if comp == component:
                delta = weight * (alpha / down.shape[0]) * (up @ down)
                deltas[name] = deltas.get(name, 0) + delta
    return deltas
