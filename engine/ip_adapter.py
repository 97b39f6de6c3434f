"""IP-Adapter units: a reference picture through a CLIP image encoder, its embedding projected
into image tokens that every cross-attention layer of the locked UNet also attends to (Ye et al.
2023, "IP-Adapter: Text Compatible Image Prompt Adapter"), through diffusers' own machinery:

- the image embedding as diffusers' pipelines make it (`prepare_ip_adapter_image_embeds`):
  CLIPImageProcessor at the encoder's size; a basic adapter reads `image_embeds` with zeros as
  the unconditional embedding, a plus adapter the penultimate hidden states with the encoder's
  states of an all-zero picture as the unconditional ones; rows batched [uncond..., cond...];
- the projection (`_convert_ip_adapter_image_proj_to_diffusers`: ImageProjection or the plus
  Resampler) run once per generation, as `MultiIPAdapterImageProjection` runs it per step;
- the cross-attention processors (`_convert_ip_adapter_attn_to_diffusers`: IPAdapterAttnProcessor2_0,
  one to_k_ip/to_v_ip pair per unit) set on the UNet inside `attached(...)` only; afterwards
  the UNet's own processor objects are back, and `encoder_hid_proj` and the config are never
  touched, so the shared backbone is bit-identical to one that never had an adapter.

diffusers' UNet makes the (text, image tokens) pair inside its forward from `added_cond_kwargs`;
here the loop keeps calling it with plain text (ControlNets and reference passes share that
text), and each processor is handed this generation's tokens. Weight is diffusers' IP-Adapter
scale; the unit's window sets it to 0 outside [start, end] (diffusers has no window).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from PIL import Image

from .control import in_window
from .kept import Kept, number
from .loading.ipadapters import (IPAdapterFile, check_fits, find_encoder, find_ip_adapter, installed_ip_adapters,
                                 is_ip_adapter, load_encoder, read_ip_adapter)

# A1111's ControlNet extension's IP-Adapter modules (its older names, then the newer ones it keeps beside
# them): each runs the adapter's own encoder here, picked by widths (engine.loading.ipadapters)
IP_ADAPTER_MODULES = ("ip-adapter_clip_sd15", "ip-adapter_clip_sdxl", "ip-adapter_clip_sdxl_plus_vith",
                      "ip-adapter_clip_h", "ip-adapter_clip_g", "ip-adapter-auto")


def a1111_module(name: str) -> str:
    """The extension's module for an adapter, by its name as the extension reads it: an SDXL
    adapter reads ViT-bigG unless its name says ViT-H; every other one ViT-H."""
    lower = name.lower()
    if "sdxl" in lower:
        return "ip-adapter_clip_sdxl_plus_vith" if "vit-h" in lower else "ip-adapter_clip_sdxl"
    return "ip-adapter_clip_sd15"


# -- files and encoders, kept while unchanged ---------------------------------------------------

# few: an SDXL adapter is 0.7 GB and ViT-bigG 3.7 GB in fp16, and they stay on the backbone's device
_files, _encoders, _processors = Kept(2), Kept(1), Kept(1)


def forget() -> None:
    """Drop every kept adapter, encoder and processor set (after running out of memory)."""
    for kept in (_files, _encoders, _processors):
        kept.clear()


def _stat_key(path) -> tuple:
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns


@dataclass(frozen=True)
class LoadedAdapter:
    """An adapter file checked against a backbone, its tensors on the backbone's device and dtype,
    with its projection module and its encoder's folder."""

    file: IPAdapterFile
    state_dict: dict
    projection: torch.nn.Module
    encoder_folder: object
    key: tuple                    # what it was made from: file, backbone, device, dtype


def load_adapter(name: str, backbone) -> LoadedAdapter:
    path = find_ip_adapter(name)
    if path is None:
        have = ", ".join(installed_ip_adapters()) or "none"
        raise ValueError(f"IP-Adapter {name!r} is not installed under models/ipadapters/ (installed: {have}).")
    device, dtype = backbone.device, backbone.dtype
    key = (_stat_key(path), number(backbone.unet), str(device), dtype)

    def make() -> LoadedAdapter:
        file = read_ip_adapter(path.stem, path)
        check_fits(file, backbone.unet, backbone.source, backbone.family)
        encoder = find_encoder(file)
        sd = {part: {k: v.to(device=device, dtype=dtype) for k, v in tensors.items()}
              for part, tensors in file.state_dict.items()}
        projection = backbone.unet._convert_ip_adapter_image_proj_to_diffusers(sd["image_proj"], low_cpu_mem_usage=False)
        projection = projection.to(device=device, dtype=dtype).eval().requires_grad_(False)
        return LoadedAdapter(file, sd, projection, encoder, key)
    return _files.get(key, make)


