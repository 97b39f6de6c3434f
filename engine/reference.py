"""Reference units: a picture's look carried into the generation with no weights at all, as the
A1111 ControlNet extension's reference_only / reference_adain / reference_adain+attn do
(its scripts/hook.py; Lvmin Zhang's attention/AdaIN "auto machine").

Each step, before the main UNet call, the reference's latent, noised to the current timestep,
goes through the same locked UNet (no ControlNet residuals) in *write* mode: the self-attention
blocks that take part keep their input (attn), the resnet blocks that take part keep their
output's per-channel mean and variance (adain). The main call then *reads* those banks: its
self-attention also attends to the reference's tokens, and its block outputs are renormalised
to the reference's statistics.

- The unit's weight is a threshold, not a multiplier: attention block i of n (widest first)
  takes part when weight > i / n; an adain block when weight > its level's threshold
  (`layers`), so weight 0 is no unit and weight 1 shares every attention block.
- Style fidelity f mixes the CFG halves: the conditional half always reads the reference; the
  unconditional half gets f * (its plain output) + (1 - f) * (the reference-reading output).
  Control mode "ControlNet is more important" sets f = 1, "My prompt is more important" f = 0;
  on SDXL the extension cubes f first (0.5 -> 0.125), and so does this module.
- The reference noise comes from the request's seed (the extension's is unseeded), one stream
  per image and unit, so a restored recipe makes the same picture.

The hooks live only inside `attached(...)`; afterwards the UNet is what it was.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import torch

from annotators.image import fit

REFERENCE_MODELS: tuple[str, ...] = ("reference_only", "reference_adain", "reference_adain+attn")
DEFAULT_STYLE_FIDELITY = 0.5
_EPS = 1e-6          # the extension's floor under a variance before its square root


def is_reference(model: str | None) -> bool:
    return model in REFERENCE_MODELS


def shares_attention(model: str) -> bool:
    return model in ("reference_only", "reference_adain+attn")


def matches_statistics(model: str) -> bool:
    return model in ("reference_adain", "reference_adain+attn")


def effective_fidelity(style_fidelity: float, mode: str, family: str) -> float:
    """The style fidelity the extension actually uses: clamped, cubed on SDXL (its attention
    sharing is unstable there), then overridden by the control mode."""
    f = min(max(float(style_fidelity), 0.0), 1.0)
    if family == "sdxl":
        f = f ** 3
    if mode == "control":
        return 1.0
    if mode == "prompt":
        return 0.0
    return f


# -- which layers take part ------------------------------------------------------------------

@dataclass(frozen=True)
class Layers:
    """The UNet's modules that reference units hook, each with the weight it needs to take part
    (a unit takes part in a layer when its weight is greater than the layer's threshold)."""

    attention: list          # [(BasicTransformerBlock.attn1, threshold)], widest first
    adain: list              # [(module whose output is renormalised, threshold)]


def _ldm_blocks(unet):
    """The UNet's blocks in the original LDM layout the extension indexes: input blocks (one per
    resnet, with its attention), the middle block, output blocks (one per resnet, the last of a
    level ending with its upsampler). Returns (input [(level, module)], mid, output [module])."""
    inputs = []
    for level, block in enumerate(unet.down_blocks):
        attentions = getattr(block, "attentions", None)
        for j, resnet in enumerate(block.resnets):
            inputs.append((level, attentions[j] if attentions else resnet))
    outputs = []
    for block in unet.up_blocks:
        attentions = getattr(block, "attentions", None)
        for j, resnet in enumerate(block.resnets):
            module = attentions[j] if attentions else resnet
            if j == len(block.resnets) - 1 and getattr(block, "upsamplers", None):
                module = block.upsamplers[0]
            outputs.append(module)
    return inputs, unet.mid_block, outputs


def _transformer_blocks(module) -> list:
    from diffusers.models.attention import BasicTransformerBlock
    return [m for m in module.modules() if isinstance(m, BasicTransformerBlock)]


def layers(unet) -> Layers:
    """The layers a reference unit acts on, found from the UNet's structure so that SD1.5 gets
    exactly the extension's layers and other UNets (SD2, SDXL, the demo's) the same rule:

    - attention: every BasicTransformerBlock's self-attention, in LDM order (encoder, middle,
      decoder), stably sorted widest first; block i of n needs weight > i / n.
    - adain: the middle block (threshold 0); the encoder's resnet blocks below the full-resolution
      level, shallow to deep, thresholds 2 * (1 - w / n); the first two thirds of the decoder's
      blocks, deep to shallow, thresholds 2 * w / n. SD1.5: input blocks 4, 5, 7, 8, 10, 11 and
      output blocks 0-7; SDXL: input 4, 5, 7, 8 and output 0-5 (the extension's lists).
    """
    inputs, mid, outputs = _ldm_blocks(unet)
    ordered = [unet.down_blocks] + ([mid] if mid is not None else []) + [unet.up_blocks]
    blocks = [b for m in ordered for b in _transformer_blocks(m)]
    blocks = sorted(blocks, key=lambda b: -b.attn1.query_dim)   # stable: LDM order within a width
    attention = [(b.attn1, i / len(blocks)) for i, b in enumerate(blocks) if not b.only_cross_attention]
    adain = [] if mid is None else [(mid, 0.0)]
    deep_inputs = [m for level, m in inputs if level > 0]
    adain += [(m, 2 * (1 - w / len(deep_inputs))) for w, m in enumerate(deep_inputs)]
    first_outputs = outputs[:len(outputs) * 2 // 3]
    adain += [(m, 2 * w / len(first_outputs)) for w, m in enumerate(first_outputs)]
    return Layers(attention, adain)


# -- one generation's reference units ---------------------------------------------------------

@dataclass
class PreparedReference:
    """A reference unit made ready for one generation."""

    model: str
    latent: torch.Tensor          # (1, C, h, w): the reference picture's latent, scaled
    weight: float
    fidelity: float               # after the control mode's override (effective_fidelity)
    start: float
    end: float
    generators: list              # one per image: the seeded source of its reference noise


def _noise_seed(seed: int, index: int) -> int:
    """A stream apart from the image's own latent noise (same seed, different draw)."""
    return int(np.random.SeedSequence([seed, 0x5EF, index]).generate_state(1, np.uint64)[0] >> 1)


@torch.inference_mode()
def prepare_reference(unit, index: int, backbone, width: int, height: int, seeds: list) -> PreparedReference:
    """Encode the unit's picture (fitted to the frame by its resize mode) with the backbone's VAE."""
    vae = backbone.vae
    picture = fit(unit.image, width, height, unit.resize_mode)
    x = torch.from_numpy(np.array(picture)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    generators = [torch.Generator("cpu").manual_seed(_noise_seed(s, index)) for s in seeds]
    dist = vae.encode(x.to(device=vae.device, dtype=vae.dtype)).latent_dist
    latent = dist.sample(generators[0])
    if getattr(vae.config, "shift_factor", None):
        latent = latent - vae.config.shift_factor
    latent = (latent * vae.config.scaling_factor).to(backbone.dtype)
    return PreparedReference(unit.model, latent, unit.weight, effective_fidelity(
        unit.style_fidelity, unit.mode, backbone.family), unit.start, unit.end, generators)


# -- the banks and the hooks ------------------------------------------------------------------

@dataclass
class Bank:
    """What the reference passes wrote for the next main pass: per hooked module, the attention
    inputs or the (mean, var) statistics, and each entry's style fidelity."""

    writing: bool = False
    weight: float = 0.0
    fidelity: float = 0.0
    uncond_rows: slice | None = None          # the unconditional half of the batch (None: no CFG)
    attention: dict = field(default_factory=dict)   # attn1 -> [(tensor, fidelity)]
    statistics: dict = field(default_factory=dict)  # module -> [(mean, var, fidelity)]

    def clear(self) -> None:
        self.attention.clear()
        self.statistics.clear()


def _attention_forward(attn, original, threshold: float, bank: Bank):
    def forward(hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        if bank.writing:
            if bank.weight > threshold:
                bank.attention.setdefault(attn, []).append((hidden_states.detach().clone(), bank.fidelity))
            return original(hidden_states, encoder_hidden_states, attention_mask, **kwargs)
        entries = bank.attention.pop(attn, None)
        if not entries:
            return original(hidden_states, encoder_hidden_states, attention_mask, **kwargs)
        fidelity = sum(f for _, f in entries) / len(entries)
        context = torch.cat([hidden_states, *(e for e, _ in entries)], dim=1)
        shared = original(hidden_states, context, attention_mask, **kwargs)
        rows = bank.uncond_rows
        if rows is None or fidelity <= 1e-5:
            return shared
        plain = shared.clone()
        plain[rows] = original(hidden_states[rows], None, attention_mask, **kwargs)
        return fidelity * plain + (1.0 - fidelity) * shared
    return forward


def _statistics_hook(threshold: float, bank: Bank):
    def hook(module, args, output):
        x = output[0] if isinstance(output, tuple) else output
        if bank.writing:
            if bank.weight > threshold:
                var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
                bank.statistics.setdefault(module, []).append((mean, var, bank.fidelity))
            return None
        entries = bank.statistics.pop(module, None)
        if not entries:
            return None
        fidelity = sum(f for _, _, f in entries) / len(entries)
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
        std = var.clamp_min(_EPS) ** 0.5
        ref_mean = sum(m for m, _, _ in entries) / len(entries)
        ref_std = (sum(v for _, v, _ in entries) / len(entries)).clamp_min(_EPS) ** 0.5
        matched = (x - mean) / std * ref_std + ref_mean
        rows = bank.uncond_rows
        if rows is not None and fidelity > 1e-5:
            plain = matched.clone()
            plain[rows] = x[rows]
            matched = fidelity * plain + (1.0 - fidelity) * matched
        y = matched.to(x.dtype)
        return (y, *output[1:]) if isinstance(output, tuple) else y
    return hook


@contextlib.contextmanager
def attached(unet, refs: list):
    """The hooks for these reference units on `unet`, inside the block only; yields the Bank
    (None and no hook at all when there are no units). Afterwards every module is as it was."""
    if not refs:
        yield None
        return
    bank, found = Bank(), layers(unet)
    patched, handles = [], []
    try:
        if any(shares_attention(r.model) for r in refs):
            for attn, threshold in found.attention:
                original = attn.forward
                attn.forward = _attention_forward(attn, original, threshold, bank)
                patched.append(attn)
        if any(matches_statistics(r.model) for r in refs):
            for module, threshold in found.adain:
                handles.append(module.register_forward_hook(_statistics_hook(threshold, bank)))
        yield bank
    finally:
        for attn in patched:
            del attn.forward          # the class's own forward again
        for handle in handles:
            handle.remove()
        bank.clear()


def _noised(ref: PreparedReference, t, alphas_cumprod: torch.Tensor, rows: int) -> torch.Tensor:
    """The reference latent at timestep t for every row of the UNet batch, as the extension's
    q_sample: sqrt(a_t) x0 + sqrt(1 - a_t) noise, fresh noise each call, from each image's stream.
    `rows` is the batch's rows per image (2 with CFG: [uncond..., cond...])."""
    a = alphas_cumprod[int(round(float(t)))].to(ref.latent.device, torch.float32)
    shape = tuple(ref.latent.shape[1:])
    noise = [torch.randn((rows, *shape), generator=g) for g in ref.generators]      # (rows, C, h, w) per image
    noise = torch.stack(noise, dim=1).reshape(rows * len(ref.generators), *shape)   # row-major as the batch
    x = a.sqrt() * ref.latent.float() + (1 - a).sqrt() * noise.to(ref.latent.device)
    return x.to(ref.latent.dtype)


@torch.inference_mode()
def write(unet, bank: Bank, refs: list, t, text, alphas_cumprod, cfg: bool, added: dict | None = None) -> None:
    """Each active reference unit's pass through the locked UNet, writing the bank for the main
    pass that follows; the reference sees the same text (both CFG halves) as the main pass."""
    batch = text.shape[0]
    rows = 2 if cfg else 1
    bank.uncond_rows = slice(0, batch // 2) if cfg else None
    extra = {"added_cond_kwargs": added} if added is not None else {}
    for ref in refs:
        bank.writing, bank.weight, bank.fidelity = True, ref.weight, ref.fidelity
        try:
            unet(_noised(ref, t, alphas_cumprod, rows), t, encoder_hidden_states=text, return_dict=False, **extra)
        finally:
            bank.writing = False
