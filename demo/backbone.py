"""Training the demo backbone from scratch on the world: first the VAE (pixels <-> 4x16x16
latents), then the UNet and the text encoder together on the VAE's latents (noise prediction,
min-SNR weighting and EMA from diffusers.training_utils, the target in the scheduler's prediction type
(engine.training.objective), 10% empty captions so CFG works). Each stage checkpoints and
resumes, so it can be run in slices of a few minutes. `assemble` writes the locked backbone
as a diffusers pipeline folder in fp16."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.loading import RECOMMENDED_FILE
from engine.training import checkpoints, data, objective

from . import architecture, dataset, stages, vocab, world
from .stages import BackboneConfig



def tokenizer_for(cfg: BackboneConfig):
    return vocab.build_tokenizer(world.vocabulary())



def train_vae(cfg: BackboneConfig, max_seconds: float | None = None) -> dict | None:
    """The VAE stage; returns its summary when finished, None when the time ran out first."""
    from diffusers import AutoencoderKL
    folder = stages.stage_dir(cfg, "vae")
    if stages.done(folder):
        return stages.done(folder)
    device, started = stages.pick_device(), time.monotonic()
    ckpt = checkpoints.latest(folder)
    if ckpt is not None:
        vae = AutoencoderKL.from_pretrained(str(ckpt / "vae"))
        start = checkpoints.read_state(ckpt)["step"]
    else:
        torch.manual_seed(cfg.seed)
        vae, start = architecture.make_vae(cfg.tiny), 0
    vae.to(device).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=1e-4)
    if ckpt is not None:
        checkpoints.load_optimizer(ckpt, opt)
    batches = iter(data.loader(dataset.WorldDataset(None, cfg.size, seed=cfg.seed + 1), cfg.vae_batch, start,
                               workers=cfg.workers))
    step, l1_ema = start, None
    while step < cfg.vae_steps:
        for group in opt.param_groups:
            group["lr"] = cfg.vae_lr * stages.lr_factor(step, cfg.vae_steps, cfg.warmup)
        x = next(batches)["pixel_values"].to(device, non_blocking=True)
        g = torch.Generator(device).manual_seed(cfg.seed * 7919 + step)
        with stages.autocast(device):
            dist = vae.encode(x).latent_dist
            y = vae.decode(dist.sample(g)).sample.float()
        rec, l1 = stages.reconstruction_loss(y, x)
        stages.optimizer_step(rec + 1e-6 * dist.kl().mean(), vae.parameters(), opt)
        step += 1
        l1_ema = l1.item() if l1_ema is None else 0.98 * l1_ema + 0.02 * l1.item()
        if step % cfg.log_every == 0:
            print(f"vae step {step}/{cfg.vae_steps} L1 {l1_ema:.4f} {time.monotonic() - started:.0f}s", flush=True)
        if step < cfg.vae_steps and (step % cfg.checkpoint_every == 0 or not stages.time_left(started, max_seconds, step - start)):
            checkpoints.save(folder, step, {"vae": vae}, opt,
                             {"l1": l1_ema, "seconds_total": stages.seconds_before(ckpt) + time.monotonic() - started})
            if not stages.time_left(started, max_seconds, step - start):
                return None
    vae.eval()
    scale = _latent_scale(vae, cfg, device)
    vae.register_to_config(scaling_factor=scale)
    vae.save_pretrained(str(folder / "final"), safe_serialization=True)
    return stages.finish(folder, {"steps": step, "l1": l1_ema, "scaling_factor": scale, "batch": cfg.vae_batch,
                            "seconds": stages.seconds_before(ckpt) + time.monotonic() - started,
                            "params": architecture.n_params(vae)})


@torch.no_grad()
def _latent_scale(vae, cfg: BackboneConfig, device) -> float:
    """1 / std of the latents over held-out pictures, so latents enter the UNet at unit scale."""
    ds = dataset.WorldDataset(None, cfg.size, seed=cfg.seed + 99)
    x = torch.stack([ds[i]["pixel_values"] for i in range(256 if not cfg.tiny else 16)]).to(device)
    z = torch.cat([vae.encode(c).latent_dist.mean for c in x.split(64)])
    return float(1.0 / z.std())


def junk_word(rng: np.random.Generator) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    known = set(world.vocabulary())
    while True:
        w = "".join(rng.choice(list(letters), size=int(rng.integers(3, 8))))
        if w not in known:
            return w


def _captions(captions: list[str], cfg: BackboneConfig, step: int) -> list[str]:
    rng = np.random.default_rng([cfg.seed, step, 0xCA9])
    out = []
    for c in captions:
        u = rng.random()
        if u < cfg.caption_dropout:
            out.append("")
            continue
        if u < cfg.caption_dropout + cfg.junk_word_p:
            words = c.split()
            words.insert(int(rng.integers(0, len(words) + 1)), junk_word(rng))
            c = " ".join(words)
        out.append(c)
    return out


def make_ema(modules: list[torch.nn.Module], decay: float):
    """diffusers' EMAModel over the UNet's and the text encoder's parameters together (its
    warm-up: decay min(decay, (1 + n) / (10 + n)) after n updates)."""
    from diffusers.training_utils import EMAModel
    return EMAModel([p for m in modules for p in m.parameters()], decay=decay, foreach=True)


def train_unet(cfg: BackboneConfig, max_seconds: float | None = None) -> dict | None:
    """The UNet + text encoder stage (needs the VAE stage); None when the time ran out first."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel
    folder = stages.stage_dir(cfg, "unet")
    if stages.done(folder):
        return stages.done(folder)
    device, started = stages.pick_device(), time.monotonic()
    vae = AutoencoderKL.from_pretrained(str(stages.stage_dir(cfg, "vae") / "final")).to(device).eval().requires_grad_(False)
    tokenizer = tokenizer_for(cfg)
    ckpt = checkpoints.latest(folder)
    seeded = folder / "start"
    if ckpt is not None:
        unet = UNet2DConditionModel.from_pretrained(str(ckpt / "unet"))
        text_encoder = CLIPTextModel.from_pretrained(str(ckpt / "text_encoder"))
        state = checkpoints.read_state(ckpt)
        start, seconds_before = state["step"], float(state.get("seconds_total", 0.0))
    elif seeded.is_dir():    # an earlier build's weights (train-demo --extend): continue from its step
        unet = UNet2DConditionModel.from_pretrained(str(seeded / "unet"), torch_dtype=torch.float32)
        text_encoder = CLIPTextModel.from_pretrained(str(seeded / "text_encoder"), torch_dtype=torch.float32)
        earlier = json.loads((seeded / "start.json").read_text())
        start, seconds_before = int(earlier["step"]), float(earlier.get("seconds", 0.0))
    else:
        torch.manual_seed(cfg.seed + 1)
        text_encoder = architecture.make_text_encoder(tokenizer, cfg.tiny)
        unet = architecture.make_unet(text_encoder.config.hidden_size, cfg.tiny)
        start, seconds_before = 0, 0.0
    unet.to(device).train()
    text_encoder.to(device).train()
    modules = [unet, text_encoder]
    ema = make_ema(modules, cfg.ema_decay)
    if ckpt is not None:
        _load_ema(ckpt, ema, start, device)
    opt = torch.optim.AdamW([p for m in modules for p in m.parameters()], lr=cfg.unet_lr, weight_decay=1e-2)
    if ckpt is not None:
        checkpoints.load_optimizer(ckpt, opt)
    sched = DDPMScheduler.from_config(architecture.SCHEDULER_CONFIG)
    batches = iter(data.loader(dataset.WorldDataset(None, cfg.size, seed=cfg.seed + 2), cfg.unet_batch, start,
                               workers=cfg.workers))
    scale = vae.config.scaling_factor
    step, loss_ema = start, None
    while step < cfg.unet_steps:
        for group in opt.param_groups:
            group["lr"] = cfg.unet_lr * stages.lr_factor(step, cfg.unet_steps, cfg.warmup)
        batch = next(batches)
        x = batch["pixel_values"].to(device, non_blocking=True)
        ids = data.tokenize(tokenizer, _captions(batch["caption"], cfg, step)).to(device)
        g = torch.Generator(device).manual_seed(cfg.seed * 7919 + step)
        with torch.no_grad(), stages.autocast(device):
            latents = vae.encode(x).latent_dist.sample(g).float() * scale
        noise = torch.randn(latents.shape, generator=g, device=device)
        t = torch.randint(0, sched.config.num_train_timesteps, (x.shape[0],), generator=g, device=device)
        noisy, target = objective.noisy_and_target(sched, latents, noise, t)
        with stages.autocast(device):
            text = text_encoder(ids)[0]
            pred = unet(noisy, t, encoder_hidden_states=text, return_dict=False)[0].float()
        weight = objective.min_snr_weights(sched, t, cfg.min_snr)
        loss = (weight * F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))).mean()
        stages.optimizer_step(loss, [p for m in modules for p in m.parameters()], opt)
        step += 1
        ema.step([p for m in modules for p in m.parameters()])
        loss_ema = loss.item() if loss_ema is None else 0.98 * loss_ema + 0.02 * loss.item()
        if step % cfg.log_every == 0:
            print(f"unet step {step}/{cfg.unet_steps} loss {loss_ema:.4f} {time.monotonic() - started:.0f}s", flush=True)
        out_of_time = not stages.time_left(started, max_seconds, step - start, extra=25.0)
        if step < cfg.unet_steps and (step % cfg.checkpoint_every == 0 or out_of_time):
            _save_unet_checkpoint(folder, step, unet, text_encoder, ema, opt, loss_ema,
                                  seconds_before + time.monotonic() - started)
            if out_of_time:
                return None
    ema.copy_to([p for m in modules for p in m.parameters()])
    unet.save_pretrained(str(folder / "final" / "unet"), safe_serialization=True)
    text_encoder.save_pretrained(str(folder / "final" / "text_encoder"), safe_serialization=True)
    return stages.finish(folder, {"steps": step, "loss": loss_ema, "batch": cfg.unet_batch,
                            "seconds": seconds_before + time.monotonic() - started,
                            "unet_params": architecture.n_params(unet),
                            "text_encoder_params": architecture.n_params(text_encoder)})


