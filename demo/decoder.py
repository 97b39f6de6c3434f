"""The decoder stage: the VAE's decoder trained on, its encoder locked.

A short VAE stage leaves a decoder that blurs edges, shifts colours (gray comes out purple,
yellow orange) and paints a figure's head into shapes; the picture a user sees inherits all of
it however good the UNet and ControlNets are. With the encoder frozen the latent space does not
move, so the UNet and every ControlNet trained on it stay valid: Stable Diffusion's own VAE was
improved the same way (a decoder fine-tune on the same latents). Resumable like every stage.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from engine.training import checkpoints, data

from . import dataset
from .stages import (BackboneConfig, autocast, pick_device, done, finish, lr_factor, optimizer_step,
                     reconstruction_loss, seconds_before, stage_dir, time_left)

HELD_OUT_SEED = 4242


@torch.no_grad()
def held_out_l1(vae, cfg: BackboneConfig, device, n: int = 64) -> float:
    """Mean absolute error (pixels in [-1, 1]) of encode -> decode on renders no step saw."""
    ds = dataset.WorldDataset(None, cfg.size, seed=HELD_OUT_SEED)
    x = torch.stack([ds[i]["pixel_values"] for i in range(n)]).to(device)
    errs = [(vae.decode(vae.encode(c).latent_dist.mode()).sample.float() - c).abs().mean().item() for c in x.split(16)]
    return float(sum(errs) / len(errs))



def train_decoder(cfg: BackboneConfig, max_seconds: float | None = None) -> dict | None:
    """Train the decoder (and post_quant_conv) on the frozen encoder's latents; returns the
    summary when finished, None when the time ran out first (call again to resume)."""
    from diffusers import AutoencoderKL
    folder = stage_dir(cfg, "decoder")
    if done(folder):
        return done(folder)
    device, started = pick_device(), time.monotonic()
    ckpt = checkpoints.latest(folder)
    vae = AutoencoderKL.from_pretrained(str(ckpt / "vae" if ckpt else stage_dir(cfg, "vae") / "final"),
                                        torch_dtype=torch.float32)
    vae.to(device).eval().requires_grad_(False)
    before = checkpoints.read_state(ckpt)["l1_before"] if ckpt else held_out_l1(vae, cfg, device)
    trained = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for p in trained:
        p.requires_grad_(True)
    vae.decoder.train()
    opt = torch.optim.AdamW(trained, lr=cfg.decoder_lr, weight_decay=1e-4)
    start = 0
    if ckpt is not None:
        checkpoints.load_optimizer(ckpt, opt)
        start = checkpoints.read_state(ckpt)["step"]
    batches = iter(data.loader(dataset.WorldDataset(None, cfg.size, seed=cfg.seed + 3), cfg.decoder_batch, start,
                               workers=cfg.workers))
    step, l1_ema = start, None
    while step < cfg.decoder_steps:
        for group in opt.param_groups:
            # A trained decoder is knocked off its minimum by full-size first steps: warm up.
            group["lr"] = cfg.decoder_lr * lr_factor(step, cfg.decoder_steps, max(1, min(cfg.warmup, cfg.decoder_steps // 10)))
        x = next(batches)["pixel_values"].to(device, non_blocking=True)
        g = torch.Generator(device).manual_seed(cfg.seed * 7907 + step)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample(g)
        with autocast(device):
            y = vae.decode(z).sample.float()
        loss, l1 = reconstruction_loss(y, x)
        optimizer_step(loss, trained, opt)
        step += 1
        l1_ema = l1.item() if l1_ema is None else 0.98 * l1_ema + 0.02 * l1.item()
        if step % cfg.log_every == 0:
            print(f"decoder step {step}/{cfg.decoder_steps} L1 {l1_ema:.4f} {time.monotonic() - started:.0f}s", flush=True)
        out_of_time = not time_left(started, max_seconds, step - start)
        if step < cfg.decoder_steps and (step % cfg.checkpoint_every == 0 or out_of_time):
            checkpoints.save(folder, step, {"vae": vae}, opt,
                             {"l1": l1_ema, "l1_before": before,
                              "seconds_total": seconds_before(ckpt) + time.monotonic() - started})
            if out_of_time:
                return None
    vae.eval()
    after = held_out_l1(vae, cfg, device)
    vae.save_pretrained(str(folder / "final"), safe_serialization=True)
    return finish(folder, {"steps": step, "batch": cfg.decoder_batch, "lr": cfg.decoder_lr,
                            "held_out_l1_before": before, "held_out_l1_after": after,
                            "seconds": seconds_before(ckpt) + time.monotonic() - started,
                            "device": torch.cuda.get_device_name() if device.type == "cuda" else "CPU"})
