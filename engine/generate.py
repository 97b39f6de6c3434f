"""`generate(request)`: the one entry point the GUI, the HTTP API, the CLI and Python share."""
from __future__ import annotations

import contextlib
import logging
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from . import hires, ip_adapter, limits, loras
from .control import prepare_unit
from .loading import condition_kind
from .denoise import OnStep, Step, decode, denoise, encode, evaluations
from .models import Backbone
from .manager import ModelManager, default_manager
from .outputs import infotext, save_png
from .prompt import ignored_words
from .reference import is_reference, prepare_reference
from .values import GenerationRequest, GenerationResult

log = logging.getLogger(__name__)


def resolve_seeds(request: GenerationRequest) -> list[int]:
    seed = request.seed if request.seed >= 0 else random.randrange(limits.MAX_SEED - limits.MAX_BATCH_SIZE)
    return [(seed + i) % (limits.MAX_SEED + 1) for i in range(request.batch_size)]


class GenerationError(RuntimeError):
    """A run failed for a reason the user can act on (the message says how); the request and
    everything loaded stay as they were, so the next run works."""


@dataclass(frozen=True)
class Rendered:
    """What `render` made: float images (B, H, W, 3) in [0, 1], one seed each, the request as run
    (seed and scale resolved), whether it was interrupted, and the backbone and size it ran at."""

    images: np.ndarray
    seeds: list
    request: GenerationRequest
    interrupted: bool
    backbone: Backbone
    width: int
    height: int
    prompt: str = ""            # the prompt the encoder read: without its <lora:...> tags
    warnings: tuple = ()        # LoRA tags that named nothing installed, or could not be read


def _reporter(on_step: OnStep | None, backbone: Backbone, request: GenerationRequest, width: int, height: int,
              done: int = 0, total: int | None = None):
    """The loop's callback as on_step(step, total, preview) sees it: preview() decodes x0. A hires
    run counts both passes: the second pass's steps follow the first's, out of one total."""
    if on_step is None:
        return None

    def callback(step: Step):
        return on_step(done + step.i, total or step.total,
                       lambda: decode(backbone, step.denoised, request, width, height))
    return callback


def _map_kind(unit) -> str | None:
    """The kind of map a unit holds: its annotator's kind, else what its model's name says."""
    if unit.annotator:
        import annotators
        try:
            return annotators.spec(unit.annotator)["kind"]
        except (KeyError, ValueError):
            pass
    return condition_kind(unit.model)