def _encoder(folder, backbone):
    config = folder / "config.json"
    key = (str(folder), config.stat().st_mtime_ns if config.exists() else 0, str(backbone.device), backbone.dtype)
    return _encoders.get(key, lambda: load_encoder(folder, backbone.dtype, backbone.device).requires_grad_(False))


# -- one generation's units --------------------------------------------------------------------

@dataclass(frozen=True)
class PreparedIPAdapter:
    """An IP-Adapter unit made ready for one generation: its image tokens for every row of the
    UNet batch ([uncond..., cond...] with CFG), its scale and window."""

    adapter: LoadedAdapter
    tokens: torch.Tensor          # (rows, 1, tokens, cross_attention_dim)
    weight: float
    start: float
    end: float


@torch.inference_mode()
def image_embeds(adapter: LoadedAdapter, encoder, picture: np.ndarray, batch: int, cfg: bool) -> torch.Tensor:
    """diffusers' encode_image + prepare_ip_adapter_image_embeds for one adapter and one picture:
    (rows, 1, ...) with rows [uncond x batch, cond x batch] under CFG."""
    from transformers import CLIPImageProcessor
    size = encoder.config.image_size
    pixels = CLIPImageProcessor(size=size, crop_size=size)(Image.fromarray(picture), return_tensors="pt").pixel_values
    pixels = pixels.to(device=encoder.device, dtype=next(encoder.parameters()).dtype)
    if adapter.file.reads_hidden_states:
        cond = encoder(pixels, output_hidden_states=True).hidden_states[-2]
        uncond = encoder(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2]
    else:
        cond = encoder(pixels).image_embeds
        uncond = torch.zeros_like(cond)
    cond, uncond = torch.cat([cond[None]] * batch), torch.cat([uncond[None]] * batch)
    return torch.cat([uncond, cond]) if cfg else cond


def prepare_ip_adapter(unit, backbone, batch: int, cfg: bool) -> PreparedIPAdapter:
    """Load (or reuse) the unit's adapter and encoder, embed its picture and project it: once per generation."""
    from diffusers.models.embeddings import MultiIPAdapterImageProjection
    # loaded outside inference mode: the kept tensors become the processors' parameters later
    with torch.no_grad():
        adapter = load_adapter(unit.model, backbone)
        encoder = _encoder(adapter.encoder_folder, backbone)
    with torch.inference_mode():
        embeds = image_embeds(adapter, encoder, unit.image, batch, cfg)
        tokens = MultiIPAdapterImageProjection([adapter.projection])([embeds.to(backbone.dtype)])[0]
    return PreparedIPAdapter(adapter, tokens, unit.weight, unit.start, unit.end)


def silenced(prepared: PreparedIPAdapter) -> PreparedIPAdapter:
    """The unit at scale 0: in a hires pass it does not act in, its tokens stay but add nothing."""
    return replace(prepared, weight=0.0)


# -- the processors, for the block only ----------------------------------------------------------

class _Fed:
    """diffusers' IP-Adapter processor with this generation's image tokens handed to it: the UNet
    is called with plain text, which this pairs with the tokens as diffusers' UNet forward does."""

    def __init__(self, processor, run: "IPAdapterRun"):
        self.processor, self.run = processor, run

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        if encoder_hidden_states is not None and not isinstance(encoder_hidden_states, tuple):
            encoder_hidden_states = (encoder_hidden_states, self.run.tokens)
        return self.processor(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)


class _Scale:
    """A unit's scale as diffusers' processor reads it: `scale == 0` skips the unit, `scale * x`
    weighs its attention. The number lives in a tensor, so a CUDA graph captured with it reads
    each step's value; whether it is 0 is a Python flag, part of the fast path's graph key."""

    def __init__(self, device):
        with torch.inference_mode():
            self.value = torch.zeros((), device=device)
        self.active = False

    def set(self, weight: float) -> None:
        self.active = weight != 0
        with torch.inference_mode():
            self.value.fill_(weight)

    def __eq__(self, other):
        return other == 0 and not self.active

    __hash__ = object.__hash__

    def __mul__(self, other):
        return self.value * other

    __rmul__ = __mul__

    def __float__(self) -> float:
        return float(self.value)


