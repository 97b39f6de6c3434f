"""ControlNet Studio's engine: several ControlNets composed onto a locked Stable Diffusion.

    from engine import ControlUnit, GenerationRequest, generate
    unit = ControlUnit("demo:scribble", scribble_map, weight=1.0, start=0.0, end=0.8)
    result = generate(GenerationRequest(prompt="a red star", units=[unit], seed=1))
    result.images[0].show()

Values: ControlUnit, GenerationRequest (JSON via .to_json()/.from_json(), the recipe),
GenerationResult. Running: generate(request, on_step=None, stop=None); it raises ValueError
for a request that cannot run as asked and GenerationError (e.g. out of memory) for a failed run.
Models: load_backbone(source), load_controlnet(source), installed_models(), ModelManager (build_manager(fast=, compile=, offload=) builds one with the
documented CNSTUDIO_FAST/COMPILE/OFFLOAD overrides for options left None), where a
source is "demo", "demo:<kind>", a diffusers folder, a single .safetensors/.ckpt/.pth file, a name
under models/, or a hub id from the local cache (engine.loading); condition_kind(name) is the
condition a control model reads, by its name; model_family(source, role) its family ("sd1", "sd2",
"sdxl", None when a pickle or unknown) read from its config or safetensors header without loading,
family_label(family) its display name ("SDXL"); recommended_settings(source) a backbone's own
defaults (recommended.json; the demo's CFG is 3), recommended_cfg_scale(those) the scale a request
without one runs at (else DEFAULT_CFG_SCALE, 7.5). Pictures: fit_map(map, width, height,
resize_mode) fits a map to a frame as generate does (annotators.fit, by sd-webui-controlnet's map
rules); fidelity_score(kind, image, map, model=None, annotator=None) says how closely a picture
followed a map (a real model's by re-annotating the picture; the demo's by its world's judges;
None: no judge applies). Files: read_recipe(png), encode_png(image, recipe, infotext(request,
seed, width, height)) (a PNG carrying its recipe, as saved), models_dir(), outputs_dir(),
short_hash(source, role) (A1111's 8-digit model hash). Names: SAMPLERS, SAMPLER_DISPLAY_NAMES
(A1111's), MODES, RESIZE_MODES, HR_OPTIONS (ControlMode, ResizeMode and HiresOption give AUTOMATIC1111's
display name of each as its value), UPSCALERS (the hires fix's: A1111's "Latent" modes, Lanczos,
Nearest; GenerationRequest(enable_hr=True, hr_scale=2, ...) runs it, engine.hires); the bounds every request is checked against live in engine.limits.
"""
from annotators.image import RESIZE_MODES, ResizeMode
from annotators.image import fit as fit_map

from . import limits, loading
from .fidelity import score as fidelity_score
from .generate import GenerationError, generate
from .hashes import short_hash
from .hires import HR_OPTIONS, UPSCALERS, HiresOption
from .loading import condition_kind, family_label, model_family, models_dir, outputs_dir, recommended_settings
from .manager import ModelManager, build_manager, default_manager
from .outputs import encode_png, infotext, read_recipe
from .samplers import SAMPLER_DISPLAY_NAMES, SAMPLERS
from .values import (DEFAULT_CFG_SCALE, MODES, ControlMode, ControlUnit, GenerationRequest, GenerationResult,
                     recommended_cfg_scale)


def load_backbone(source: str):
    """Load (or reuse) a backbone through the shared model manager."""
    return default_manager().backbone(source)


def load_controlnet(source: str):
    """Load (or reuse) a control model through the shared model manager."""
    return default_manager().controlnet(source)


def installed_models() -> dict:
    """Sources a user can pick: {"backbones": [...], "controlnets": [...]}."""
    return loading.list_installed()


__all__ = [
    "ControlUnit", "GenerationRequest", "GenerationResult", "GenerationError", "generate",
    "load_backbone", "load_controlnet", "installed_models", "ModelManager", "build_manager", "default_manager",
    "condition_kind", "recommended_settings", "recommended_cfg_scale", "DEFAULT_CFG_SCALE",
    "fit_map", "fidelity_score", "read_recipe", "encode_png", "infotext", "short_hash", "models_dir",
    "outputs_dir", "SAMPLERS", "SAMPLER_DISPLAY_NAMES", "MODES", "RESIZE_MODES", "ControlMode", "ResizeMode",
    "limits", "model_family", "family_label", "UPSCALERS", "HR_OPTIONS", "HiresOption",
]
