"""Write diffusers models back into the original single-file layouts (test helper).

The inverse of diffusers' loaders/single_file_utils conversion, in the spirit of diffusers'
scripts/convert_diffusers_to_original_stable_diffusion.py: an LDM backbone (`model.diffusion_model.`,
`first_stage_model.`, `cond_stage_model.transformer.` for OpenAI CLIP or `cond_stage_model.model.`
for OpenCLIP) and an lllyasviel ControlNet (`control_model.`). Tests load what this writes both
with the engine and with diffusers' own `from_single_file`, so this writer cannot simply agree
with the engine's reader.
"""
from __future__ import annotations

import torch

_RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
           ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]
_VAE_ATTN = [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")]


def _rename(sd: dict, src: str, dst: str, renames=()) -> dict:
    """Keys under `src.` moved to `dst.`, with inner renames applied to the rest of the key."""
    out = {}
    for k, v in sd.items():
        if k.startswith(src + "."):
            rest = k[len(src) + 1:]
            for a, b in renames:
                if rest.startswith(a + "."):
                    rest = b + rest[len(a):]
            out[f"{dst}.{rest}"] = v
    return out


def _unet_body(sd: dict, cfg, down_blocks: int, with_up: bool) -> dict:
    """The LDM names shared by a UNet and a ControlNet (input/middle/output blocks)."""
    n = cfg.layers_per_block
    out = {}
    out.update(_rename(sd, "time_embedding.linear_1", "time_embed.0"))
    out.update(_rename(sd, "time_embedding.linear_2", "time_embed.2"))
    out.update(_rename(sd, "conv_in", "input_blocks.0.0"))
    out.update(_rename(sd, "add_embedding.linear_1", "label_emb.0.0"))   # SDXL's text_time embedding
    out.update(_rename(sd, "add_embedding.linear_2", "label_emb.0.2"))
    for i in range(down_blocks):
        for j in range(n):
            ldm = 1 + i * (n + 1) + j
            out.update(_rename(sd, f"down_blocks.{i}.resnets.{j}", f"input_blocks.{ldm}.0", _RESNET))
            out.update(_rename(sd, f"down_blocks.{i}.attentions.{j}", f"input_blocks.{ldm}.1"))
        out.update(_rename(sd, f"down_blocks.{i}.downsamplers.0.conv", f"input_blocks.{(i + 1) * (n + 1)}.0.op"))
    out.update(_rename(sd, "mid_block.resnets.0", "middle_block.0", _RESNET))
    out.update(_rename(sd, "mid_block.attentions.0", "middle_block.1"))
    out.update(_rename(sd, "mid_block.resnets.1", "middle_block.2", _RESNET))
    if with_up:
        for i in range(len(cfg.up_block_types)):
            has_attn = any(k.startswith(f"up_blocks.{i}.attentions.") for k in sd)
            for j in range(n + 1):
                ldm = i * (n + 1) + j
                out.update(_rename(sd, f"up_blocks.{i}.resnets.{j}", f"output_blocks.{ldm}.0", _RESNET))
                out.update(_rename(sd, f"up_blocks.{i}.attentions.{j}", f"output_blocks.{ldm}.1"))
            up = f"output_blocks.{i * (n + 1) + n}.{2 if has_attn else 1}.conv"
            out.update(_rename(sd, f"up_blocks.{i}.upsamplers.0.conv", up))
        out.update(_rename(sd, "conv_norm_out", "out.0"))
        out.update(_rename(sd, "conv_out", "out.2"))
    return out


def unet_to_ldm(unet) -> dict[str, torch.Tensor]:
    sd = unet.state_dict()
    body = _unet_body(sd, unet.config, len(unet.config.down_block_types), with_up=True)
    _check_all_used(sd, body, "UNet")
    return {"model.diffusion_model." + k: v for k, v in body.items()}


def vae_to_ldm(vae) -> dict[str, torch.Tensor]:
    sd = vae.state_dict()
    out = {}
    for part in ("encoder", "decoder"):
        out.update(_rename(sd, f"{part}.conv_in", f"{part}.conv_in"))
        out.update(_rename(sd, f"{part}.conv_out", f"{part}.conv_out"))
        out.update(_rename(sd, f"{part}.conv_norm_out", f"{part}.norm_out"))
        out.update(_rename(sd, f"{part}.mid_block.resnets.0", f"{part}.mid.block_1", [("conv_shortcut", "nin_shortcut")]))
        out.update(_rename(sd, f"{part}.mid_block.resnets.1", f"{part}.mid.block_2", [("conv_shortcut", "nin_shortcut")]))
        attn = _rename(sd, f"{part}.mid_block.attentions.0", f"{part}.mid.attn_1", _VAE_ATTN)
        # the original stores these projections as 1x1 convolutions
        out.update({k: (v[:, :, None, None] if v.ndim == 2 else v) for k, v in attn.items()})
    levels = len(vae.config.block_out_channels)
    for i in range(levels):
        for j in range(vae.config.layers_per_block):
            out.update(_rename(sd, f"encoder.down_blocks.{i}.resnets.{j}", f"encoder.down.{i}.block.{j}",
                               [("conv_shortcut", "nin_shortcut")]))
        out.update(_rename(sd, f"encoder.down_blocks.{i}.downsamplers.0.conv", f"encoder.down.{i}.downsample.conv"))
        ldm = levels - 1 - i  # the decoder's levels are numbered from the bottom in LDM
        for j in range(vae.config.layers_per_block + 1):
            out.update(_rename(sd, f"decoder.up_blocks.{i}.resnets.{j}", f"decoder.up.{ldm}.block.{j}",
                               [("conv_shortcut", "nin_shortcut")]))
        out.update(_rename(sd, f"decoder.up_blocks.{i}.upsamplers.0.conv", f"decoder.up.{ldm}.upsample.conv"))
    for k in ("quant_conv", "post_quant_conv"):
        out.update(_rename(sd, k, k))
    _check_all_used(sd, out, "VAE")
    return {"first_stage_model." + k: v for k, v in out.items()}


def clip_to_ldm(text_encoder) -> dict[str, torch.Tensor]:
    """SD 1.x: the transformers CLIPTextModel under `cond_stage_model.transformer.text_model.`."""
    sd = {k.removeprefix("text_model."): v for k, v in text_encoder.state_dict().items()}
    n = text_encoder.config.max_position_embeddings
    sd["embeddings.position_ids"] = torch.arange(n)[None]  # real SD 1.x files carry this buffer
    return {"cond_stage_model.transformer.text_model." + k: v for k, v in sd.items()}


def open_clip_to_ldm(text_encoder, prefix: str = "cond_stage_model.model.") -> dict[str, torch.Tensor]:
    """SD 2.x: OpenCLIP's names, with q/k/v fused into in_proj as nn.MultiheadAttention keeps them."""
    sd = {k.removeprefix("text_model."): v for k, v in text_encoder.state_dict().items()}
    width = text_encoder.config.hidden_size
    out = {"token_embedding.weight": sd["embeddings.token_embedding.weight"],
           "positional_embedding": sd["embeddings.position_embedding.weight"],
           "ln_final.weight": sd["final_layer_norm.weight"], "ln_final.bias": sd["final_layer_norm.bias"],
           "text_projection": (text_encoder.text_projection.weight.T if hasattr(text_encoder, "text_projection")
                               else torch.eye(width))}
    for i in range(text_encoder.config.num_hidden_layers):
        src, dst = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.in_proj_{kind}"] = torch.cat(
                [sd[src + f"self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")])
            out[dst + f"attn.out_proj.{kind}"] = sd[src + f"self_attn.out_proj.{kind}"]
            out[dst + f"ln_1.{kind}"] = sd[src + f"layer_norm1.{kind}"]
            out[dst + f"ln_2.{kind}"] = sd[src + f"layer_norm2.{kind}"]
            out[dst + f"mlp.c_fc.{kind}"] = sd[src + f"mlp.fc1.{kind}"]
            out[dst + f"mlp.c_proj.{kind}"] = sd[src + f"mlp.fc2.{kind}"]
    return {prefix + k: v for k, v in out.items()}


