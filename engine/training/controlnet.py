"""ControlNet training, as the paper describes it (Zhang and Agrawala 2023).

The trainable copy is made from the locked UNet (`ControlNetModel.from_unet`: encoder and
middle block copied, zero convolutions, a condition encoder with one stride-2 stage per
factor of the VAE's scale). The backbone (UNet, VAE, text encoder) never changes. The loss is
the usual denoising loss in the backbone's own parametrisation (noise, or velocity for
v-prediction backbones such as SD 2.x 768-v: `objective`); captions become "" with probability `prompt_dropout` (0.5 in the
paper) so the net learns to read the condition by itself. In small-compute mode only the
middle block is connected for the first `mid_only_steps` steps, then every link.

Runs on one GPU, the CPU, or several processes through accelerate (`launch_processes`): each
process trains on its slice of every step's global batch, with the random draws one process of
the whole batch would make (`draws`), and only the main process writes checkpoints and logs.
Checkpoints are diffusers folders; a run resumes from its last one, so a long run can be
done in stages of a few minutes (`max_seconds`).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..loading import load_backbone_components
from . import checkpoints, data, draws, objective

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    backbone: str                       # a backbone source: "demo", a diffusers folder, a file, a hub id
    output_dir: str
    kind: str                           # the condition (scribble, canny, ...): fidelity judge and map maker
    data: str = "world"                 # a registered dataset (demo's "world") or a folder of pictures with .txt captions
    annotator: str | None = None        # folder data: make maps with this annotator ...
    control_dir: str | None = None      # ... or read them from this folder (same file stems)
    resolution: int | None = None       # default: the backbone's native size
    batch_size: int = 4
    learning_rate: float = 1e-5
    steps: int = 1000
    prompt_dropout: float = 0.5
    mid_only_steps: int = 0
    checkpoint_every: int = 500
    eval_every: int = 0                 # 0: no fidelity curve
    eval_count: int = 8
    eval_steps: int = 20
    eval_cfg: float = 5.0
    seed: int = 0
    mixed_precision: str = "auto"       # "auto" (bf16 on CUDA), "no", "bf16", "fp16"
    max_seconds: float | None = None    # stop (checkpointed) before this much time, to resume later
    workers: int = 0
    cpu: bool = False
    log_every: int = 50
    max_grad_norm: float = 1.0
    fidelity_threshold: float | None = 0.5
    init_from: str | None = None        # start from this ControlNet folder instead of the UNet copy
    # "cubic" draws noisy timesteps more often (T2I-Adapter's schedule): layout is decided
    # there, so a condition is learnt in fewer steps; "uniform" is the paper's.
    timesteps: str = "uniform"

    def __post_init__(self):
        if not 0.0 <= self.prompt_dropout <= 1.0:
            raise ValueError(f"prompt_dropout {self.prompt_dropout} must be a probability, 0 to 1")
        for name in ("batch_size", "steps", "checkpoint_every", "eval_count", "eval_steps", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.mid_only_steps < 0 or self.eval_every < 0:
            raise ValueError("mid_only_steps and eval_every must be 0 or more")
        if self.timesteps not in draws.TIMESTEP_SCHEDULES:
            raise ValueError(f"timesteps {self.timesteps!r}: use uniform or cubic")
        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision {self.mixed_precision!r}: use auto, no, bf16 or fp16")
        if self.data not in data.dataset_names() and (self.annotator is None) == (self.control_dir is None):
            raise ValueError(f"folder data ({self.data}) needs exactly one of --annotator NAME or --control-dir "
                             f"FOLDER (registered datasets: {', '.join(data.dataset_names()) or 'none'})")


def conditioning_channels(vae_scale: int) -> tuple[int, ...]:
    """The condition encoder's channels: one stride-2 stage per factor of 2 between the
    picture and the latent, so the map arrives at the latent's resolution."""
    stages = max(1, int(vae_scale).bit_length() - 1)
    base = (16, 32, 96, 256)
    return base[: stages + 1] if stages + 1 <= len(base) else base + (256,) * (stages + 1 - len(base))


def make_controlnet(unet, vae_scale: int):
    """The trainable copy of the locked UNet, with zero convolutions and a condition encoder
    that brings the map from picture to latent resolution."""
    from diffusers import ControlNetModel
    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=conditioning_channels(vae_scale))


def zero_convs(controlnet) -> list[torch.nn.Module]:
    """The zero convolutions: each residual's output conv, and the condition encoder's last conv."""
    return list(controlnet.controlnet_down_blocks) + [controlnet.controlnet_mid_block,
                                                     controlnet.controlnet_cond_embedding.conv_out]