def seed_from(cfg: BackboneConfig, previous: str | Path, earlier_stages: dict, unet: bool = True) -> None:
    """Start the VAE and UNet stages from an earlier build in `previous` (a models/demo folder
    with its manifest's stages, `earlier_stages`): its VAE is kept as is, and the UNet stage goes on from the
    earlier build's weights and step count up to `cfg.unet_steps`, so a longer plan extends a
    shipped backbone instead of starting over (unet=False: only the VAE, for the stages after
    the backbone). Stages already under way are left alone."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel
    previous = Path(previous) / "backbone"
    vae_dir, unet_dir = stages.stage_dir(cfg, "vae"), stages.stage_dir(cfg, "unet")
    if not stages.done(vae_dir) and checkpoints.latest(vae_dir) is None:
        AutoencoderKL.from_pretrained(str(previous / "vae"), torch_dtype=torch.float32).save_pretrained(
            str(vae_dir / "final"), safe_serialization=True)
        stages.finish(vae_dir, {**earlier_stages["vae"]["result"], "from": str(previous)})
    if not unet or stages.done(unet_dir) or checkpoints.latest(unet_dir) is not None or (unet_dir / "start").is_dir():
        return
    earlier = earlier_stages["backbone"]["result"]
    if earlier["steps"] >= cfg.unet_steps:
        raise ValueError(f"the backbone in {previous} already has {earlier['steps']} steps and the plan asks for "
                         f"{cfg.unet_steps}: nothing to extend")
    start = unet_dir / "start"
    UNet2DConditionModel.from_pretrained(str(previous / "unet"), torch_dtype=torch.float32).save_pretrained(
        str(start / "unet"), safe_serialization=True)
    CLIPTextModel.from_pretrained(str(previous / "text_encoder"), torch_dtype=torch.float32).save_pretrained(
        str(start / "text_encoder"), safe_serialization=True)
    (start / "start.json").write_text(json.dumps({"step": earlier["steps"], "seconds": earlier.get("seconds", 0.0),
                                                  "from": str(previous)}))


EMA_FILE = "ema.pt"


def _save_unet_checkpoint(folder, step, unet, text_encoder, ema, opt, loss_ema, seconds_total) -> None:
    checkpoints.save(folder, step, {"unet": unet, "text_encoder": text_encoder}, opt,
                     {"loss": loss_ema, "seconds_total": seconds_total},
                     tensors={EMA_FILE: ema.state_dict()})


def _load_ema(ckpt: Path, ema, step: int, device) -> None:
    """The EMA's saved state (its averages and update count); a checkpoint from before EMAModel
    holds the averages as model folders instead, taken at `step` updates."""
    state = checkpoints.load_tensors(ckpt, EMA_FILE)
    if state is None:
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextModel
        old = (UNet2DConditionModel.from_pretrained(str(ckpt / "unet_ema")),
               CLIPTextModel.from_pretrained(str(ckpt / "text_encoder_ema")))
        state = {"shadow_params": [p.detach().float() for m in old for p in m.parameters()],
                 "optimization_step": step}
    ema.load_state_dict(state)
    ema.to(device=device)


def assemble(cfg: BackboneConfig, out: str | Path) -> Path:
    """Write the trained backbone as a diffusers StableDiffusionPipeline folder in fp16."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel
    out = Path(out)
    final = stages.stage_dir(cfg, "unet") / "final"
    dtype = torch.float16
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(str(stages.source_vae(cfg)), torch_dtype=dtype),
        text_encoder=CLIPTextModel.from_pretrained(str(final / "text_encoder"), torch_dtype=dtype),
        tokenizer=tokenizer_for(cfg),
        unet=UNet2DConditionModel.from_pretrained(str(final / "unet"), torch_dtype=dtype),
        scheduler=DDIMScheduler.from_config(architecture.SCHEDULER_CONFIG),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(out), safe_serialization=True)
    vocab.save_tokenizer(world.vocabulary(), out / "tokenizer")
    (out / RECOMMENDED_FILE).write_text(json.dumps(architecture.RECOMMENDED_SETTINGS, indent=1) + "\n")
    return out