def backbone_to_ldm(unet, vae, text_encoder, open_clip: bool = False, v_pred_marker: bool = False) -> dict:
    """A whole checkpoint as the original training code saved it, schedule buffers included."""
    sd = {**unet_to_ldm(unet), **vae_to_ldm(vae),
          **(open_clip_to_ldm(text_encoder) if open_clip else clip_to_ldm(text_encoder))}
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    sd["betas"] = betas.float()
    sd["alphas_cumprod"] = torch.cumprod(1 - betas, 0).float()
    if v_pred_marker:
        sd["v_pred"] = torch.tensor([])
    return {k: v.contiguous() for k, v in sd.items()}


def sdxl_backbone_to_ldm(parts: dict) -> dict:
    """An SDXL base checkpoint as Stability's sgm code saves it: CLIP ViT-L under
    `conditioner.embedders.0.transformer.`, OpenCLIP bigG under `conditioner.embedders.1.model.`."""
    clip = {k.removeprefix("cond_stage_model."): v for k, v in clip_to_ldm(parts["text_encoder"]).items()}
    sd = {**unet_to_ldm(parts["unet"]), **vae_to_ldm(parts["vae"]),
          **{"conditioner.embedders.0." + k: v for k, v in clip.items()},
          **open_clip_to_ldm(parts["text_encoder_2"], prefix="conditioner.embedders.1.model.")}
    return {k: v.contiguous() for k, v in sd.items()}