def render(request: GenerationRequest, manager: ModelManager | None = None, on_step: OnStep | None = None,
           stop=None) -> Rendered:
    """The work of `generate` without the files."""
    if not isinstance(request, GenerationRequest):
        raise ValueError("generate() takes a GenerationRequest")
    manager = manager or default_manager()
    backbone = manager.backbone(request.backbone)
    width = request.width or backbone.native_size
    height = request.height or backbone.native_size
    # a unit at weight 0 adds nothing; skipping it keeps the cost at zero too
    active = [unit for unit in request.active_units if unit.weight != 0]
    # reference units load no model: the locked UNet itself reads their picture
    # (the unit's place in the request seeds its reference noise, so it stays put when others change)
    references = [(i, unit) for i, unit in enumerate(request.units)
                  if unit.enabled and unit.weight != 0 and is_reference(unit.model)]
    # IP-Adapter units load no net either: their image tokens feed the UNet's cross-attention
    is_ip = [ip_adapter.is_ip_adapter(unit.model) for unit in active]
    ips = [unit for unit, ip in zip(active, is_ip) if ip]
    active = [unit for unit, ip in zip(active, is_ip) if not ip and not is_reference(unit.model)]
    prompt, tagged, warnings = loras.split_prompt(request.prompt)
    chosen, missing = loras.resolve(request.loras + tuple(tagged))
    warnings += missing
    target = hires.target_size(request, width, height, limits.SIZE_MULTIPLE) if request.enable_hr else None
    nets, prepared = [], []
    out_of_memory = False
    try:
        nets = [_control_model(manager, unit.model, backbone) for unit in active]
        seeds = resolve_seeds(request)
        cfg = backbone.cfg_scale if request.cfg_scale is None else request.cfg_scale
        resolved = request.replace(seed=seeds[0], cfg_scale=cfg)
        # the recipe keeps the prompt as written (tags and all); the encoder reads it without them
        encoded = resolved.replace(prompt=prompt) if prompt != request.prompt else resolved
        # On the fast path a generation's LoRAs sit in a view of the UNet with graphs of its own
        # (engine/lora_slots.py); IP-Adapter processors go on the UNet the run calls, that view or
        # the UNet itself, for this generation only (it holds the backbone alone).
        cfg_on = cfg > 1.0
        # each picture's embedding is made once per generation, for both hires passes
        ip_units = [ip_adapter.prepare_ip_adapter(unit, backbone, len(seeds), cfg_on) for unit in ips]
        with manager.placed(nets), loras.applied(backbone, chosen, manager.lora_views, alone=bool(ips)) as lora_run, \
                _compiles_done(manager, bool(ips)), \
                ip_adapter.attached(lora_run.backbone.unet, ip_units, base=backbone.unet) as ip_run:
            predict = manager.predictor if lora_run.fast else None
            runs_on = lora_run.backbone      # the backbone, or its copy whose UNet is a LoRA view
            def prepare(second_pass: bool, w: int, h: int):
                # outside a hires run every unit acts, whatever its hr_option (as the extension does)
                acts = [target is None or hires.acts_in(unit.hr_option, second_pass) for unit in active]
                prepared[:] = [prepare_unit(unit, net, w, h, backbone.device, backbone.dtype, _map_kind(unit))
                               for unit, net, on in zip(active, nets, acts) if on]
                refs = [prepare_reference(unit, i, backbone, w, h, seeds) for i, unit in references
                        if target is None or hires.acts_in(unit.hr_option, second_pass)]
                if ip_run is not None:
                    ip_run.use([p if target is None or hires.acts_in(unit.hr_option, second_pass)
                                else ip_adapter.silenced(p) for unit, p in zip(ips, ip_units)])
                return prepared, refs

            first_total = total = None
            if target is not None:
                first_total = evaluations(backbone, resolved)
                total = first_total + evaluations(backbone, resolved, img2img=True,
                                                  run_steps=hires.second_pass_steps(resolved))
            report = _reporter(on_step, backbone, resolved, width, height, 0, total)
            first_halt = [False]

            def first_callback(step):
                answer = report(step) if report else None
                first_halt[0] = first_halt[0] or answer is False
                return answer
            units, refs = prepare(False, width, height)
            done = denoise(runs_on, units, encoded, width, height, seeds, first_callback, stop, predict=predict,
                           references=refs, ip_adapters=ip_run)
            # a stop at the first pass's last step still counts: the second pass does not start
            interrupted = done.interrupted or (target is not None and ((stop is not None and stop.is_set())
                                                                        or first_halt[0]))
            if target is not None and not interrupted:
                done, width, height = _second_pass(runs_on, encoded, done, target, seeds, prepare,
                                                   _reporter(on_step, backbone, resolved, target.width,
                                                             target.height, first_total, total), stop, predict,
                                                   ip_run)
                interrupted = done.interrupted
            arrays = decode(backbone, done.result, resolved, width, height)
    except torch.OutOfMemoryError:
        # raised after this block: the error's traceback holds the loop's tensors, so memory
        # can be freed only once it is gone (and the GenerationError must not keep it as context)
        out_of_memory = True
    if out_of_memory:
        prepared.clear()
        ip_adapter.forget()
        manager.free_cache()
        size = f"{width}x{height}" if target is None else f"{width}x{height} (then {target.width}x{target.height})"
        raise GenerationError(
            f"The {backbone.device.type.upper()} ran out of memory making {request.batch_size} image(s) of "
            f"{size} with {len(nets)} control unit(s). Try a smaller size or batch, fewer units, "
            "or start the studio with --offload to keep idle ControlNets off the GPU.")
    manager.generation_done()
    return Rendered(arrays, seeds, resolved, interrupted, backbone, width, height, prompt, tuple(warnings))


