"""How control units act on the locked UNet: the step window, the residual scales of each
control mode, the mask, and a ControlNet forward that reuses a condition embedding computed
once per generation (the map does not change between steps, so neither does its embedding)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from annotators.image import fit

from .adapter import is_adapter, prepare_adapter
from .union import UnionControl, is_union, prepare_union, union_input, union_type_for


def in_window(step: int, total: int, start: float, end: float) -> bool:
    """diffusers' keep rule (REFERENCE.md): step i of N is kept unless i/N < start or (i+1)/N > end."""
    return not (step / total < start or (step + 1) / total > end)


def residual_scales(n_residuals: int, weight: float, mode: str) -> torch.Tensor:
    """Per-residual multipliers, shallow to deep, the middle block last. `balanced` uses the
    weight everywhere; `prompt` and `control` use soft injection, weight * logspace(-1, 0, n)
    (10^(-1/12) = 0.825 per level on SD1.5's 13 residuals, A1111's curve; diffusers' guess_mode)."""
    if mode == "balanced":
        return torch.full((n_residuals,), float(weight))
    return torch.logspace(-1, 0, n_residuals) * weight


@dataclass
class PreparedUnit:
    """A unit made ready for one generation: its net, its map's embedding, its scales."""

    net: torch.nn.Module
    embedding: torch.Tensor          # (1, C, h, w): controlnet_cond_embedding of the map
    scales: torch.Tensor             # (n_residuals,)
    start: float
    end: float
    cond_only: bool                  # `control` mode: the unconditional half gets no control
    mask: torch.Tensor | None        # (1, 1, H, W) in [0, 1] at image resolution
    pooled: bool                     # global_pool_conditions nets (e.g. shuffle) average their residuals
    union: UnionControl | None = None  # a Union model's control type, for its single-type call


def prepare_unit(unit, net, width: int, height: int, device, dtype, kind: str | None = None):
    """A unit made ready for one generation: a PreparedUnit for a ControlNet or Union model (`kind`:
    the condition kind of its annotator, which picks a Union type the unit does not name), an
    engine.adapter.PreparedAdapter for a T2I-Adapter."""
    if is_adapter(net):
        return prepare_adapter(unit, net, width, height, device, dtype)
    cfg = net.config
    if cfg.get("class_embed_type") or cfg.get("addition_embed_type") not in (None, "text_time"):
        raise ValueError(f"ControlNet {unit.model!r} needs embeddings this studio does not feed "
                         f"(class_embed_type {cfg.get('class_embed_type')!r}, addition_embed_type "
                         f"{cfg.get('addition_embed_type')!r}); SD 1.x/2.x and SDXL ControlNets are supported")
    order = cfg.get("controlnet_conditioning_channel_order", "rgb")
    if order not in ("rgb", "bgr"):
        raise ValueError(f"ControlNet {unit.model!r} has controlnet_conditioning_channel_order {order!r} in its "
                         "config; only 'rgb' and 'bgr' exist: fix its config.json")
    image = fit(unit.image, width, height, unit.resize_mode)
    cond = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float().div(255.0)
    if order == "bgr":   # a net trained on OpenCV's channel order reads the map flipped, as diffusers does
        cond = cond.flip(1)
    with torch.no_grad():
        embedding = net.controlnet_cond_embedding(cond.to(device=device, dtype=dtype))
    mask = None
    if unit.mask is not None:
        m = fit(unit.mask, width, height, unit.resize_mode)
        mask = torch.from_numpy(np.array(m)).float().div(255.0)[None, None].to(device=device, dtype=dtype)
    n_res = len(net.controlnet_down_blocks) + 1
    pooled = bool(cfg.get("global_pool_conditions", False))
    # A pooled net is scaled uniformly and fed the conditional half only, as diffusers does.
    scales = residual_scales(n_res, unit.weight, "balanced" if pooled else unit.mode).to(device)
    union = prepare_union(net, union_type_for(unit, kind, net), embedding, dtype) if is_union(net) else None
    return PreparedUnit(net, embedding, scales, unit.start, unit.end,
                        cond_only=pooled or unit.mode == "control", mask=mask, pooled=pooled, union=union)