def controlnet_to_ldm(net, prefix: str = "control_model.") -> dict[str, torch.Tensor]:
    """lllyasviel's layout: the encoder copy, `zero_convs`, `middle_block_out` and the 15-layer
    `input_hint_block` (convs at even indices, SiLUs between)."""
    sd = net.state_dict()
    out = _unet_body(sd, net.config, len(net.config.down_block_types), with_up=False)
    out.update(_rename(sd, "controlnet_cond_embedding.conv_in", "input_hint_block.0"))
    n_blocks = len(net.controlnet_cond_embedding.blocks)
    for i in range(n_blocks):
        out.update(_rename(sd, f"controlnet_cond_embedding.blocks.{i}", f"input_hint_block.{2 * (i + 1)}"))
    out.update(_rename(sd, "controlnet_cond_embedding.conv_out", f"input_hint_block.{2 * (n_blocks + 1)}"))
    for i in range(len(net.controlnet_down_blocks)):
        out.update(_rename(sd, f"controlnet_down_blocks.{i}", f"zero_convs.{i}.0"))
    out.update(_rename(sd, "controlnet_mid_block", "middle_block_out.0"))
    _check_all_used(sd, out, "ControlNet")
    return {prefix + k: v.contiguous() for k, v in out.items()}


def _check_all_used(src: dict, out: dict, what: str) -> None:
    if len(out) != len(src):
        used = {id(v) for v in out.values()}
        missed = [k for k, v in src.items() if id(v) not in used]
        raise AssertionError(f"{what} writer left out {len(src) - len(out)} tensors, e.g. {missed[:5]}")


def write_config_folder(parts: dict, folder, with_tokenizer: bool = True) -> None:
    """A diffusers pipeline folder holding only configs (no weights), as `config_dir` takes and as
    diffusers' `from_single_file(config=...)` reads."""
    import json
    from pathlib import Path

    from diffusers import PNDMScheduler

    folder = Path(folder)
    parts["unet"].save_config(folder / "unet")
    parts["vae"].save_config(folder / "vae")
    parts["text_encoder"].config.save_pretrained(folder / "text_encoder")
    if with_tokenizer:
        parts["tokenizer"].save_pretrained(folder / "tokenizer")
    PNDMScheduler.from_config(parts["scheduler_config"]).save_config(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "feature_extractor": [None, None], "safety_checker": [None, None],
        "requires_safety_checker": False, "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}))
