"""ControlNet-Union / ProMax units (xinsir; diffusers' ControlNetUnionModel, SDXL only): one model
that reads many kinds of map, told which by a control type. Each unit makes its own single-type
call, as AUTOMATIC1111's extension does, so its weight, window, mode and mask act on its own
residuals exactly as for any ControlNet; diffusers' fused multi-type call is not offered.

A single-type call differs from a ControlNet's in two places (diffusers' forward): the timestep
embedding gains the control type's embedding, and before the down blocks a small transformer
mixes the map's pooled embedding (plus the type's task embedding) with the latent's pooled
features into a per-channel shift, added with the map's embedding. Everything that depends on
the map alone is computed once per generation."""
from __future__ import annotations

from dataclasses import dataclass

import torch

# AUTOMATIC1111's ControlNet extension's names for the types, in the model's order (xinsir's
# README: 0 openpose, 1 depth, 2 thick lines, 3 thin lines, 4 normal, 5 segment; ProMax adds
# 6 tile and 7 inpaint/repaint). The API's union_control_type takes these names.
UNION_CONTROL_TYPES = ("OpenPose", "Depth", "Soft Edge", "Hard Edge", "Normal Map", "Segmentation", "Tile", "Inpaint")

# the studio's condition kinds (engine.loading.detect) -> the type that reads them
KIND_TO_UNION_TYPE = {
    "openpose": "OpenPose", "depth": "Depth", "softedge": "Soft Edge", "scribble": "Soft Edge",
    "canny": "Hard Edge", "lineart": "Hard Edge", "lineart_anime": "Hard Edge", "mlsd": "Hard Edge",
    "normal": "Normal Map", "seg": "Segmentation", "tile": "Tile", "inpaint": "Inpaint",
}


def is_union(net) -> bool:
    return type(net).__name__ == "ControlNetUnionModel"


def type_count(net_or_state) -> int:
    """How many control types a Union model knows, read from its task embedding's rows (Union 6,
    ProMax 8), never from its name or config."""
    if isinstance(net_or_state, dict):
        return int(net_or_state["task_embedding"].shape[0])
    return int(net_or_state.task_embedding.shape[0])


def known_types(net) -> tuple[str, ...]:
    return UNION_CONTROL_TYPES[:type_count(net)]


def union_type_for(unit, kind: str | None, net) -> int:
    """The index of the unit's control type: the one it names, else the one its annotator's kind
    reads; a ValueError naming the types this model has when neither works."""
    have = known_types(net)
    name = unit.union_control_type
    if name is None:
        name = KIND_TO_UNION_TYPE.get(kind or "")
        if name is None:
            said = f"its annotator makes {kind!r} maps, which no Union type reads" if kind else \
                "it names no annotator"
            raise ValueError(f"Union unit {unit.model!r} has no control type and {said}: set union_control_type "
                             f"to one of {', '.join(have)}")
    if name not in have:
        raise ValueError(f"Union model {unit.model!r} has {len(have)} control types ({', '.join(have)}); "
                         f"{name!r} is not among them" + (": it needs a ProMax model (8 types)"
                                                          if name in UNION_CONTROL_TYPES else ""))
    return have.index(name)


@dataclass
class UnionControl:
    """What a Union unit's type and map give its call, computed once: the type's addition to the
    timestep embedding, and the map's pooled embedding plus the type's task embedding."""

    time_emb: torch.Tensor        # (1, time_embed_dim)
    task_feature: torch.Tensor    # (1, 1, num_trans_channel)


def prepare_union(net, type_index: int, embedding: torch.Tensor, dtype) -> UnionControl:
    one_hot = torch.zeros(type_count(net), device=embedding.device, dtype=dtype)
    one_hot[type_index] = 1
    with torch.no_grad():
        proj = net.control_type_proj(one_hot).reshape(1, -1).to(dtype)
        time_emb = net.control_add_embedding(proj)
        task = embedding.mean(dim=(2, 3)) + net.task_embedding[type_index]
    return UnionControl(time_emb, task[:, None])


def union_input(net, sample: torch.Tensor, embedding: torch.Tensor, union: UnionControl) -> torch.Tensor:
    """conv_in(latent) plus the map's embedding plus the transformer's per-channel shift."""
    h = net.conv_in(sample)
    seq = torch.cat([union.task_feature.expand(h.shape[0], -1, -1), h.mean(dim=(2, 3))[:, None]], dim=1)
    for layer in net.transformer_layes:    # (sic: diffusers' attribute name)
        seq = layer(seq)
    alpha = net.spatial_ch_projs(seq[:, 0])[:, :, None, None]
    return h + (embedding + alpha)
