"""`generate(request)`: the one entry point the GUI, the HTTP API, the CLI and Python share."""
from __future__ import annotations

import logging
import random

import numpy as np
import torch
from PIL import Image

from . import limits
from .control import prepare_unit
from .denoise import OnStep, denoise
from .manager import ModelManager, default_manager
from .outputs import infotext, save_png
from .prompt import ignored_words
from .values import GenerationRequest, GenerationResult

log = logging.getLogger(__name__)


def resolve_seeds(request: GenerationRequest) -> list[int]:
    seed = request.seed if request.seed >= 0 else random.randrange(limits.MAX_SEED - limits.MAX_BATCH_SIZE)
    return [(seed + i) % (limits.MAX_SEED + 1) for i in range(request.batch_size)]


class GenerationError(RuntimeError):
    """A run failed for a reason the user can act on (the message says how); the request and
    everything loaded stay as they were, so the next run works."""


def render(request: GenerationRequest, manager: ModelManager | None = None, on_step: OnStep | None = None,
           stop=None) -> tuple:
    """The work of `generate` without the files: (float images (B, H, W, 3) in [0, 1], seeds,
    the request with its seed resolved, interrupted, backbone, width, height)."""
    if not isinstance(request, GenerationRequest):
        raise ValueError("generate() takes a GenerationRequest")
    manager = manager or default_manager()
    backbone = manager.backbone(request.backbone)
    width = request.width or backbone.native_size
    height = request.height or backbone.native_size
    nets, units = [], []
    out_of_memory = False
    try:
        for unit in request.active_units:
            if unit.weight == 0:
                continue  # adds nothing; skipping it keeps the cost at zero too
            net = manager.controlnet(unit.model, backbone).net
            nets.append(net)
            if manager.offload:
                net.to(backbone.device)
            units.append(prepare_unit(unit, net, width, height, backbone.device, backbone.dtype))
        seeds = resolve_seeds(request)
        cfg = backbone.cfg_scale if request.cfg_scale is None else request.cfg_scale
        resolved = request.replace(seed=seeds[0], cfg_scale=cfg)
        arrays, interrupted = denoise(backbone, units, resolved, width, height, seeds, on_step, stop,
                                      predict=manager.predictor)
    except torch.OutOfMemoryError:
        # raised after this block: the error's traceback holds the loop's tensors, so memory
        # can be freed only once it is gone (and the GenerationError must not keep it as context)
        out_of_memory = True
    finally:
        if manager.offload:
            for net in nets:
                net.to("cpu")
    if out_of_memory:
        units.clear()
        manager.free_cache()
        raise GenerationError(
            f"The {backbone.device.type.upper()} ran out of memory making {request.batch_size} image(s) of "
            f"{width}x{height} with {len(nets)} control unit(s). Try a smaller size or batch, fewer units, "
            "or start the studio with --offload to keep idle ControlNets off the GPU.")
    return arrays, seeds, resolved, interrupted, backbone, width, height


def generate(request: GenerationRequest, on_step: OnStep | None = None, stop=None, save: bool = True,
             manager: ModelManager | None = None) -> GenerationResult:
    """Make the request's images.

    on_step(step, total, preview) is called after every step; `preview()` decodes the current
    latents on demand. Returning False from it, or setting the `stop` event, ends the loop after
    the current step; the images so far are decoded and returned with interrupted=True.
    With `save`, each image goes to outputs/<date>/ with its recipe (paths in the result); a
    failure to write is reported in `warnings` and the images are still returned.
    Raises ValueError for a request that cannot run as asked, GenerationError for a run that
    failed (out of memory), each with a message that says what to do.
    """
    arrays, seeds, resolved, interrupted, backbone, width, height = render(request, manager, on_step, stop)
    images = [Image.fromarray((a * 255).round().astype(np.uint8)) for a in arrays]
    paths, warnings = [], []
    if save:
        try:
            for image, seed in zip(images, seeds):
                paths.append(save_png(image, resolved.to_json(seed=seed),
                                      infotext(resolved, seed, width, height), seed=seed))
        except OSError as e:
            log.error("images not saved: %s", e)
            warnings.append(f"The images were made but not saved: {e}")
    return GenerationResult(images, seeds, resolved.to_json(), interrupted, paths,
                            tuple(ignored_words(backbone.tokenizer, request.prompt)), tuple(warnings))
