"""`generate(request)`: the one entry point the GUI, the HTTP API, the CLI and Python share."""
from __future__ import annotations

import logging
import random

import numpy as np
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
    units = []
    for unit in request.active_units:
        if unit.weight == 0:
            continue  # adds nothing; skipping it keeps the cost at zero too
        control = manager.controlnet(unit.model, backbone)
        units.append(prepare_unit(unit, control.net, width, height, backbone.device, backbone.dtype))
    seeds = resolve_seeds(request)
    resolved = request.replace(seed=seeds[0])
    arrays, interrupted = denoise(backbone, units, resolved, width, height, seeds, on_step, stop,
                                  predict=manager.predictor)
    return arrays, seeds, resolved, interrupted, backbone, width, height


def generate(request: GenerationRequest, on_step: OnStep | None = None, stop=None, save: bool = True,
             manager: ModelManager | None = None) -> GenerationResult:
    """Make the request's images.

    on_step(step, total, preview) is called after every step; `preview()` decodes the current
    latents on demand. Returning False from it, or setting the `stop` event, ends the loop after
    the current step; the images so far are decoded and returned with interrupted=True.
    With `save`, each image goes to outputs/<date>/ with its recipe (paths in the result); a
    failure to write is logged and the images are still returned.
    """
    arrays, seeds, resolved, interrupted, backbone, width, height = render(request, manager, on_step, stop)
    images = [Image.fromarray((a * 255).round().astype(np.uint8)) for a in arrays]
    paths = []
    if save:
        try:
            for image, seed in zip(images, seeds):
                paths.append(save_png(image, resolved.to_json(seed=seed),
                                      infotext(resolved, seed, width, height), seed=seed))
        except OSError as e:
            log.error("images not saved: %s", e)
    return GenerationResult(images, seeds, resolved.to_json(), interrupted, paths,
                            tuple(ignored_words(backbone.tokenizer, request.prompt)))