def controlnet_forward(net, sample, timestep, text, embedding, added: dict | None = None,
                       union: UnionControl | None = None):
    """ControlNetModel.forward for SD 1.x/2.x and SDXL nets, with the condition embedding given
    instead of recomputed; returns the unscaled (down residuals, mid residual). `added` is SDXL's
    added_cond_kwargs: the pooled text embedding and the time ids join the timestep embedding
    (addition_embed_type "text_time"), as in diffusers' ControlNetModel.forward. With `union`, a
    ControlNetUnionModel's single-type call (engine.union)."""
    t = timestep if torch.is_tensor(timestep) else torch.tensor([timestep], device=sample.device)
    t = t.reshape(-1).expand(sample.shape[0])
    emb = net.time_embedding(net.time_proj(t).to(dtype=sample.dtype), None)
    if net.config.get("addition_embed_type") == "text_time":
        if added is None:
            raise ValueError("an SDXL ControlNet needs SDXL's pooled text embedding and time ids: use an SDXL backbone")
        text_embeds = added["text_embeds"]
        time_embeds = net.add_time_proj(added["time_ids"].flatten()).reshape(text_embeds.shape[0], -1)
        aug = net.add_embedding(torch.cat([text_embeds, time_embeds], dim=-1).to(emb.dtype))
        emb = emb + aug if union is None else emb + union.time_emb + aug   # diffusers' order of sums
    h = net.conv_in(sample) + embedding if union is None else union_input(net, sample, embedding, union)
    residuals = (h,)
    for block in net.down_blocks:
        if getattr(block, "has_cross_attention", False):
            h, res = block(hidden_states=h, temb=emb, encoder_hidden_states=text)
        else:
            h, res = block(hidden_states=h, temb=emb)
        residuals += res
    if net.mid_block is not None:
        if getattr(net.mid_block, "has_cross_attention", False):
            h = net.mid_block(h, emb, encoder_hidden_states=text)
        else:
            h = net.mid_block(h, emb)
    downs = [zero_conv(r) for r, zero_conv in zip(residuals, net.controlnet_down_blocks)]
    return downs, net.controlnet_mid_block(h)


def unit_residuals(unit: PreparedUnit, latents_in, timestep, text, cfg: bool, forward=controlnet_forward,
                   added: dict | None = None):
    """This unit's scaled residuals for the UNet batch. With CFG the batch is
    [unconditional, conditional]; a `control`-mode unit runs on the conditional half only
    and contributes zeros to the other, as diffusers' guess_mode does."""
    x, txt = latents_in, text
    if cfg and unit.cond_only:
        x, txt = latents_in.chunk(2)[1], text.chunk(2)[1]
        if added is not None:
            added = {k: v.chunk(2)[1] for k, v in added.items()}
    emb = unit.embedding.expand(x.shape[0], -1, -1, -1)
    if unit.union is not None:
        downs, mid = controlnet_forward(unit.net, x, timestep, txt, emb, added, unit.union)
    else:
        downs, mid = forward(unit.net, x, timestep, txt, emb, *(() if added is None else (added,)))
    scales = unit.scales
    out = [r * scales[i] for i, r in enumerate(downs)] + [mid * scales[-1]]
    if unit.pooled:
        out = [r.mean(dim=(2, 3), keepdim=True) for r in out]
    if unit.mask is not None:
        out = [r * F.interpolate(unit.mask, size=r.shape[-2:], mode="bilinear", align_corners=False)
               if r.shape[-1] > 1 else r for r in out]
    if cfg and unit.cond_only:
        out = [torch.cat([torch.zeros_like(r), r]) for r in out]
    return out


def combined_residuals(units, latents_in, timestep, text, cfg: bool, forward=controlnet_forward, streams=None,
                       added: dict | None = None):
    """Sum of the given units' residuals, or (None, None) when there are none. The caller
    passes only the units inside their window at this step: the others are not called at all.
    With CUDA `streams`, the units run side by side (one stream each) and join before the sum;
    the sum keeps unit order, so the result equals the serial one."""
    if not units:
        return None, None
    if streams and len(units) > 1:
        main = torch.cuda.current_stream()
        results = []
        for unit, stream in zip(units, streams):
            stream.wait_stream(main)
            with torch.cuda.stream(stream):
                results.append(unit_residuals(unit, latents_in, timestep, text, cfg, forward, added))
        for stream in streams[:len(units)]:
            main.wait_stream(stream)
    else:
        results = [unit_residuals(unit, latents_in, timestep, text, cfg, forward, added) for unit in units]
    total = results[0]
    for res in results[1:]:
        total = [a + b for a, b in zip(total, res)]
    return total[:-1], total[-1]
