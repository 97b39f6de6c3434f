"""ControlNet Studio's engine: several ControlNets composed onto a locked Stable Diffusion.

    from engine import ControlUnit, GenerationRequest, generate
    unit = ControlUnit("demo:scribble", scribble_map, weight=1.0, start=0.0, end=0.8)
    result = generate(GenerationRequest(prompt="a red star", units=[unit], seed=1))
    result.images[0].show()

Values: ControlUnit, GenerationRequest (JSON via .to_json()/.from_json(), the recipe),
GenerationResult. Running: generate(request, on_step=None, stop=None); it raises ValueError
for a request that cannot run as asked and GenerationError (e.g. out of memory) for a failed run. Models:
load_backbone(source), load_controlnet(source), installed_models(), where a source is
"demo", "demo:<kind>", a diffusers folder, a single .safetensors/.ckpt/.pth file, a name under
models/, or a hub id from the local cache; a request without cfg_scale runs at the scale its
backbone recommends (recommended.json; the demo's is 3), else 7.5. Files: read_recipe(png).
Names: SAMPLERS, MODES, RESIZE_MODES; the bounds every request is checked against live in
engine.limits.
"""
from .generate import GenerationError, generate
from .images import RESIZE_MODES
from .manager import ModelManager, default_manager
from .outputs import read_recipe
from .samplers import SAMPLERS
from .values import MODES, ControlUnit, GenerationRequest, GenerationResult


def _demo_palette() -> None:
    # The demo's segmentation ControlNet reads the world's own class colours, not ADE20K's, so
    # a colour map painted for it snaps to those (segmentation_paint's palette="demo").
    import annotators
    from .training.draw import SEG_COLOURS
    annotators.add_palette("demo", list(SEG_COLOURS.values()))


_demo_palette()


def load_backbone(source: str):
    """Load (or reuse) a backbone through the shared model manager."""
    return default_manager().backbone(source)


def load_controlnet(source: str):
    """Load (or reuse) a control model through the shared model manager."""
    return default_manager().controlnet(source)


def installed_models() -> dict:
    """Sources a user can pick: {"backbones": [...], "controlnets": [...]}."""
    from . import sources
    return sources.list_installed()


__all__ = [
    "ControlUnit", "GenerationRequest", "GenerationResult", "GenerationError", "generate", "load_backbone", "load_controlnet",
    "installed_models", "read_recipe", "ModelManager", "default_manager", "SAMPLERS", "MODES", "RESIZE_MODES",
]