def _control_model(manager: ModelManager, model: str, backbone: Backbone):
    try:
        return manager.controlnet(model, backbone).net
    except ValueError as e:
        if "ip-adapter" not in model.lower().replace("_", "-"):
            raise
        # a recipe's IP-Adapter on a machine where it is not installed reads as a ControlNet's name
        from .loading.ipadapters import ipadapters_dir
        raise ValueError(f"{e} If {model!r} is an IP-Adapter, put its file and its image encoder in "
                         f"{ipadapters_dir()} (see models/ipadapters/README.md).") from None


@contextlib.contextmanager
def _compiles_done(manager: ModelManager, wait: bool):
    """With the backbone held alone, first let the fast path's background torch.compile of the
    shared UNet finish: it must not trace the processors this run sets."""
    waiting = getattr(manager.predictor, "wait_compiled", None) if wait else None
    if waiting is not None:
        waiting()
    yield


def _second_pass(backbone: Backbone, request: GenerationRequest, first, target: hires.Target, seeds, prepare,
                 callback, stop, predict, ip_run=None):
    """The hires fix's img2img pass at the target size, from the first pass's latents enlarged
    (a "Latent" upscaler) or its decoded pictures resized (Lanczos, nearest) and encoded again."""
    if request.hr_upscaler in hires.LATENT_UPSCALERS:
        init_latents = hires.upscale_latents(first.latents, target, backbone.vae_scale, request.hr_upscaler)
    else:
        h, w = first.latents.shape[-2:]
        pictures = decode(backbone, first.latents, request, w * backbone.vae_scale, h * backbone.vae_scale)
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        init_latents = encode(backbone, hires.upscale_pictures(pictures, target, request.hr_upscaler), generators)
    second = request.replace(width=target.width, height=target.height, enable_hr=False)
    units, refs = prepare(True, target.width, target.height)
    done = denoise(backbone, units, second, target.width, target.height, seeds, callback, stop,
                   predict=predict, references=refs, ip_adapters=ip_run, init_latents=init_latents,
                   run_steps=hires.second_pass_steps(request))
    return done, target.width, target.height


def generate(request: GenerationRequest, on_step: OnStep | None = None, stop=None, save: bool = True,
             manager: ModelManager | None = None) -> GenerationResult:
    """Make the request's images.

    on_step(step, total, preview) is called after every model evaluation; `preview()` decodes the
    denoised estimate x0 on demand. Returning False from it, or setting the `stop` event, ends the
    loop after the current evaluation; the estimate so far is decoded and returned with
    interrupted=True. With the hires fix (`enable_hr`), steps count on across both passes out of
    one total; a stop in the first pass returns its picture at the first pass's size and skips
    the second pass. With `save`, each image goes to outputs/<date>/ with its recipe (paths in the
    result; every map is PNG-encoded once per generation, the time spent writing is `save_seconds`);
    a failure to write is reported in `warnings` and the images are still returned.
    Raises ValueError for a request that cannot run as asked, GenerationError for a run that
    failed (out of memory), each with a message that says what to do.
    """
    r = render(request, manager, on_step, stop)
    images = [Image.fromarray((a * 255).round().astype(np.uint8)) for a in r.images]
    paths, warnings = [], list(r.warnings)
    started = time.perf_counter()
    recipe = r.request.to_json()          # encodes the maps; every image's recipe reuses it
    # A1111's infotext gives a hires run's first-pass size beside its "Hires upscale"
    size = ((r.request.width or r.backbone.native_size, r.request.height or r.backbone.native_size)
            if r.request.enable_hr else (r.width, r.height))
    if save:
        try:
            for image, seed in zip(images, r.seeds):
                paths.append(save_png(image, r.request.to_json(seed=seed),
                                      infotext(r.request, seed, *size), seed=seed))
        except OSError as e:
            log.error("images not saved: %s", e)
            warnings.append(f"The images were made but not saved: {e}")
    return GenerationResult(images, r.seeds, recipe, r.interrupted, paths,
                            tuple(ignored_words(r.backbone.tokenizer, r.prompt)), tuple(warnings),
                            save_seconds=time.perf_counter() - started if save else 0.0)