def controlled_noise_pred(unet, controlnet, noisy, timesteps, text, cond, mid_only: bool = False):
    """The locked UNet's noise prediction with the ControlNet's residuals added. In the
    small-compute phase the encoder links are cut (times zero, which keeps the graph whole for
    DDP) and only the middle block feeds back."""
    downs, mid = controlnet(noisy, timesteps, encoder_hidden_states=text, controlnet_cond=cond, return_dict=False)
    if mid_only:
        downs = [d * 0.0 for d in downs]
    return unet(noisy, timesteps, encoder_hidden_states=text, down_block_additional_residuals=downs,
                mid_block_additional_residual=mid, return_dict=False)[0]


def load_parts(source: str, device) -> dict:
    """The backbone, frozen, in float32 (mixed precision comes from autocast)."""
    parts = load_backbone_components(source, dtype=torch.float32, device=device)
    return freeze(parts)


def freeze(parts: dict) -> dict:
    for name in ("unet", "vae", "text_encoder"):
        parts[name].requires_grad_(False).eval()
    return parts


def vae_scale(vae) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def _mixed_precision(cfg: TrainConfig, cuda: bool) -> str:
    if cfg.mixed_precision == "auto":
        return "bf16" if cuda else "no"
    return cfg.mixed_precision


def train(cfg: TrainConfig, parts: dict | None = None) -> Path:
    """Train (or resume) a ControlNet; returns the folder of the final diffusers ControlNet
    (`<output_dir>/controlnet`), or of the last checkpoint when `max_seconds` ran out first."""
    from accelerate import Accelerator
    from diffusers import ControlNetModel, DDPMScheduler

    from .evaluate import FidelityLog, eval_items, generate_batch, mean_fidelity

    cuda = torch.cuda.is_available() and not cfg.cpu
    acc = Accelerator(mixed_precision=_mixed_precision(cfg, cuda), cpu=not cuda)
    started = time.monotonic()
    out = Path(cfg.output_dir)
    parts = freeze(parts) if parts is not None else load_parts(cfg.backbone, acc.device)
    for name in ("unet", "vae", "text_encoder"):
        parts[name].to(acc.device)
    unet, vae, text_encoder, tokenizer = parts["unet"], parts["vae"], parts["text_encoder"], parts["tokenizer"]
    size = cfg.resolution or int(unet.config.sample_size) * vae_scale(vae)

    ckpt = checkpoints.latest(out)
    start, seconds_before, resumed_loss = 0, 0.0, None
    if ckpt is not None:
        controlnet = ControlNetModel.from_pretrained(str(ckpt / "controlnet"), torch_dtype=torch.float32)
        state = checkpoints.read_state(ckpt)
        start, seconds_before = state["step"], float(state.get("seconds_total", 0.0))
        resumed_loss = state.get("loss_ema")   # the logged loss goes on as if never interrupted
        acc.print(f"resuming from {ckpt} (step {start})")
    elif cfg.init_from:
        # A related condition's net (e.g. scribble for canny) already knows where lines put things.
        controlnet = ControlNetModel.from_pretrained(cfg.init_from, torch_dtype=torch.float32)
        acc.print(f"starting from the ControlNet in {cfg.init_from}")
    else:
        torch.manual_seed(cfg.seed)
        controlnet = make_controlnet(unet, vae_scale(vae))
    controlnet.to(acc.device).train()
    optimizer = torch.optim.AdamW(controlnet.parameters(), lr=cfg.learning_rate, weight_decay=1e-2)
    if ckpt is not None:
        checkpoints.load_optimizer(ckpt, optimizer)
        for group in optimizer.param_groups:   # the config's rate wins, so a resumed run may change it
            group["lr"] = cfg.learning_rate
    controlnet, optimizer = acc.prepare(controlnet, optimizer)
    noise_scheduler = DDPMScheduler.from_config(parts["scheduler_config"])
    objective.prediction_type(noise_scheduler)   # refuse a backbone we cannot train before any work

    train_set, held_out = data.datasets(cfg.data, tokenizer, size, cfg.kind, cfg.seed, cfg.annotator,
                                         cfg.control_dir)
    batches = iter(data.loader(train_set, cfg.batch_size, start, acc.process_index, acc.num_processes,
                               cfg.workers, cfg.seed))
    empty_ids = data.tokenize(tokenizer, [""]).to(acc.device)
    evals = eval_items(held_out, cfg.eval_count) if cfg.eval_every and acc.is_main_process else []
    fid_log = FidelityLog(out, cfg.kind, start, cfg.fidelity_threshold) if acc.is_main_process else None
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1))

    def evaluate(step: int, loss: float | None) -> None:
        if not evals:
            return
        images = generate_batch(parts, acc.unwrap_model(controlnet), evals, cfg.eval_steps, cfg.eval_cfg, size=size)
        # the demo world's judges read the world's pictures only; real pictures get annotator judges
        value = mean_fidelity(cfg.kind, images, evals, model=None if cfg.data == "world" else cfg.output_dir,
                              annotator=cfg.annotator)
        fid_log.add(step, value, loss, seconds_before + time.monotonic() - started)
        acc.print(f"step {step}: {cfg.kind} fidelity {value}")

    def save(step: int, loss_ema: float | None) -> Path | None:
        acc.wait_for_everyone()
        path = None
        if acc.is_main_process:
            path = checkpoints.save(out, step, {"controlnet": acc.unwrap_model(controlnet)}, optimizer,
                                    {"loss_ema": loss_ema, "seconds_total": seconds_before + time.monotonic() - started})
        acc.wait_for_everyone()
        return path

    if start == 0 and cfg.eval_every and acc.is_main_process:
        evaluate(0, None)
    step, loss_ema = start, resumed_loss
    ended_early = False
    while step < cfg.steps:
        batch = next(batches)
        px = batch["pixel_values"].to(acc.device)
        cond = batch["conditioning_pixel_values"].to(acc.device)
        ids = batch["input_ids"].to(acc.device)
        # one generator per sample of the global batch: N processes draw what one would (draws)
        gens = draws.generators(cfg.seed, step, acc.process_index * cfg.batch_size, ids.shape[0], acc.device)
        drop = draws.uniform(gens, acc.device) < cfg.prompt_dropout
        ids = torch.where(drop[:, None], empty_ids.expand_as(ids), ids)
        with torch.no_grad(), acc.autocast():
            latents = vae.encode(px).latent_dist.sample(gens).float() * vae.config.scaling_factor
            text = text_encoder(ids)[0]
        noise = draws.noise(gens, latents.shape, acc.device)
        t = draws.timesteps(cfg.timesteps, noise_scheduler.config.num_train_timesteps, gens, acc.device)
        noisy, target = objective.noisy_and_target(noise_scheduler, latents, noise, t)
        with acc.autocast():
            pred = controlled_noise_pred(unet, controlnet, noisy, t, text, cond, mid_only=step < cfg.mid_only_steps)
        loss = F.mse_loss(pred.float(), target)
        acc.backward(loss)
        if acc.sync_gradients and cfg.max_grad_norm:
            acc.clip_grad_norm_(controlnet.parameters(), cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        value = float(acc.reduce(loss.detach(), "mean"))
        loss_ema = value if loss_ema is None else 0.98 * loss_ema + 0.02 * value
        if step % cfg.log_every == 0:
            acc.print(f"step {step}/{cfg.steps} loss {loss_ema:.4f} {time.monotonic() - started:.0f}s")
        if cfg.eval_every and step % cfg.eval_every == 0 and acc.is_main_process:
            evaluate(step, loss_ema)
        if step % cfg.checkpoint_every == 0 and step < cfg.steps:
            save(step, loss_ema)
        if cfg.max_seconds is not None and step < cfg.steps and _out_of_time(acc, started, step - start, cfg.max_seconds):
            ended_early = True
            break
    last = save(step, loss_ema)
    if ended_early:
        acc.print(f"time budget reached at step {step}/{cfg.steps}; run again to resume")
        return last if last is not None else out
    final = out / "controlnet"
    if acc.is_main_process:
        if cfg.eval_every and (not fid_log.rows or int(fid_log.rows[-1]["step"]) != step):
            evaluate(step, loss_ema)
        acc.unwrap_model(controlnet).save_pretrained(str(final), safe_serialization=True)
        last_fid = fid_log.rows[-1]["fidelity"] if fid_log.rows else ""
        (out / "summary.json").write_text(json.dumps({
            "steps": step, "batch": cfg.batch_size * acc.num_processes, "processes": acc.num_processes,
            "seconds": seconds_before + time.monotonic() - started, "loss": loss_ema,
            "fidelity": float(last_fid) if last_fid else None}, indent=1))
    acc.wait_for_everyone()
    acc.end_training()
    return final


def _out_of_time(acc, started: float, steps_done: int, budget: float) -> bool:
    """Whether one more step (plus a checkpoint's worth of slack) would pass the budget; every
    process takes the main process's answer, so all stop at the same step."""
    elapsed = time.monotonic() - started
    per_step = elapsed / max(1, steps_done)
    flag = torch.tensor([1.0 if elapsed + 2 * per_step + 10.0 > budget else 0.0], device=acc.device)
    return bool(acc.reduce(flag, "max").item() > 0)