@dataclass(eq=False)
class _ProcessorSet:
    """The processors of one set of adapters on one UNet, with the scales and image-token buffers
    every generation with that set writes into (so graphs captured with them stay valid)."""

    processors: dict               # name -> diffusers' IPAdapterAttnProcessor2_0
    scales: list = field(default_factory=list)    # one _Scale per unit, shared by every processor
    tokens: dict = field(default_factory=dict)    # token shapes -> one buffer per unit

    def buffers(self, tokens: list) -> list:
        shapes = tuple((tuple(t.shape), t.dtype, str(t.device)) for t in tokens)
        if shapes not in self.tokens:
            with torch.inference_mode():
                self.tokens[shapes] = [torch.empty_like(t) for t in tokens]
        return self.tokens[shapes]


@dataclass
class IPAdapterRun:
    """The units of one generation's pass and the processors that read them; `step(i, total)`
    sets each unit's scale for step i (its weight inside its window, else 0)."""

    units: list
    tokens: list                   # the set's buffers the processors read, this generation's tokens in them
    scales: list
    number: int                    # the processor set's number: graphs of this run are keyed by it

    def use(self, units: list) -> None:
        """The units of the pass about to run (same adapters, in the same order; hires passes)."""
        self.units = list(units)
        with torch.inference_mode():
            for buffer, unit in zip(self.tokens, self.units):
                buffer.copy_(unit.tokens)

    def step(self, i: int, total: int) -> None:
        for scale, unit in zip(self.scales, self.units):
            scale.set(unit.weight if in_window(i, total, unit.start, unit.end) else 0.0)

    def graph_key(self) -> tuple:
        """What a CUDA graph of a step of this run bakes in: the processors and buffers, and
        which units act at this step (an inactive one is skipped, as diffusers does)."""
        return self.number, tuple(tuple(t.shape) for t in self.tokens), tuple(s.active for s in self.scales)


def _build_processors(unet, prepared: list) -> _ProcessorSet:
    """The processors for the UNet's cross-attention layers, by diffusers' converter, with one
    to_k_ip/to_v_ip pair per unit (a unit may repeat an adapter); kept per set of adapters."""
    key = (number(unet), tuple(p.adapter.key for p in prepared))

    def make() -> _ProcessorSet:
        from diffusers.utils import is_accelerate_available
        # accelerate's empty init: no random init of layers about to be overwritten (SDXL's are 0.7 GB)
        with torch.no_grad():
            built = unet._convert_ip_adapter_attn_to_diffusers([p.adapter.state_dict for p in prepared],
                                                               low_cpu_mem_usage=is_accelerate_available())
        built = {name: proc for name, proc in built.items() if name.endswith("attn2.processor")}
        for proc in built.values():
            proc.requires_grad_(False)
        return _ProcessorSet(built)
    return _processors.get(key, make)


@contextlib.contextmanager
def attached(unet, prepared: list, base=None):
    """Inside the block the UNet's cross-attention layers read the units' image tokens; yields the
    IPAdapterRun (None, and nothing changed, without units). Afterwards the UNet's own processor
    objects are back in place. `base`: the UNet that `unet` is a LoRA view of (engine.lora_slots),
    whose processor set the view shares."""
    if not prepared:
        yield None
        return
    found = _build_processors(unet if base is None else base, prepared)
    built = found.processors
    dtype, device = unet.dtype, unet.device
    for proc in built.values():
        proc.to(device=device, dtype=dtype)
    if not found.scales or found.scales[0].value.device != device:
        found.scales = [_Scale(device) for _ in prepared]
        for proc in built.values():
            proc.scale = list(found.scales)
    run = IPAdapterRun(list(prepared), found.buffers([p.tokens for p in prepared]), found.scales, number(found))
    run.use(prepared)
    original = unet.attn_processors
    try:
        fed = {name: (_Fed(built[name], run) if name in built else proc) for name, proc in original.items()}
        unet.set_attn_processor(fed)
        run.step(0, 1)
        yield run
    finally:
        unet.set_attn_processor(dict(original))   # set_attn_processor pops from the dict it is given
