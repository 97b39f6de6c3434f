"""Tiny IP-Adapter files in h94/IP-Adapter's layout and tiny CLIP image encoders, for a tiny UNet:
what a user places under models/ipadapters/, at test size.

The projection weights come from diffusers' own modules (ImageProjection, the plus Resampler)
with their keys renamed back to h94's names, so reading them through diffusers' converter is
the test of the layout; the cross-attention layers are numbered 1, 3, 5, ... in the UNet's
attn_processors order, as h94's training code numbered them."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

# a "ViT-H" and a "ViT-bigG" at test size: their widths differ, as the real ones' do (1280/1024, 1664/1280)
VIT_H = dict(hidden_size=32, projection_dim=24)
VIT_BIGG = dict(hidden_size=40, projection_dim=28)


def save_encoder(folder: Path, widths: dict, seed: int = 0, shape: dict | None = None,
                 dtype: torch.dtype = torch.float32) -> CLIPVisionModelWithProjection:
    """A CLIP image encoder folder (config.json + model.safetensors); `shape` overrides the tiny
    layer count, heads, sizes (the bench writes a ViT-H/14-sized one)."""
    cfg = CLIPVisionConfig(**{**dict(intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                                     image_size=32, patch_size=8), **(shape or {}), **widths})
    torch.manual_seed(seed)
    model = CLIPVisionModelWithProjection(cfg).eval().to(dtype)
    model.save_pretrained(str(folder))
    return model


def _hidden_sizes(unet) -> list[int]:
    blocks = list(unet.config.block_out_channels)
    out = []
    for name in unet.attn_processors:
        if not name.endswith("attn2.processor"):
            continue
        if name.startswith("mid_block"):
            out.append(blocks[-1])
        elif name.startswith("up_blocks"):
            out.append(blocks[::-1][int(name[len("up_blocks.")])])
        else:
            out.append(blocks[int(name[len("down_blocks.")])])
    return out


def _plus_to_h94(key: str) -> str:
    """diffusers' IPAdapterPlusImageProjection name -> the original Resampler's (inverse of
    diffusers' converter); to_k/to_v are joined into to_kv by the caller."""
    parts = key.split(".")
    if parts[0] != "layers":
        return key
    i, rest = parts[1], ".".join(parts[2:])
    table = {"ln0": "0.norm1", "ln1": "0.norm2", "attn.to_q": "0.to_q", "attn.to_out.0": "0.to_out",
             "ff.0": "1.0", "ff.1.net.0.proj": "1.1", "ff.1.net.2": "1.3"}
    for ours, theirs in table.items():
        if rest.startswith(ours + "."):
            return f"layers.{i}.{theirs}{rest[len(ours):]}"
    raise KeyError(key)


def make_ip_adapter(unet, encoder_widths: dict, plus: bool = False, seed: int = 0, strength: float = 0.5,
                    resampler: dict | None = None) -> dict:
    """{h94 key: tensor} of an IP-Adapter for `unet` reading an encoder of these widths
    (`resampler`: the plus projection's hidden_dims/heads/num_queries, tiny by default)."""
    from diffusers.models.embeddings import ImageProjection, IPAdapterPlusImageProjection
    cross = unet.config.cross_attention_dim
    torch.manual_seed(seed)
    sd = {}
    if plus:
        shape = resampler or dict(hidden_dims=64, heads=1, num_queries=6)
        proj = IPAdapterPlusImageProjection(embed_dims=encoder_widths["hidden_size"], output_dims=cross, **shape)
        own = proj.state_dict()
        for key, value in own.items():
            if ".attn.to_k." in key:
                sd["image_proj." + _plus_to_h94(key.replace("attn.to_k", "attn.to_q")).replace("to_q", "to_kv")] = \
                    torch.cat([value, own[key.replace("to_k", "to_v")]])
            elif ".attn.to_v." not in key:
                sd["image_proj." + _plus_to_h94(key)] = value
    else:
        proj = ImageProjection(image_embed_dim=encoder_widths["projection_dim"], cross_attention_dim=cross,
                               num_image_text_embeds=4)
        for key, value in proj.state_dict().items():
            sd["image_proj." + key.replace("image_embeds", "proj")] = value
        sd["image_proj.norm.weight"] = 1 + 0.2 * torch.randn(cross)
    for j, hidden in enumerate(_hidden_sizes(unet)):
        k = 1 + 2 * j
        sd[f"ip_adapter.{k}.to_k_ip.weight"] = strength * torch.randn(hidden, cross) / cross ** 0.5 * 4
        sd[f"ip_adapter.{k}.to_v_ip.weight"] = strength * torch.randn(hidden, cross) / cross ** 0.5 * 4
    return {k: v.detach().clone().contiguous() for k, v in sd.items()}


def save_safetensors(sd: dict, path: Path) -> Path:
    save_file(sd, str(path))
    return path


def save_bin(sd: dict, path: Path) -> Path:
    """h94's .bin layout: torch.save({"image_proj": {...}, "ip_adapter": {...}})."""
    nested = {"image_proj": {}, "ip_adapter": {}}
    for key, value in sd.items():
        head, _, rest = key.partition(".")
        nested[head][rest] = value
    torch.save(nested, str(path))
    return path
